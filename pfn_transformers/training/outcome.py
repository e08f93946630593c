"""How a training run ended, in words a user reads: planned against trained steps, and why.

A run cut short by its time limit or a signal still returns a model, and the closing
evaluation then scores it like any other. When that model trained almost nothing (inside
its warmup, or fewer than ``SHORT_RUN_SHARE`` of its planned steps) the evaluation means
little, so ``train()`` warns with :class:`ShortTrainingWarning` and records the sentence; the
CLI prints it in the summary, ``status.json`` and the evaluation's header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# a stopped run that trained fewer than this share of its planned steps "trained almost nothing"
SHORT_RUN_SHARE = 0.10

STOP_REASONS = {"finished": "num_steps", "timed_out": "time_limit", "interrupted": "signal"}


class ShortTrainingWarning(UserWarning):
    """A run stopped early (time limit or signal) before its warmup ended or before 10% of
    its planned steps: the model it returns has hardly trained."""


@dataclass(frozen=True)
class TrainingOutcome:
    """The end of one ``train()`` call (resumed runs count from the run's step 0).

    ``compile_s`` is the time the compiled step took to compile (not part of the
    ``max_time_s`` budget); ``train_s`` the training time that budget measured.
    """

    status: str  # "finished" | "timed_out" | "interrupted"
    planned_steps: int
    trained_steps: int
    warmup_steps: int = 0
    max_time_s: float | None = None
    train_s: float | None = None
    compile_s: float = 0.0
    signal: str | None = None

    @property
    def stop_reason(self) -> str:
        """ "num_steps", "time_limit" or "signal"."""
        return STOP_REASONS[self.status]

    @property
    def in_warmup(self) -> bool:
        return self.trained_steps < self.warmup_steps

    @property
    def short(self) -> bool:
        """Stopped early before the warmup ended or before SHORT_RUN_SHARE of the steps."""
        if self.status == "finished":
            return False
        return self.in_warmup or self.trained_steps < SHORT_RUN_SHARE * self.planned_steps

    def why(self) -> str:
        """What stopped the run, e.g. "the time limit (3 s) was reached during warmup"."""
        if self.status == "timed_out":
            reason = f"the time limit ({self.max_time_s:g} s) was reached"
        elif self.status == "interrupted":
            reason = f"a stop signal ({self.signal or 'SIGINT'}) arrived"
        else:
            return "all planned steps ran"
        if self.in_warmup:
            reason += f" during warmup ({self.warmup_steps:,} steps)"
        return reason

    def note(self) -> str | None:
        """The sentence for a run that trained almost nothing (None otherwise), e.g.
        "trained 87 of 100,000 steps: the time limit (3 s) was reached during warmup"."""
        if not self.short:
            return None
        text = f"trained {self.trained_steps:,} of {self.planned_steps:,} steps: {self.why()}"
        if self.compile_s >= 1:
            text += f" (compiling took a further {self.compile_s:.0f} s)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain fields plus ``stop_reason`` and ``note``: what status.json records."""
        return {**asdict(self), "stop_reason": self.stop_reason, "note": self.note()}


__all__ = ["SHORT_RUN_SHARE", "ShortTrainingWarning", "TrainingOutcome"]
