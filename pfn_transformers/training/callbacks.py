"""What happens around the steps: metrics file, progress bar, W&B, checkpoints.

The loop calls every callback at the same points: ``on_train_start``, ``on_log`` (log steps,
with the metrics computed once there), ``on_eval``, ``on_step_end`` (every step; must stay
cheap and never touch device values) and ``on_train_end`` with the run's exit status.
Only rank 0 of a DDP run gets callbacks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..persistence.checkpoint import save_checkpoint
from ..persistence.errors import CheckpointWriteError
from ..persistence.files import checkpoint_filename
from .progress import TrainingProgress
from .state import TrainState, rng_state


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, state: TrainState) -> None: ...

    def on_log(self, state: TrainState, metrics: dict[str, Any]) -> None: ...

    def on_eval(self, state: TrainState, metrics: dict[str, Any]) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_compile(self, state: TrainState, *, started: bool) -> None:
        """Before the first compiled step (``started=True``) and once it is warm
        (``state.compile_s`` then holds the seconds it took)."""

    def on_train_end(self, state: TrainState, status: str) -> None:
        """status: "finished", "timed_out", "interrupted" (clean stop on a signal), "aborted"
        (a second signal: stop at once) or "failed"."""


class MetricsFile(Callback):
    """Appends one JSON line per log step and per evaluation (``metrics.jsonl``).

    Each line is one ``write`` on an ``O_APPEND`` descriptor, so a killed process never leaves
    half a line. A resumed run first drops the records after its checkpoint's step (they
    belong to the steps it redoes) and any torn last line (a disk that filled up mid-write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot append to the metrics file {self.path} ({exc.strerror}); free space "
                "or choose another metrics_path",
            ) from exc

    def on_train_start(self, state: TrainState) -> None:
        if state.start_step > 0 and self.path.exists():
            keep_until(self.path, state.start_step)

    def on_log(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self._write(metrics)

    def on_eval(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self._write({"step": state.step, **{f"eval_{k}": v for k, v in metrics.items()}})


def keep_until(path: Path, step: int) -> None:
    """Rewrite a metrics file (atomically) without torn lines and records after ``step``."""
    kept = []
    for line in path.read_bytes().split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # empty, torn or garbled
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line + b"\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(kept))
    os.replace(tmp, path)


class ProgressBar(Callback):
    """The Rich progress bar."""

    def __init__(self, progress: TrainingProgress) -> None:
        self.progress = progress

    def on_train_start(self, state: TrainState) -> None:
        self.progress.start()

    def on_log(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.progress.update(state.step, metrics)

    def on_eval(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.progress.update(state.step, {**state.last_metrics, "eval_loss": metrics["loss"]})

    def on_compile(self, state: TrainState, *, started: bool) -> None:
        self.progress.set_phase("compiling" if started else "train", state.compile_s)

    def on_train_end(self, state: TrainState, status: str) -> None:
        self.progress.stop()


class WandbTracking(Callback):
    """Every step's loss (sent at log steps), the log metrics, evaluations and the end state."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def on_log(self, state: TrainState, metrics: dict[str, Any]) -> None:
        first = state.step - len(state.recent_losses) + 1
        for i, value in enumerate(state.recent_losses):
            self.logger.log({"train/loss": value}, step=first + i)
        self.logger.log(
            {f"train/{k}": v for k, v in metrics.items() if k != "step"}, step=state.step
        )

    def on_eval(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.logger.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.step)

    def on_train_end(self, state: TrainState, status: str) -> None:
        self.logger.finish(0 if status in ("finished", "timed_out") else 1)


class Checkpointer(Callback):
    """``step-N.pt`` every ``save_every`` steps and at the end (also on Ctrl-C), written
    atomically; logged as a W&B artifact when a logger is given."""

    def __init__(self, directory: str | Path, save_every: int, logger: Any = None) -> None:
        self.directory = Path(directory)
        self.save_every = save_every
        self.logger = logger
        self.saved_step: int | None = None

    def save(self, state: TrainState) -> Path:
        target = self.directory / checkpoint_filename(state.step)
        try:
            path = save_checkpoint(
                target,
                state.step,
                state.model.state_dict(),
                state.model_config,
                state.training_config,
                state.optimizer.state_dict(),
                scheduler_state=state.scheduler.state_dict(),
                rng_state=rng_state(),
                data_config=state.data_config,
                metrics=state.last_metrics,
                provenance=state.provenance,
            )
        except OSError as exc:  # a full disk, a vanished mount: nothing half-written is kept
            kept = state.last_checkpoint
            raise CheckpointWriteError(
                f"could not write the checkpoint {target} at step {state.step} "
                f"({exc.strerror or exc}); "
                + (f"the previous checkpoint {kept} is intact. " if kept else "")
                + "Free space or point checkpoint_dir elsewhere, then resume."
            ) from exc
        state.last_checkpoint = path
        self.saved_step = state.step
        if self.logger is not None:
            self.logger.log_checkpoint(path, state.step)
        return path

    def on_step_end(self, state: TrainState) -> None:
        tc = state.training_config
        if state.step % self.save_every == 0 and state.step < tc.num_steps:
            self.save(state)

    def on_train_end(self, state: TrainState, status: str) -> None:
        if status in ("finished", "timed_out", "interrupted") and self.saved_step != state.step:
            self.save(state)


class CallbackList(Callback):
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def on_train_start(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_train_start(state)

    def on_log(self, state: TrainState, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_log(state, metrics)

    def on_eval(self, state: TrainState, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_eval(state, metrics)

    def on_step_end(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_step_end(state)

    def on_compile(self, state: TrainState, *, started: bool) -> None:
        for cb in self.callbacks:
            cb.on_compile(state, started=started)

    def on_train_end(self, state: TrainState, status: str) -> None:
        errors = []
        for cb in self.callbacks:
            try:
                cb.on_train_end(state, status)
            except Exception as exc:  # one failing callback must not hide the others' work
                errors.append(exc)
        if errors:
            raise errors[0]
