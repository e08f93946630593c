"""What a load source names, told apart from its text and the file system alone.

:func:`parse_source` sorts ``from_pretrained``'s / ``load_model``'s ``source`` into one of
:data:`KINDS` without opening a weight file, without importing W&B (a local path is decided
by looking at the disk) and without a network call. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PretrainedError
from .files import list_step_files

# pretrained: a save_pretrained / `pfn export` folder; run: a run folder (status.json or
# .hydra/config.yaml); checkpoints: a folder of step-N.pt files (or one holding them in
# checkpoints/); checkpoint: one step-N.pt file; wandb: a W&B run reference; hub: a Hub id
KINDS = ("pretrained", "run", "checkpoints", "checkpoint", "wandb", "hub")

PRETRAINED_FORMAT = "pfn_transformers.pretrained"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
EVAL_FILE = "eval.json"
STATUS_FILE = "status.json"
HYDRA_DIR = ".hydra"
CHECKPOINT_DIR = "checkpoints"

SOURCE_HINT = (
    "pass a folder written by save_pretrained or `pfn export`, a run folder (outputs/RUN), a "
    "checkpoint file (step-N.pt), a W&B reference (wandb:entity/project/run_id[@step]) or a "
    "Hugging Face Hub id (user/name)"
)
_WANDB_URL = re.compile(
    r"https?://[^/]+/(?P<entity>[^/]+)/(?P<project>[^/]+)/runs/(?P<run_id>[^/?#]+)"
)
_REPO_ID = re.compile(r"^[\w.\-]{1,96}/[\w.\-]{1,96}$")


@dataclass(frozen=True)
class Source:
    """A parsed source: its ``kind`` (one of KINDS), the text it was given as, and the local
    ``path`` it names (None for W&B references and Hub ids)."""

    kind: str
    text: str
    path: Path | None = None


def is_wandb_reference(text: Any) -> bool:
    """``wandb:...`` or a W&B run URL (``https://wandb.ai/ENTITY/PROJECT/runs/ID``)."""
    return isinstance(text, str) and (
        text.startswith("wandb:") or _WANDB_URL.match(text.strip()) is not None
    )


def is_pretrained_dir(path: str | os.PathLike) -> bool:
    """A folder written by save_pretrained (its config.json carries the format tag)."""
    try:
        data = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == PRETRAINED_FORMAT


def is_run_dir(path: str | os.PathLike) -> bool:
    """A train run: has ``status.json`` or ``.hydra/config.yaml`` of a train job."""
    path = Path(path)
    return (path / STATUS_FILE).is_file() or (path / HYDRA_DIR / "config.yaml").is_file()


def parse_source(source: str | os.PathLike) -> Source:
    """The kind of ``source`` (see KINDS); PretrainedError naming it when it is none of them
    (a missing path, a folder holding no model)."""
    text = str(source)
    if is_wandb_reference(text):
        return Source("wandb", text)
    path = Path(text).expanduser()
    if path.is_dir():
        if is_pretrained_dir(path) or (path / WEIGHTS_FILE).exists():
            return Source("pretrained", text, path)
        if is_run_dir(path):
            return Source("run", text, path)
        for folder in (path, path / CHECKPOINT_DIR):
            if list_step_files(folder):
                return Source("checkpoints", text, folder)
        raise PretrainedError(
            f"{path} is a folder, but neither a saved model ({CONFIG_FILE} + {WEIGHTS_FILE}), "
            f"nor a run, nor a folder of step-N.pt checkpoints; {SOURCE_HINT}."
        )
    if path.is_file():
        if path.name == WEIGHTS_FILE:
            return Source("pretrained", text, path.parent)
        return Source("checkpoint", text, path)
    if looks_local(text):
        raise PretrainedError(f"source={text!r} does not exist; {SOURCE_HINT}.")
    return Source("hub", text)


def looks_local(text: str) -> bool:
    """A path rather than a Hub id: Hub ids are ``user/name`` (a bare ``name`` is taken for
    a missing local file), and a first part that is a folder here
    (``outputs/RUN_with_a_typo``) makes it a path too."""
    if "/" not in text or not _REPO_ID.match(text) or ".." in text or "--" in text:
        return True
    return Path(text.split("/", 1)[0]).is_dir()


__all__ = [
    "KINDS",
    "SOURCE_HINT",
    "Source",
    "is_pretrained_dir",
    "is_run_dir",
    "is_wandb_reference",
    "looks_local",
    "parse_source",
]
