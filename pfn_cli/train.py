"""``pfn train``: compose a model, a prior and a training profile, train, then evaluate.

The run directory (Hydra's output dir) receives ``.hydra/config.yaml``, ``checkpoints/``,
``metrics.jsonl``, ``status.json`` and, after the closing evaluation, ``eval.json``; the
library's ``RunLifecycle`` writes every transition. Ctrl-C checkpoints the current step and
marks the run ``interrupted``; ``pfn train resume=RUN_DIR`` continues it in place with the
run's own config. The pieces: ``experiment`` (config to prior, model and training
configs), ``job`` (the run folder, resume, init_from), ``closing`` (evaluation, objective),
``reporting`` (what is printed).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pfn_cli._app import hydra_app, is_multirun
from pfn_cli.closing import final_evaluation, objective
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.job import Job, prepare_job
from pfn_cli.reporting import print_train_summary
from pfn_cli.runs import ERROR_FILE

log = logging.getLogger("pfn.train")


def train_model(job: Job) -> Any:
    """``train()`` on the job's prior and configs, resuming or fine-tuning as it says."""
    from pfn_transformers import train

    exp = job.exp
    data_config = {
        "model": exp.model_choice,
        "prior": exp.prior_choice,
        "prior_config": OmegaConf.to_container(job.cfg.prior, resolve=True),
        "run_dir": str(job.run.path),
    }
    return train(
        exp.prior,
        exp.model_config,
        exp.training_config,
        resume_from=job.resume_from,
        data_config=data_config,
        init_from=exp.source,
        freeze=job.freeze or None,
        refit_buckets=job.refit_buckets,
    )


def train_job(job: Job) -> tuple[Any, float]:
    """Train; Ctrl-C marks the run interrupted (exit 130), a failure marks it failed.
    Returns the trained model and the training time in seconds."""
    from pfn_transformers.training.outcome import ShortTrainingWarning

    exp, tc = job.exp, job.exp.training_config
    log.info(
        "Training model=%s on prior=%s for %d steps -> %s",
        exp.model_choice,
        exp.prior_choice,
        tc.num_steps,
        job.run.path,
    )
    t0 = time.time()
    try:
        with job.run.training(), warnings.catch_warnings():
            # the summary says it in words (training_note), beside the evaluation
            warnings.simplefilter("ignore", ShortTrainingWarning)
            model = train_model(job)
    except KeyboardInterrupt as exc:  # TrainingInterrupted: Ctrl-C or SIGTERM
        step = job.run.last_step()
        how = "stopped at once" if getattr(exc, "forced", False) else "stopped cleanly"
        outcome = getattr(exc, "outcome", None)
        note = outcome.note() if outcome is not None else None
        sys.stderr.write(
            f"\npfn train: {getattr(exc, 'signal_name', 'SIGINT')}: {how}; the last checkpoint "
            f"is step {step}/{tc.num_steps}.{f' Warning: {note}.' if note else ''} Resume "
            f"with:\n  pfn train resume={job.run.path}\n"
        )
        sys.exit(130)
    except Exception as exc:
        raise CliError(
            f"training failed at step {job.run.last_step()}: {describe_exception(exc)} "
            f"(full traceback in {job.run.path / ERROR_FILE}).",
            exit_code=1,
        ) from None
    train_time = time.time() - t0
    job.run.trained(model, train_time, num_steps=tc.num_steps)
    return model, train_time


def evaluate_job(job: Job, model: Any) -> dict[str, Any] | None:
    """The closing evaluation of the model train() returned (eval.json), unless
    ``eval.enabled=false``."""
    ev = job.cfg.get("eval") or {}
    if not ev.get("enabled", True):
        return None
    try:
        return final_evaluation(job.run, job.exp, model, ev)
    except KeyboardInterrupt:
        job.run.evaluation_failed("interrupted", status="finished")
        sys.stderr.write("\npfn train: evaluation interrupted; training had finished.\n")
        sys.exit(130)
    except CliError as exc:
        log.warning("Final evaluation skipped: %s", exc)
        job.run.evaluation_failed(str(exc))
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
    from pfn_transformers.training.distributed import launch_rank

    rank = launch_rank()
    job = prepare_job(
        cfg, None if run_dir is None else Path(run_dir), choices, overrides, record=rank == 0
    )
    if rank > 0:  # DDP: rank 0 alone writes the run folder, W&B and the closing evaluation
        try:
            train_model(job)
        except KeyboardInterrupt:
            sys.exit(130)
        return {"objective": None, "rank": rank, "eval": None}
    model, train_time = train_job(job)
    results = evaluate_job(job, model)
    name, value = objective(str(job.cfg.get("objective", "excess_nll")), results, job.run.path)
    summary = job.run.finished(objective=value, objective_name=name)
    print_train_summary(job.run.path, summary, results, train_time)
    return {**summary, "eval": results}


def _task(cfg: DictConfig) -> float:
    """The train app's job: train, evaluate, and return the objective to Hydra's sweeper."""
    if is_multirun() and cfg.get("resume"):
        raise CliError("resume=... cannot be combined with -m/--multirun.")
    value = run_train(cfg)["objective"]
    return math.nan if value is None else value  # NaN: Optuna records the trial as failed


main = hydra_app("train", _task)

if __name__ == "__main__":  # pragma: no cover
    main()
