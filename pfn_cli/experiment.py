"""What a composed ``train`` config asks for: the prior, the model config fitted to it, the
training config, and for fine-tuning or resuming, the source model or the run's own config.

``build_experiment`` is what ``pfn train`` (and ``pfn prior-check``) calls; tests call it
directly with composed configs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pfn_cli.compat import check_fit
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.resolvers import instantiate_prior, register_resolvers
from pfn_cli.runs import HYDRA_DIR

log = logging.getLogger("pfn.train")

GROUPS = ("model", "prior", "training", "wandb", "experiment")


@dataclass
class Experiment:
    """Everything ``train()`` needs, built from a composed config."""

    prior: Any
    model_config: Any
    training_config: Any
    model_choice: str | None
    prior_choice: str | None
    model_fields: dict[str, Any]
    source: Any = None  # init_from: the model fine-tuning starts from (its config is kept)


# ---------------------------------------------------------------------------- building
def build_model_config(
    cfg: DictConfig, prior: Any, model_choice: str | None, prior_choice: str | None
):
    """The model config fitted to the prior by the library (``fit_model_fields``: input_dim,
    classes, y range, Riemann borders, and the one check that the model fits the prior).
    Raises CliError with a clear message naming the choices."""
    from hydra.utils import get_class, instantiate

    from pfn_transformers.data.fitting import fit_model_fields
    from pfn_transformers.task import IncompatibleTaskError

    if "model" not in cfg or cfg.model is None:
        raise CliError("no model is configured; choose one with model=NAME (see --help).")
    label = f"model={model_choice}" if model_choice else "model"
    try:
        fields = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception as exc:
        raise CliError(f"{label}: its config does not resolve: {describe_exception(exc)}") from None
    try:
        cls = get_class(str(fields.get("_target_")))
    except Exception as exc:
        raise CliError(f"{label}: invalid model config: {describe_exception(exc)}") from None
    if hasattr(cls, "task_for"):  # a config class of ours, or one that describes its task
        given = {k: v for k, v in fields.items() if k != "_target_"}
        prior_name = f"prior={prior_choice}" if prior_choice else "the prior"
        try:
            fields = {
                "_target_": fields["_target_"],
                **fit_model_fields(
                    cls,
                    given,
                    prior,
                    model_name=label if model_choice else "the model",
                    data_name=f"{prior_name} ({type(prior).__name__})",
                ),
            }
        except IncompatibleTaskError as exc:  # the CLI's message adds the fitting choices
            names = {"model_choice": model_choice, "prior_choice": prior_choice}
            check_fit(cls.task_for(given), prior, **names)
            raise CliError(str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise CliError(f"{label}: {describe_exception(exc)}") from None
    try:
        model_config = instantiate(fields, _convert_="all")
    except Exception as exc:
        raise CliError(
            f"{label}: invalid model config: {describe_exception(exc)} "
            "(`pfn train --cfg job --resolve` shows the composed values)."
        ) from None
    return model_config, fields


def build_training_config(cfg: DictConfig, run_dir: Path, run_name: str, tags: list[str]):
    """TrainingConfig from the ``training`` and ``wandb`` nodes; paths land in the run dir."""
    from hydra.utils import get_class

    fields = OmegaConf.to_container(cfg.training, resolve=True)
    target = fields.pop("_target_", "pfn_transformers.TrainingConfig")
    for key in ("checkpoint_dir", "metrics_path"):
        value = fields.get(key)
        if value is not None and not os.path.isabs(str(value)):
            fields[key] = str(run_dir / str(value))
    wb = OmegaConf.to_container(cfg.wandb, resolve=True) if cfg.get("wandb") else {}
    enabled = bool(wb.get("enabled", False))
    fields.update(
        use_wandb=enabled,
        wandb_mode=wb.get("mode") if enabled else "disabled",
        wandb_project=wb.get("project"),
        wandb_entity=wb.get("entity"),
        wandb_run_name=wb.get("run_name") or run_name,
        wandb_tags=[*(wb.get("tags") or []), *tags] or None,
        wandb_notes=wb.get("notes"),
        wandb_log_model=bool(wb.get("log_model", enabled)),
    )
    try:
        cls = get_class(target)
        return cls.from_dict(fields) if hasattr(cls, "from_dict") else cls(**fields)
    except Exception as exc:
        raise CliError(f"training: invalid training config: {describe_exception(exc)}") from None


def build_experiment(
    cfg: DictConfig,
    run_dir: Path,
    *,
    model_choice: str | None = None,
    prior_choice: str | None = None,
    source: Any = None,
) -> Experiment:
    """Prior, model config and training config of a composed ``train`` config. With a
    ``source`` (init_from) the model config is the source's (``model_config`` None)."""
    register_resolvers()
    prior = instantiate_prior(cfg.get("prior"), prior_choice)
    if source is None:
        model_config, fields = build_model_config(cfg, prior, model_choice, prior_choice)
    else:
        check_fit(
            source.task,
            prior,
            model_choice=None,
            prior_choice=prior_choice,
            model_label=f"the model of init_from={cfg.get('init_from')}",
            size_hint="A fine-tuned model keeps the source's sizes; choose a prior of those.",
        )
        model_config, fields = None, source.config.to_dict()
    tags = [t for t in (model_choice, prior_choice) if t]
    training_config = build_training_config(cfg, run_dir, Path(run_dir).name, tags)
    return Experiment(
        prior, model_config, training_config, model_choice, prior_choice, fields, source
    )


