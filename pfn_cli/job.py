"""One ``pfn train`` job, prepared: its run folder (a ``RunLifecycle``), its config (the run's
own when resuming), the group choices and the experiment; the run is recorded as started.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pfn_cli._app import is_multirun
from pfn_cli.closing import OBJECTIVES
from pfn_cli.errors import CliError
from pfn_cli.experiment import Experiment, build_experiment, load_init_source, load_resume_config
from pfn_cli.resolvers import resume_target
from pfn_cli.runs import CHECKPOINT_DIR, HYDRA_DIR, checkpoint_steps, read_json, resolve_run
from pfn_transformers.runs import RunLifecycle


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
        RunLifecycle(run_dir).abandoned(
            str(exc), model=choices.get("model"), prior=choices.get("prior"), overrides=overrides
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
    run: RunLifecycle
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
    cfg: DictConfig,
    run_dir: Path | None,
    choices: dict | None,
    overrides: list | None,
    *,
    record: bool = True,
) -> Job:
    """Resolve resume / init_from, build the experiment and record the run as started
    (``record=False``: a DDP rank above 0, which trains beside rank 0 and writes nothing)."""
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
        if not resuming and record:
            _abandon_fresh_run(run_dir, exc, choices, overrides)
        raise
    freeze = [str(n) for n in (cfg.get("freeze") or [])]
    refit = bool(cfg.get("refit_buckets", False))
    job = Job(cfg, RunLifecycle(run_dir), choices, exp, None, freeze, refit)
    if resuming:
        job.resume_from = _resume_checkpoints(run_dir, Path(exp.training_config.checkpoint_dir))
    if record:
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
    from pfn_transformers.training.finetune import parent_record

    run_dir, tc, exp = job.run.path, job.exp.training_config, job.exp
    if tc.use_wandb:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    parent = None
    if exp.source is not None:
        parent = parent_record(exp.source, job.cfg.init_from, job.refit_buckets, job.freeze)
    job.run.start(
        resumed=resuming,
        overrides=overrides,
        model=job.choices.get("model"),
        prior=job.choices.get("prior"),
        training=job.choices.get("training"),
        num_steps=tc.num_steps,
        parent=parent,
    )
    job.run.write_resolved_config(
        {
            "model": exp.model_fields,
            "prior": OmegaConf.to_container(job.cfg.prior, resolve=True),
            "training": exp.training_config.to_dict()
            if hasattr(exp.training_config, "to_dict")
            else OmegaConf.to_container(job.cfg.training, resolve=True),
        }
    )
    saved = run_dir / HYDRA_DIR / "config.yaml"
    if not saved.exists():  # called outside a Hydra app: keep the run reusable all the same
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(OmegaConf.to_yaml(job.cfg))
