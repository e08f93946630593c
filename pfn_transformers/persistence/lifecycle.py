"""A run folder's life, owned by one object: :class:`RunLifecycle`.

``pfn train`` and a notebook that trains into a folder go through the same steps::

    run = RunLifecycle("outputs/my-run")
    run.start(model="regression", prior="gp", num_steps=tc.num_steps)   # status: running
    run.write_resolved_config({"model": ..., "prior": ..., "training": ...})
    with run.training():                      # failed (error.txt) or interrupted on the way out
        model = train(prior, model_config, tc)  # tc.checkpoint_dir = run.checkpoint_dir
    run.trained(model, seconds)               # step, time, last loss, device
    run.evaluated(results)                    # eval.json
    run.finished(objective=...)               # status: finished

Each transition merges its fields into ``status.json`` (atomically), so ``pfn list-runs``
and ``open_run`` read the same record. Standard library only (OmegaConf, for the YAML of
the resolved config, loads inside that method).
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .files import write_json_atomic, write_text_atomic
from .run_folder import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    EVAL_FILE,
    METRICS_FILE,
    RESOLVED_FILE,
    STATUS_FILE,
    checkpoint_steps,
    environment,
    last_metrics,
    now_iso,
    process_marker,
    read_json,
    update_status,
)


class RunLifecycle:
    """Writes a run folder's status transitions (running, then finished, failed or
    interrupted), its ``resolved_config.yaml``, ``error.txt`` and ``eval.json``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunLifecycle({str(self.path)!r})"

    # ------------------------------------------------------------------ reading
    @property
    def status(self) -> dict[str, Any]:
        return read_json(self.path / STATUS_FILE) or {}

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def last_step(self, default: int = 0) -> int:
        """The newest checkpoint's step (``default`` when there is none)."""
        return max(checkpoint_steps(self.path) or [default])

    # ------------------------------------------------------------------ transitions
    def start(
        self, *, resumed: bool = False, overrides: list[str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Status ``running``, with ``fields`` (model, prior, num_steps, parent, ...), the
        library version and commit, and this process (so a killed run shows as killed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        status: dict[str, Any] = {
            "status": "running",
            **fields,
            "step": self.last_step(),
            "run_dir": str(self.path),
            "error": None,
            **environment(),
            **process_marker(),
        }
        if resumed:
            status["resumed"] = [*(self.status.get("resumed") or []), now_iso()]
        else:
            status.update(started=now_iso(), started_ts=time.time(), overrides=overrides or [])
        return update_status(self.path, **status)

    def write_resolved_config(self, data: Mapping[str, Any]) -> Path:
        """``resolved_config.yaml``: the values train() received (borders, dims, ...)."""
        from omegaconf import OmegaConf

        path = self.path / RESOLVED_FILE
        write_text_atomic(path, OmegaConf.to_yaml(OmegaConf.create(dict(data))))
        return path

    @contextlib.contextmanager
    def training(self) -> Iterator[RunLifecycle]:
        """Around ``train()``: Ctrl-C or SIGTERM marks the run ``interrupted``, an error marks
        it ``failed`` (traceback in error.txt); both are re-raised."""
        t0 = time.time()
        try:
            yield self
        except KeyboardInterrupt as exc:  # TrainingInterrupted: Ctrl-C or SIGTERM
            self.interrupted(exc, time.time() - t0)
            raise
        except Exception as exc:
            self.failed(exc)
            raise

    def trained(self, model: Any, seconds: float, *, num_steps: int | None = None) -> dict:
        """Training ended normally: its step, time, last loss and device, and how it ended
        (``stop_reason``, ``compile_s``; ``training_note`` when it trained almost nothing)."""
        last = last_metrics(self.path) or {}
        outcome = ((getattr(model, "provenance", None) or {}).get("training") or {}).get("outcome")
        return update_status(
            self.path,
            step=self.last_step(num_steps or 0),
            train_time_s=seconds,
            last_loss=last.get("loss"),
            device=str(model.device),
            **outcome_fields(outcome),
        )

    def interrupted(self, exc: BaseException, seconds: float) -> dict[str, Any]:
        """Status ``interrupted`` with the signal that stopped it."""
        outcome = getattr(exc, "outcome", None)
        return update_status(
            self.path,
            status="interrupted",
            step=self.last_step(),
            signal=getattr(exc, "signal_name", "SIGINT"),
            train_time_s=seconds,
            **outcome_fields(outcome.to_dict() if outcome is not None else None),
        )

    def failed(self, exc: BaseException, tb: str | None = None) -> dict[str, Any]:
        """Status ``failed``; the traceback (of the exception being handled) in error.txt."""
        (self.path / ERROR_FILE).write_text(tb if tb is not None else traceback.format_exc())
        return update_status(
            self.path, status="failed", step=self.last_step(), error=f"{type(exc).__name__}: {exc}"
        )

    def abandoned(self, error: str, **fields: Any) -> dict[str, Any]:
        """A job that failed before training (a config error): a ``failed`` record."""
        return update_status(
            self.path,
            status="failed",
            error=error,
            started=now_iso(),
            started_ts=time.time(),
            **fields,
        )

    def evaluated(self, results: Mapping[str, Any]) -> Path:
        """``eval.json``: the closing evaluation against the prior."""
        write_json_atomic(self.path / EVAL_FILE, dict(results))
        return self.path / EVAL_FILE

    def evaluation_failed(self, error: str, **fields: Any) -> dict[str, Any]:
        return update_status(self.path, eval_error=error, **fields)

    def finished(self, **fields: Any) -> dict[str, Any]:
        """Status ``finished`` (``fields``: objective, ...)."""
        return update_status(self.path, status="finished", finished=now_iso(), **fields)


def outcome_fields(outcome: Mapping[str, Any] | None) -> dict[str, Any]:
    """The status.json fields of a ``TrainingOutcome.to_dict()``: planned steps, stop reason,
    compile seconds and the note of a run that trained almost nothing (None otherwise)."""
    if not outcome:
        return {}
    return {
        "planned_steps": outcome.get("planned_steps"),
        "stop_reason": outcome.get("stop_reason"),
        "compile_s": outcome.get("compile_s"),
        "training_note": outcome.get("note"),
    }


__all__ = ["RunLifecycle", "outcome_fields"]