# ---------------------------------------------------------------------------- resume
def _parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def load_resume_config(target: Path, overrides: list[str]) -> DictConfig:
    """The run's saved config with the command line's value overrides applied on top."""
    path = target / HYDRA_DIR / "config.yaml"
    if not path.is_file():
        raise CliError(
            f"resume={target}: {path} is missing, so the run's config cannot be reused. "
            "Resume a run made by `pfn train`."
        )
    cfg = OmegaConf.load(path)
    for ov in _parse_overrides(overrides):
        key = ov.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        if key in GROUPS:
            raise CliError(
                f"resume={target}: `{ov.input_line}` changes a config group, but a resumed "
                "run keeps its own model, prior and profile. Override single values instead "
                "(e.g. training.num_steps=5000), or start a new run."
            )
        if ov.is_sweep_override():
            raise CliError(f"resume: sweeps cannot resume a run (`{ov.input_line}`).")
        if ov.is_delete():
            raise CliError(f"resume: `{ov.input_line}` deletes a key; not supported on resume.")
        try:
            with open_dict(cfg):
                OmegaConf.update(cfg, key.lstrip("+"), ov.value(), merge=True)
        except Exception as exc:
            raise CliError(f"resume: cannot apply `{ov.input_line}`: {exc}") from None
    with open_dict(cfg):
        cfg.resume = None
    return cfg


# ---------------------------------------------------------------------------- fine-tuning
def load_init_source(cfg: DictConfig, overrides: list[str]) -> Any:
    """The model ``init_from=`` names (a run, a saved folder, a checkpoint, ``wandb:...``),
    or None; model overrides are refused (a fine-tuned run keeps the source's model)."""
    init_from = cfg.get("init_from")
    if init_from in (None, ""):
        if cfg.get("freeze") or cfg.get("refit_buckets"):
            raise CliError(
                "freeze=... and refit_buckets=true fine-tune a trained model; name it with "
                "init_from=RUN_DIR|SAVED_DIR|CHECKPOINT|wandb:ENTITY/PROJECT/RUN_ID."
            )
        return None
    changed = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] == "model"]
    if changed:
        raise CliError(
            f"init_from={init_from}: `{changed[0]}` changes the model, but a fine-tuned run "
            "keeps the source's model (architecture and bar-distribution buckets). Drop the "
            "model override; refit_buckets=true refits the buckets to the new prior."
        )
    from pfn_transformers.checkpointing import CheckpointError
    from pfn_transformers.model.pfn import PFNModel
    from pfn_transformers.runs import find_run
    from pfn_transformers.wandb import WandbUnavailableError

    target = str(init_from)
    root = Path(str(cfg.get("outputs_root", "outputs")))
    try:
        if target == "latest" or (not Path(target).exists() and (root / target).exists()):
            target = str(find_run(target, root, what="init_from"))
        return PFNModel.from_pretrained(target, device="cpu")
    except (ValueError, LookupError, CheckpointError, WandbUnavailableError) as exc:
        raise CliError(f"init_from={init_from}: {exc}") from None


def source_prior(source: Any) -> Any:
    """The source model's own prior, rebuilt from its recorded config (None: unknown)."""
    from pfn_transformers.data.building import PriorConfigError, build_prior

    config = ((source.provenance or {}).get("prior") or {}).get("config")
    if not config:
        log.info("init_from: the source's prior is not recorded; forgetting is not measured.")
        return None
    try:
        return build_prior(config, "the source's prior")
    except PriorConfigError as exc:
        log.warning("init_from: forgetting is not measured: %s", exc)
        return None


# ---------------------------------------------------------------------------- running
