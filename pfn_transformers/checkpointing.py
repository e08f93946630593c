"""Checkpoints: plain data only, written atomically, loaded with ``weights_only=True``.

A checkpoint from the internet must not be able to run code, so every field is a tensor,
number, string, list or dict (configs are stored as dicts and rebuilt on load). Files are
named ``step-{step}.pt``; steps are parsed as integers, never matched as substrings.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model.configs import ModelConfig, config_from_dict
from .utils import resolve_device, to_plain

FORMAT = "pfn_transformers.checkpoint"
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not a pfn_transformers checkpoint."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError, LookupError):
    """No checkpoint where one was asked for: a missing file or folder, a step that was never
    saved, or a W&B run without (that) checkpoint artifact. One class for all of them
    (``pfn_transformers.wandb`` raises this one too)."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (full disk, unwritable folder); the message names
    the file and the last checkpoint that is intact."""


def ensure_writable_dir(directory: str | os.PathLike, field_name: str) -> Path:
    """Create ``directory`` if needed and prove a file can be written there, before any
    training time is spent; raises CheckpointWriteError naming the field otherwise."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pfn-write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointWriteError(
            f"{field_name}={str(directory)!r} is not a writable folder "
            f"({exc.strerror or exc}); choose a folder this process can write to."
        ) from exc
    return folder


def remove_partial_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint writes a killed process left behind."""
    folder = Path(directory)
    removed = []
    if folder.is_dir():
        for child in folder.glob(".step-*.pt.*.tmp"):
            child.unlink(missing_ok=True)
            removed.append(child)
    return removed


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
    # parent (fine-tuning), prior, device, library version: see pfn_transformers.hub
    provenance: dict[str, Any] = field(default_factory=dict)


def checkpoint_filename(step: int) -> str:
    return f"step-{int(step)}.pt"


def save_checkpoint(
    checkpoint_path: str | os.PathLike,
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
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    ``provenance``: plain facts about the run (parent, prior, device) for model cards."""
    path = Path(checkpoint_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(checkpoint_path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated; clear errors for missing or corrupt files."""
    path = Path(checkpoint_path)
    if path.is_dir():
        path = find_checkpoint(path)
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
    missing = [k for k in ("step", "model_state", "model_config") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks required fields {missing}.")
    payload["path"] = str(path)
    return payload


def load_checkpoint(
    checkpoint_path: str | os.PathLike,
    device: str = "auto",
    load_optimizer: bool = False,
):
    """Rebuild the model from a checkpoint file (or the newest one in a folder).

    Returns ``(model, optimizer_state or None, CheckpointMetadata)``.
    """
    from .model.pfn import PFN

    payload = read_checkpoint(checkpoint_path)
    config = config_from_dict(payload["model_config"])
    model = PFN(config)
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {payload['path']!r} weights do not fit its model config: {err}"
        ) from err
    model.to(resolve_device(device))
    model.eval()
    metadata = CheckpointMetadata(
        step=int(payload["step"]),
        model_config=config,
        training_config=payload.get("training_config"),
        data_config=payload.get("data_config"),
        path=payload["path"],
        metrics=payload.get("metrics") or {},
        provenance=payload.get("provenance") or {},
    )
    optimizer_state = payload.get("optimizer_state") if load_optimizer else None
    return model, optimizer_state, metadata


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-N.pt`` in a folder, sorted by step."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_FILE.match(child.name)
        if match:
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_checkpoint(directory: str | os.PathLike, step: int | None = None) -> Path:
    """The checkpoint of exactly ``step`` in a folder, or the highest step when None."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"checkpoint folder {str(folder)!r} does not exist.")
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointNotFoundError(f"no checkpoints (step-N.pt) in {str(folder)!r}.")
    if step is None:
        return found[-1][1]
    for found_step, path in found:
        if found_step == int(step):
            return path
    raise CheckpointNotFoundError(
        f"no checkpoint for step {step} in {str(folder)!r}; available steps: {[s for s, _ in found]}."
    )
