"""Checkpoints: plain data only, written atomically, loaded with ``weights_only=True``.

The spec's ``from pfn_transformers import checkpointing`` module: ``save_checkpoint``,
``load_checkpoint``, ``read_checkpoint``, ``find_checkpoint``, ``list_checkpoints`` and the
checkpoint errors. The code lives in ``pfn_transformers.persistence`` (``checkpoint``: the
payload; ``files``: step-file naming and atomic writes; ``loading``: the one load path).
"""

from __future__ import annotations

import torch  # noqa: F401 - ``checkpointing.torch`` as before

from .persistence.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointMetadata,
    checkpoint_payload,
    read_checkpoint,
    save_checkpoint,
)
from .persistence.errors import CheckpointError, CheckpointNotFoundError, CheckpointWriteError
from .persistence.files import (
    STEP_FILE,
    checkpoint_filename,
    ensure_writable_dir,
    remove_partial_files,
)
from .persistence.files import find_step_file as find_checkpoint
from .persistence.files import list_step_files as list_checkpoints
from .persistence.loading import load_checkpoint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "STEP_FILE",
    "CheckpointError",
    "CheckpointMetadata",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "checkpoint_filename",
    "checkpoint_payload",
    "ensure_writable_dir",
    "find_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "remove_partial_files",
    "save_checkpoint",
]
