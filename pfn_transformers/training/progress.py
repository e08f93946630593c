"""Rich progress bar for training: step, loss, learning rate and throughput."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import TrainingConfig


class TrainingProgress:
    """A Rich progress bar that is a no-op when disabled (non-zero ranks, tests)."""

    def __init__(self, tc: TrainingConfig, *, enabled: bool, start_step: int = 0) -> None:
        self.enabled = enabled
        self.total = tc.num_steps
        self.start_step = start_step
        self._progress: Progress | None = None
        self._task = None

    def start(self) -> None:
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
        )
        self._task = self._progress.add_task(
            "train", total=self.total, completed=self.start_step, stats=""
        )
        self._progress.start()

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if self._progress is None:
            return
        stats = f"loss {metrics.get('loss', float('nan')):.4f}  lr {metrics.get('lr', 0.0):.2e}  "
        stats += f"{metrics.get('seq_per_s', 0.0):,.0f} seq/s"
        if "eval_loss" in metrics:
            stats += f"  eval {metrics['eval_loss']:.4f}"
        self._progress.update(self._task, completed=step, stats=stats)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
