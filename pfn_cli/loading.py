"""A trained model and its prior, as ``pfn eval``, ``sample``, ``inspect`` and ``export`` see
them: ``load_run`` resolves ``run=`` (a run folder, a saved folder or ``latest``) and loads its
model through the library's one load path; ``resolve_prior`` picks the prior to score it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pfn_cli.compat import check_fit
from pfn_cli.errors import CliError
from pfn_cli.resolvers import instantiate_prior, register_resolvers
from pfn_cli.runs import HYDRA_DIR, checkpoint_steps, resolve_run


@dataclass
class LoadedRun:
    """A trained model as ``pfn eval/sample/inspect/export`` see it: a run folder's checkpoint
    or a saved (``pfn export``) folder, with what its provenance says about it."""

    run_dir: Path  # the run folder or the saved folder (outputs land there)
    model: Any
    step: int | None
    checkpoint: Path  # the checkpoint file, or the saved folder's weights
    model_choice: str | None
    prior_choice: str | None
    prior_config: dict[str, Any] | None
    seq_len: int
    exported: bool  # a saved folder: its shipped eval.json is never overwritten


def resolve_source(run: Any, outputs_root: Any, what: str = "run") -> Path:
    """``run=`` as a folder: a saved (``pfn export`` / save_pretrained) folder, a run
    folder, or ``latest`` (the newest run under ``outputs_root``)."""
    from pfn_transformers.hub import is_pretrained_dir

    if run is not None and is_pretrained_dir(Path(str(run)).expanduser()):
        return Path(str(run)).expanduser()
    return resolve_run(None if run is None else str(run), Path(str(outputs_root)), what=what)


def load_run(
    run: Any, step: Any, outputs_root: Any, device: str = "auto", *, what: str = "run"
) -> LoadedRun:
    """Resolve ``run`` (a run folder, a saved folder or ``latest``) and load its model with
    ``PFNModel.from_pretrained`` (the same call a notebook makes)."""
    path = resolve_source(run, outputs_root, what)
    if step is not None:
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise CliError(f"step={step!r} is not valid; pass an integer step or null.") from None
    from pfn_transformers import checkpointing
    from pfn_transformers.hub import PretrainedError
    from pfn_transformers.model.pfn import PFNModel

    try:
        model = PFNModel.from_pretrained(path, step=step, device=device)
    except checkpointing.CheckpointNotFoundError as exc:
        raise CliError(f"{what}={path}: {exc}") from None
    except PretrainedError as exc:
        steps = checkpoint_steps(path)
        hint = f" Pick another checkpoint with step=N (available: {steps})." if steps else ""
        raise CliError(f"{what}={path}: cannot load it: {exc}.{hint}") from None
    except ValueError as exc:  # e.g. an unavailable device
        raise CliError(f"device={device}: {exc}") from None
    prov = model.provenance or {}
    origin, prior = prov.get("origin") or {}, prov.get("prior") or {}
    training = prov.get("training") or {}
    exported = origin.get("kind") == "pretrained"
    return LoadedRun(
        run_dir=path,
        model=model,
        step=training.get("steps"),
        checkpoint=path / "model.safetensors" if exported else Path(origin["checkpoint"]),
        model_choice=prov.get("model_choice"),
        prior_choice=prior.get("choice"),
        prior_config=prior.get("config"),
        seq_len=int(training.get("seq_len") or 64),
        exported=exported,
    )


def resolve_prior(cfg: DictConfig, loaded: LoadedRun) -> tuple[Any, str | None, bool]:
    """The prior to evaluate/sample on: ``cfg.prior`` when given, else the run's own.

    Returns (prior, choice name, is_the_runs_own_prior).
    """
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    if cfg.get("prior") is not None:
        choice = None
        if HydraConfig.initialized():
            choice = HydraConfig.get().runtime.choices.get("prior")
        prior = instantiate_prior(cfg.prior, choice or "override")
        own = False
    else:
        if loaded.prior_config is None:
            raise CliError(
                f"run={loaded.run_dir}: no prior config was saved with it "
                f"({HYDRA_DIR}/config.yaml of a run, config.json of a saved folder); choose "
                "one with prior=NAME."
            )
        choice = loaded.prior_choice
        prior = instantiate_prior(OmegaConf.create(loaded.prior_config), choice)
        own = True
    check_fit(
        loaded.model.task,
        prior,
        model_choice=loaded.model_choice,
        prior_choice=choice,
        model_label=f"the model of {loaded.run_dir.name}",
        size_hint="Choose a prior of the sizes the run was trained for.",
    )
    return prior, choice, own


__all__ = ["LoadedRun", "load_run", "resolve_prior", "resolve_source"]
