"""``pfn train``: compose a model, a prior and a training profile, train, then evaluate.

The run directory (Hydra's output dir) receives ``.hydra/config.yaml``, ``checkpoints/``,
``metrics.jsonl``, ``status.json`` and, after the final evaluation, ``eval.json``.
Ctrl-C checkpoints the current step and marks the run ``interrupted``;
``pfn train resume=RUN_DIR`` continues it in place with the run's own config.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pfn_cli._app import hydra_app, is_multirun
from pfn_cli.compat import check_fit, model_task_from_node
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.resolvers import instantiate_prior, register_resolvers, resume_target
from pfn_cli.runs import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    EVAL_FILE,
    HYDRA_DIR,
    checkpoint_steps,
    last_metrics,
    now_iso,
    process_marker,
    read_json,
    resolve_run,
    update_status,
    write_json_atomic,
)

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
    """Check the model fits the prior, resolve its fields (input_dim, classes, borders, ...) and
    instantiate the model config dataclass. Raises CliError with a clear message."""
    from hydra.utils import instantiate

    if "model" not in cfg or cfg.model is None:
        raise CliError("no model is configured; choose one with model=NAME (see --help).")
    names = {"model_choice": model_choice, "prior_choice": prior_choice}
    check_fit(model_task_from_node(cfg.model), prior, **names)
    label = f"model={model_choice}" if model_choice else "model"
    try:
        fields = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception as exc:
        raise CliError(f"{label}: its config does not resolve: {describe_exception(exc)}") from None
    try:
        model_config = instantiate(fields, _convert_="all")
    except Exception as exc:
        raise CliError(
            f"{label}: invalid model config: {describe_exception(exc)} "
            "(`pfn train --cfg job --resolve` shows the composed values)."
        ) from None
    check_fit(getattr(model_config, "task", None), prior, **names)
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


def _source_prior(source: Any) -> Any:
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
def _hydra_context() -> tuple[Path | None, dict[str, str], list[str]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, {}, []
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if v is not None}
    return Path(hc.runtime.output_dir), choices, list(hc.overrides.task)


def _abandon_fresh_run(
    run_dir: Path, exc: CliError, choices: dict[str, str], overrides: list[str]
) -> None:
    """A config error before training: a sweep job keeps a ``failed`` record (list-runs
    shows it); a single run removes the folder Hydra just made, which holds nothing else."""
    if is_multirun():
        update_status(
            run_dir,
            status="failed",
            error=str(exc),
            model=choices.get("model"),
            prior=choices.get("prior"),
            started=now_iso(),
            started_ts=time.time(),
            overrides=overrides,
        )
    else:
        _clean_fresh_dir(run_dir)


def _clean_fresh_dir(run_dir: Path) -> None:
    """Remove a run dir Hydra just made for a command that failed before doing anything."""
    try:
        entries = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    if entries <= {HYDRA_DIR, "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class Job:
    """One ``pfn train`` job, ready to train: its folder, config, choices and experiment."""

    cfg: DictConfig
    run_dir: Path
    choices: dict[str, str]
    exp: Experiment
    resume_from: str | None
    freeze: list[str]
    refit_buckets: bool


def _resume(cfg: DictConfig, run_dir: Path, choices: dict, overrides: list[str]):
    """For ``resume=RUN``: the run's own config (overrides on top), folder and choices."""
    root = cfg.get("outputs_root", "outputs")
    target = resume_target(cfg.resume, root)
    if target is None:
        if run_dir != Path(str(cfg.resume)):
            _clean_fresh_dir(run_dir)
        resolve_run(str(cfg.resume), Path(str(root)), what="resume")
        raise CliError(f"resume={cfg.resume}: not a run directory.")  # pragma: no cover
    old_status = read_json(target / "status.json") or {}
    kept = {g: old_status[g] for g in ("model", "prior", "training") if g in old_status}
    return load_resume_config(target, overrides), target.resolve(), {**choices, **kept}


