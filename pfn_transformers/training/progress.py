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
        self.phase = "train"  # "compiling" while the compiled step compiles
        self.compile_note = ""
        self._progress: Progress | None = None
        self._task = None

    def start(self) -> None:
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
        )
        self._task = self._progress.add_task(
            "train", total=self.total, completed=self.start_step, stats="", phase=self.phase
        )
        self._progress.start()

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if self._progress is None:
            return
        stats = f"loss {metrics.get('loss', float('nan')):.4f}  lr {metrics.get('lr', 0.0):.2e}  "
        stats += f"{metrics.get('seq_per_s', 0.0):,.0f} seq/s"
        stats += self.compile_note
        if "eval_loss" in metrics:
            stats += f"  eval {metrics['eval_loss']:.4f}"
        self._progress.update(self._task, completed=step, stats=stats)

    def set_phase(self, phase: str, compile_s: float = 0.0) -> None:
        """Show "compiling" while the first compiled step builds, then "train"; the
        compile time stays in the stats once known."""
        self.phase = phase
        if phase == "compiling":
            self.compile_note = ""
        elif compile_s:
            self.compile_note = f"  compiled in {compile_s:.0f}s"
        if self._progress is not None:
            self._progress.update(self._task, phase=phase)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
