"""Every error the persistence layer raises, in one module that imports only the standard
library: ``pfn list-runs``, ``pfn_transformers.runs`` and ``pfn_transformers.wandb`` can
name them without loading torch.
"""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not a pfn_transformers checkpoint."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError, LookupError):
    """No checkpoint where one was asked for: a missing file or folder, a step that was never
    saved, or a W&B run without (that) checkpoint artifact. One class for all of them
    (``pfn_transformers.wandb`` raises this one too)."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (full disk, unwritable folder); the message names
    the file and the last checkpoint that is intact."""


class PretrainedError(ValueError):
    """A source that cannot be loaded as a PFN: missing, not a PFN, weights refused."""


class WeightsMismatchError(PretrainedError):
    """Weights that do not fit the model their config builds (the message names the tensor)."""


class RunNotFoundError(ValueError, FileNotFoundError):
    """No run where one was named: a missing folder, a folder that is not a run, or
    ``latest`` with no runs at all. The message names the value and what would be valid."""


__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "PretrainedError",
    "RunNotFoundError",
    "WeightsMismatchError",
]