def prepare_job(
    cfg: DictConfig, run_dir: Path | None, choices: dict | None, overrides: list | None
) -> Job:
    """Resolve resume / init_from, build the experiment and record the run as started."""
    h_dir, h_choices, h_overrides = _hydra_context()
    run_dir = Path(run_dir) if run_dir is not None else h_dir
    if run_dir is None:
        raise CliError("run_train needs a run directory outside a Hydra app (run_dir=...).")
    choices = dict(h_choices if choices is None else choices)
    overrides = list(h_overrides if overrides is None else overrides)
    resuming = cfg.get("resume") not in (None, "")
    if resuming:
        cfg, run_dir, choices = _resume(cfg, run_dir, choices, overrides)
    if str(cfg.get("objective", "excess_nll")) not in OBJECTIVES:
        raise CliError(
            f"objective={cfg.get('objective')!r} is not valid; choose one of {list(OBJECTIVES)}."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        source = load_init_source(cfg, [] if resuming else overrides)
        if source is not None:
            choices["model"] = source.provenance.get("model_choice") or choices.get("model")
        exp = build_experiment(
            cfg,
            run_dir,
            model_choice=choices.get("model"),
            prior_choice=choices.get("prior"),
            source=source,
        )
    except CliError as exc:
        if not resuming:
            _abandon_fresh_run(run_dir, exc, choices, overrides)
        raise
    freeze = [str(n) for n in (cfg.get("freeze") or [])]
    job = Job(cfg, run_dir, choices, exp, None, freeze, bool(cfg.get("refit_buckets", False)))
    if resuming:
        job.resume_from = _resume_checkpoints(run_dir, Path(exp.training_config.checkpoint_dir))
    _record_start(job, resuming, overrides)
    return job


def _resume_checkpoints(run_dir: Path, ckpt_dir: Path) -> str:
    steps = checkpoint_steps(run_dir) if ckpt_dir == run_dir / CHECKPOINT_DIR else []
    if not steps and not any(ckpt_dir.glob("step-*.pt")):
        raise CliError(
            f"resume={run_dir}: the run has no checkpoint in {ckpt_dir} to resume from "
            "(it stopped before its first save). Start a new run with the same choices."
        )
    return str(ckpt_dir)


def _record_start(job: Job, resuming: bool, overrides: list[str]) -> None:
    """status.json (running, choices, process, parent), resolved_config.yaml, config.yaml."""
    from pfn_transformers.runs import environment
    from pfn_transformers.training.finetune import parent_record

    run_dir, tc, exp = job.run_dir, job.exp.training_config, job.exp
    if tc.use_wandb:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    status = {
        "status": "running",
        "model": job.choices.get("model"),
        "prior": job.choices.get("prior"),
        "training": job.choices.get("training"),
        "num_steps": tc.num_steps,
        "step": max(checkpoint_steps(run_dir) or [0]),
        "run_dir": str(run_dir),
        "error": None,
        "parent": None
        if exp.source is None
        else parent_record(exp.source, job.cfg.init_from, job.refit_buckets, job.freeze),
        **environment(),
        **process_marker(),
    }
    if resuming:
        prev = read_json(run_dir / "status.json") or {}
        status["resumed"] = [*(prev.get("resumed") or []), now_iso()]
    else:
        status.update(started=now_iso(), started_ts=time.time(), overrides=overrides)
    update_status(run_dir, **status)
    _write_resolved_config(run_dir, job.cfg, exp)
    saved = run_dir / HYDRA_DIR / "config.yaml"
    if not saved.exists():  # called outside a Hydra app: keep the run reusable all the same
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(OmegaConf.to_yaml(job.cfg))


def train_job(job: Job) -> float:
    """Train; Ctrl-C marks the run interrupted (exit 130), a failure marks it failed.
    Returns the training time in seconds."""
    from pfn_transformers import train

    run_dir, exp, tc = job.run_dir, job.exp, job.exp.training_config
    data_config = {
        "model": exp.model_choice,
        "prior": exp.prior_choice,
        "prior_config": OmegaConf.to_container(job.cfg.prior, resolve=True),
        "run_dir": str(run_dir),
    }
    log.info(
        "Training model=%s on prior=%s for %d steps -> %s",
        exp.model_choice,
        exp.prior_choice,
        tc.num_steps,
        run_dir,
    )
    t0 = time.time()
    try:
        model = train(
            exp.prior,
            exp.model_config,
            tc,
            resume_from=job.resume_from,
            data_config=data_config,
            init_from=exp.source,
            freeze=job.freeze or None,
            refit_buckets=job.refit_buckets,
        )
    except KeyboardInterrupt as exc:  # TrainingInterrupted: Ctrl-C or SIGTERM
        _stop_interrupted(job, exc, time.time() - t0)
    except Exception as exc:
        raise _failed(job, exc) from None
    train_time = time.time() - t0
    step = max(checkpoint_steps(run_dir) or [tc.num_steps])
    last = last_metrics(run_dir) or {}
    update_status(
        run_dir,
        step=step,
        train_time_s=train_time,
        last_loss=last.get("loss"),
        device=str(model.device),
    )
    return train_time


def _stop_interrupted(job: Job, exc: BaseException, seconds: float) -> None:
    """Mark the run interrupted (with the signal), say how to resume, exit 130."""
    step = max(checkpoint_steps(job.run_dir) or [0])
    signal_name = getattr(exc, "signal_name", "SIGINT")
    update_status(
        job.run_dir, status="interrupted", step=step, signal=signal_name, train_time_s=seconds
    )
    how = "stopped at once" if getattr(exc, "forced", False) else "stopped cleanly"
    sys.stderr.write(
        f"\npfn train: {signal_name}: {how}; the last checkpoint is step {step}/"
        f"{job.exp.training_config.num_steps}. Resume with:\n  pfn train resume={job.run_dir}\n"
    )
    sys.exit(130)


def _failed(job: Job, exc: Exception) -> CliError:
    """Mark the run failed (traceback in error.txt); the CliError to raise."""
    step = max(checkpoint_steps(job.run_dir) or [0])
    (job.run_dir / ERROR_FILE).write_text(traceback.format_exc())
    update_status(job.run_dir, status="failed", step=step, error=f"{type(exc).__name__}: {exc}")
    return CliError(
        f"training failed at step {step}: {describe_exception(exc)} "
        f"(full traceback in {job.run_dir / ERROR_FILE}).",
        exit_code=1,
    )


def evaluate_job(job: Job) -> dict[str, Any] | None:
    """The closing evaluation (eval.json), unless ``eval.enabled=false``."""
    ev = job.cfg.get("eval") or {}
    if not ev.get("enabled", True):
        return None
    try:
        return final_evaluation(job.run_dir, job.exp, ev)
    except KeyboardInterrupt:
        update_status(job.run_dir, status="finished", eval_error="interrupted")
        sys.stderr.write("\npfn train: evaluation interrupted; training had finished.\n")
        sys.exit(130)
    except CliError as exc:
        log.warning("Final evaluation skipped: %s", exc)
        update_status(job.run_dir, eval_error=str(exc))
    return None


def run_train(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    choices: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one job; returns a summary dict (also written to status.json).

    ``run_dir``/``choices``/``overrides`` default to Hydra's (output dir, group choices,
    command-line overrides); pass them to call this outside a Hydra app.
    """
    job = prepare_job(cfg, None if run_dir is None else Path(run_dir), choices, overrides)
    train_time = train_job(job)
    results = evaluate_job(job)
    name, value = objective(str(job.cfg.get("objective", "excess_nll")), results, job.run_dir)
    summary = update_status(
        job.run_dir, status="finished", finished=now_iso(), objective=value, objective_name=name
    )
    _print_summary(job.run_dir, summary, results, train_time)
    return {**summary, "eval": results}


OBJECTIVES = ("excess_nll", "nll", "loss")


def objective(
    wanted: str, results: dict[str, Any] | None, run_dir: Path
) -> tuple[str, float | None]:
    """What a sweeper minimises: ``excess_nll`` (against the exact posterior), falling back
    to the final evaluation's held-out ``nll`` for priors without one, and to the last
    training ``loss`` when there was no evaluation. Returns (the name used, its value), the
    value None when nothing finite was reported."""
    if wanted not in OBJECTIVES:
        raise CliError(f"objective={wanted!r} is not valid; choose one of {list(OBJECTIVES)}.")
    candidates = OBJECTIVES[OBJECTIVES.index(wanted) :]
    for name in candidates:
        if name == "loss":
            value = (last_metrics(run_dir, "loss_avg") or {}).get("loss_avg")
        else:
            value = ((results or {}).get(name) or {}).get("mean")
        if isinstance(value, int | float) and math.isfinite(value):
            if name != wanted:
                log.warning("objective=%s is not available for this run; using %s.", wanted, name)
            return name, float(value)
    log.warning("objective=%s: the run reported no finite %s.", wanted, ", ".join(candidates))
    return wanted, None


def _write_resolved_config(run_dir: Path, cfg: DictConfig, exp: Experiment) -> None:
    """RUN_DIR/resolved_config.yaml: the values train() received (borders, dims, ...)."""
    data = {
        "model": exp.model_fields,
        "prior": OmegaConf.to_container(cfg.prior, resolve=True),
        "training": exp.training_config.to_dict()
        if hasattr(exp.training_config, "to_dict")
        else OmegaConf.to_container(cfg.training, resolve=True),
    }
    (run_dir / "resolved_config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(data)))


def final_evaluation(run_dir: Path, exp: Experiment, ev: Any) -> dict[str, Any] | None:
    """Short evaluation of the trained checkpoint against the prior (eval.json)."""
    from pfn_transformers import checkpointing
    from pfn_transformers.data.base import has_exact_posterior
    from pfn_transformers.evaluation import evaluate

    if not has_exact_posterior(exp.prior):
        log.info(
            "prior=%s has no exact posterior predictive: the final evaluation reports NLL only.",
            exp.prior_choice,
        )
    ckpt = checkpointing.find_checkpoint(exp.training_config.checkpoint_dir)
    model, _, meta = checkpointing.load_checkpoint(ckpt, device=exp.training_config.device)
    seq_len = ev.get("seq_len") or exp.training_config.seq_len
    results = evaluate(
        model,
        exp.prior,
        num_datasets=int(ev.get("num_datasets", 256)),
        seq_len=int(seq_len),
        batch_size=int(ev.get("batch_size", 128)),
        seed=int(ev.get("seed", 0)),
    )
    results = {
        **results,
        "run": str(run_dir),
        "checkpoint": str(ckpt),
        "step": meta.step,
        "prior_choice": exp.prior_choice,
        "model_choice": exp.model_choice,
    }
    if exp.source is not None and ev.get("fine_tuning", True):
        results["fine_tuning"] = fine_tuning_report(exp, model, results, ev)
    write_json_atomic(run_dir / EVAL_FILE, results)
    if ev.get("plots", False):
        from pfn_transformers.evaluation import plot_evaluation

        plot_evaluation(results, run_dir / "figures")
    return results


def fine_tuning_report(exp: Experiment, model: Any, results: dict, ev: Any) -> dict[str, Any]:
    """eval.json's ``fine_tuning``: the source and the fine-tuned model on the new prior,
    and on the source's own prior when it is recorded (forgetting = after - before)."""
    from pfn_transformers.evaluation import transfer_report

    source = exp.source.to(model.device)
    source_seq = ((source.provenance or {}).get("training") or {}).get("seq_len")
    report = transfer_report(
        source,
        model,
        exp.prior,
        source_prior=_source_prior(source),
        tuned_on_new=results,
        seq_len=int(results["seq_len"]),
        source_seq_len=int(source_seq) if source_seq else None,
        num_datasets=int(ev.get("num_datasets", 256)),
        batch_size=int(ev.get("batch_size", 128)),
        seed=int(ev.get("seed", 0)),
    )
    parent = (source.provenance or {}).get("origin") or {}
    return {
        "source": parent.get("folder") or parent.get("run") or parent.get("checkpoint"),
        **report,
    }


def _print_summary(run_dir: Path, status: dict, results: dict | None, train_time: float) -> None:
    from rich.console import Console

    from pfn_cli.evaluate import results_table

    console = Console(soft_wrap=True)
    loss = status.get("last_loss")
    console.print(
        f"[bold green]Finished[/] {status.get('step')}/{status.get('num_steps')} steps in "
        f"{train_time:.0f}s (last loss {'-' if loss is None else f'{loss:.4g}'}): {run_dir}"
    )
    if results is not None:
        console.print(results_table(results, title="Final evaluation (eval.json)"))
        if results.get("fine_tuning"):
            console.print(fine_tuning_line(results["fine_tuning"]))
    console.print(
        f"Next: pfn eval run={run_dir}\n      pfn sample run={run_dir}\n      pfn list-runs"
    )


def fine_tuning_line(report: dict[str, Any]) -> str:
    """One sentence: what fine-tuning gained on the new prior and forgot on the old one."""

    def pair(entry: dict[str, Any] | None) -> str:
        if not entry or entry.get("before") is None or entry.get("after") is None:
            return "not measured"
        b, a = entry["before"]["mean"], entry["after"]["mean"]
        return f"{entry['metric']} {b:.4f} -> {a:.4f}"

    text = f"Fine-tuned from {report.get('source')}: new prior {pair(report.get('new_prior'))}"
    if report.get("source_prior"):
        text += f"; source prior {pair(report['source_prior'])}"
        if report.get("forgetting") is not None:
            text += f" (forgetting {report['forgetting']:+.4f} nats)"
    else:
        text += "; the source's prior is not recorded, forgetting not measured"
    return text + "."


def _task(cfg: DictConfig) -> float:
    """The train app's job: train, evaluate, and return the objective to Hydra's sweeper."""
    if is_multirun() and cfg.get("resume"):
        raise CliError("resume=... cannot be combined with -m/--multirun.")
    value = run_train(cfg)["objective"]
    return math.nan if value is None else value  # NaN: Optuna records the trial as failed


main = hydra_app("train", _task)

if __name__ == "__main__":  # pragma: no cover
    main()
