"""Files on disk, in one place: atomic writes, JSON reading, and step-file naming.

Every file the library writes (checkpoints, safetensors weights, JSON, the model card,
status.json) goes through :func:`atomic_path`: a temporary file in the same folder, then a
rename, so a reader (or a crash) never sees half a file. Checkpoints are named
``step-{N}.pt``; :func:`list_step_files` is the one scanner, which parses steps as integers
(step 500 never matches ``step-5000.pt``). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CheckpointNotFoundError, CheckpointWriteError

STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
PARTIAL_STEP_FILES = ".step-*.pt.*.tmp"  # what a killed checkpoint write leaves behind


# ---------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; on a clean exit it is renamed to ``path`` (with the
    usual file mode), on an error it is removed and ``path`` keeps its previous version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (see :func:`atomic_path`)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """Parsed JSON object, or None when the file is missing or unreadable."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


# ---------------------------------------------------------------------------- step files
def checkpoint_filename(step: int) -> str:
    """``step-{step}.pt``."""
    return f"step-{int(step)}.pt"


def step_of(name: str) -> int | None:
    """The step of a ``step-N.pt`` file name, or None for any other name."""
    match = STEP_FILE.match(name)
    return int(match.group(1)) if match else None


def list_step_files(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-N.pt`` in a folder, sorted by step ([] when the folder
    is missing)."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                step = step_of(entry.name)
                if step is not None:
                    found.append((step, Path(entry.path)))
    except OSError:
        return []
    return sorted(found)


def find_step_file(directory: str | os.PathLike, step: int | None = None) -> Path:
    """The checkpoint of exactly ``step`` in a folder, or the highest step when None."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"checkpoint folder {str(folder)!r} does not exist.")
    found = list_step_files(folder)
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


def remove_partial_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint writes a killed process left behind."""
    folder = Path(directory)
    removed = []
    if folder.is_dir():
        for child in folder.glob(PARTIAL_STEP_FILES):
            child.unlink(missing_ok=True)
            removed.append(child)
    return removed


__all__ = [
    "STEP_FILE",
    "atomic_path",
    "checkpoint_filename",
    "ensure_writable_dir",
    "find_step_file",
    "list_step_files",
    "read_json",
    "remove_partial_files",
    "step_of",
    "write_json_atomic",
    "write_text_atomic",
]
