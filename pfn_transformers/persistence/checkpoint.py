"""Checkpoints: plain data only, written atomically, read with ``weights_only=True``.

A checkpoint from the internet must not be able to run code, so its payload (see
:func:`checkpoint_payload`) holds only tensors, numbers, strings, lists and dicts (configs are
stored as dicts and rebuilt on load). Files are named ``step-{step}.pt`` (``files.py``).
Turning a payload into a model is ``loading.py``'s job; this module never builds one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model.configs import ModelConfig
from ..utils import to_plain
from .errors import CheckpointError, CheckpointNotFoundError
from .files import atomic_path, find_step_file

FORMAT = "pfn_transformers.checkpoint"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("step", "model_state", "model_config")


@dataclass
class CheckpointMetadata:
    """What a checkpoint says about itself besides the weights."""

    step: int
    model_config: ModelConfig
    training_config: dict[str, Any] | None = None
    data_config: dict[str, Any] | None = None
    path: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    wandb_run_url: str | None = None
    wandb_run_id: str | None = None
    artifact_name: str | None = None
    # parent (fine-tuning), prior, device, library version: see persistence.provenance
    provenance: dict[str, Any] = field(default_factory=dict)


def checkpoint_payload(
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: ModelConfig | dict,
    training_config: Any = None,
    optimizer_state: dict | None = None,
    *,
    scheduler_state: dict | None = None,
    rng_state: dict | None = None,
    data_config: Any = None,
    metrics: dict | None = None,
    provenance: dict | None = None,
) -> dict[str, Any]:
    """The checkpoint as plain data: what ``save_checkpoint`` writes and ``read_checkpoint``
    returns (plus ``path``)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "step": int(step),
        "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
        "model_config": to_plain(model_config),
        "training_config": to_plain(training_config),
        "data_config": to_plain(data_config),
        "optimizer_state": optimizer_state,
        "scheduler_state": to_plain(scheduler_state),
        "rng_state": rng_state,
        "metrics": to_plain(metrics or {}),
        "provenance": to_plain(provenance or {}),
    }


def save_checkpoint(
    checkpoint_path: str | os.PathLike,
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: ModelConfig | dict,
    training_config: Any = None,
    optimizer_state: dict | None = None,
    **fields: Any,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    Keyword ``fields``: ``scheduler_state``, ``rng_state``, ``data_config``, ``metrics`` and
    ``provenance`` (plain facts about the run, such as parent, prior and device, for model
    cards); see :func:`checkpoint_payload`."""
    path = Path(checkpoint_path)
    payload = checkpoint_payload(
        step, model_state, model_config, training_config, optimizer_state, **fields
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_checkpoint(checkpoint_path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a checkpoint file (or of the newest one in a folder), validated, with
    ``path`` added; clear errors for missing or corrupt files."""
    path = Path(checkpoint_path)
    if path.is_dir():
        path = find_step_file(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read (truncated, corrupt, or holding "
            f"objects other than plain data): {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a pfn_transformers checkpoint (no '{FORMAT}' format tag)."
        )
    missing = [k for k in REQUIRED_FIELDS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks required fields {missing}.")
    payload["path"] = str(path)
    return payload


def checkpoint_metadata(payload: dict[str, Any], model_config: ModelConfig) -> CheckpointMetadata:
    """The :class:`CheckpointMetadata` of a payload."""
    return CheckpointMetadata(
        step=int(payload["step"]),
        model_config=model_config,
        training_config=payload.get("training_config"),
        data_config=payload.get("data_config"),
        path=payload.get("path"),
        metrics=payload.get("metrics") or {},
        provenance=payload.get("provenance") or {},
    )


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointMetadata",
    "checkpoint_metadata",
    "checkpoint_payload",
    "read_checkpoint",
    "save_checkpoint",
]
