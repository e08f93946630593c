"""Ctrl-C and SIGTERM that always stop a run cleanly.

The first SIGINT or SIGTERM (sent by Ctrl-C, ``kill``, ``timeout`` and SLURM before its
SIGKILL) only sets a flag: the loop stops at the next step boundary, the callbacks write a
checkpoint and ``train`` raises ``TrainingInterrupted``. Nothing is interrupted half-way (a
KeyboardInterrupt raised inside a checkpoint write or a torch call could strike anywhere).
A second signal raises ``TrainingInterrupted`` at once and skips the checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal; ``signal_name`` says which, ``forced`` whether a second
    signal cut the clean stop short (then no final checkpoint was written)."""

    def __init__(
        self, signal_name: str = "SIGINT", forced: bool = False, outcome: Any = None
    ) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.forced = forced
        self.outcome = outcome  # a TrainingOutcome after a clean stop (None when forced)


class StopSignals:
    """Context manager that turns the first SIGINT/SIGTERM into a stop request.

    Only the main thread can own signal handlers; elsewhere (a training thread of a notebook
    or a server) it does nothing and Python's default behaviour stays.
    """

    def __init__(self) -> None:
        self.requested: str | None = None  # name of the first signal
        self.forced = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            sys.stderr.write(
                f"\n{name}: stopping at the end of this step and writing a checkpoint "
                f"(send it again to stop at once, without the checkpoint).\n"
            )
            sys.stderr.flush()
            return
        self.forced = True
        raise TrainingInterrupted(self.requested, forced=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingInterrupted"]
