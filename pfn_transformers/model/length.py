"""The context length a model was trained on, and a warning for asking beyond it.

A PFN has only seen contexts up to its training ``seq_len``; beyond it, predictions are
extrapolation whose quality nothing measured (``pfn eval`` with a longer ``seq_len`` reports
those positions apart). ``train()`` records the length in ``config.trained_seq_len``, so it
travels with checkpoints and pretrained folders.
"""

from __future__ import annotations

import warnings
from typing import Any


class ContextLengthWarning(UserWarning):
    """A model was asked for positions beyond the context length it was trained on."""


def trained_length(model: Any) -> int | None:
    """Sequence length the model was trained on (None: unknown, e.g. never trained)."""
    return getattr(getattr(model, "config", None), "trained_seq_len", None)


def warn_past_trained(model: Any, what: str, positions: int, *, stacklevel: int = 3) -> bool:
    """Warn (once per call site) when ``positions`` exceeds the trained length."""
    trained = trained_length(model)
    if trained is None or positions <= trained:
        return False
    warnings.warn(
        f"{what} needs {positions} positions but the model was trained on sequences of "
        f"{trained}; predictions past position {trained} are extrapolation (pfn eval with "
        f"seq_len={positions} scores them apart).",
        ContextLengthWarning,
        stacklevel=stacklevel,
    )
    return True


__all__ = ["ContextLengthWarning", "trained_length", "warn_past_trained"]
