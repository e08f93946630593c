"""The pretrained folder: what ``save_pretrained`` writes and what is read back from it.

A saved PFN is a Hugging Face-style folder::

    model.safetensors   the weights (safetensors: plain tensors, cannot run code)
    config.json         the model config (``to_dict``), the prior's config when known, the
                        training budget, the library version and commit, the parent run
    README.md           a model card; its YAML front matter quotes eval.json's figures
    eval.json           the evaluation against the prior's exact posterior (when there is one)

This module reads and writes the files; it never builds a model (``loading.py`` does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils import to_plain
from .errors import PretrainedError
from .files import atomic_path, read_json, write_json_atomic, write_text_atomic
from .provenance import PROVENANCE_KEYS, Provenance
from .sources import (
    CARD_FILE,
    CONFIG_FILE,
    EVAL_FILE,
    PRETRAINED_FORMAT,
    SOURCE_HINT,
    WEIGHTS_FILE,
)

FORMAT = PRETRAINED_FORMAT
FORMAT_VERSION = 1
_PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")


# ---------------------------------------------------------------------------- writing
def pretrained_config(model: Any) -> dict[str, Any]:
    """The config.json of a model: its config and its provenance (without evaluation)."""
    from .. import __version__

    prov = dict(getattr(model, "provenance", None) or {})
    env = dict(prov.get("environment") or {})
    env.setdefault("library_version", __version__)
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library": "pfn-transformers",
        "library_version": __version__,
        "model_config": to_plain(model.config.to_dict()),
    }
    for key in PROVENANCE_KEYS:
        out[key] = to_plain(env if key == "environment" else prov.get(key))
    return out


def write_pretrained(
    model: Any, directory: str | os.PathLike, evaluation: Mapping[str, Any] | None = None
) -> Path:
    """Write the folder (see the module doc), each file atomically. ``evaluation`` (an
    ``evaluate`` result) defaults to the model's own provenance ``evaluation``."""
    from safetensors.torch import save_file

    from ..card import render_card

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    prov = getattr(model, "provenance", None) or {}
    if evaluation is None:
        evaluation = prov.get("evaluation")
    evaluation = to_plain(dict(evaluation)) if evaluation is not None else None
    config = pretrained_config(model)
    if evaluation is None and prov.get("evaluation_note"):
        config["evaluation_note"] = prov["evaluation_note"]
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "pfn_format": FORMAT})
    write_json_atomic(folder / CONFIG_FILE, config)
    if evaluation is not None:
        write_json_atomic(folder / EVAL_FILE, evaluation)
    else:
        (folder / EVAL_FILE).unlink(missing_ok=True)  # an older save's figures would mislead
    write_text_atomic(folder / CARD_FILE, render_card(config, evaluation))
    return folder


# ---------------------------------------------------------------------------- reading
def read_pretrained(
    directory: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, Any], Provenance]:
    """``(model_config dict, state dict, provenance)`` of a save_pretrained folder, from
    safetensors and JSON only (a pickle is never unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(directory)
    config = read_json(folder / CONFIG_FILE)
    if config is None or config.get("format") != FORMAT or "model_config" not in config:
        raise PretrainedError(
            f"{folder}: {CONFIG_FILE} is missing or is not a pfn-transformers config (no "
            f"'format': '{FORMAT}' and 'model_config'); {SOURCE_HINT}."
        )
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [name for name in _PICKLE_FILES if (folder / name).exists()]
        raise PretrainedError(
            f"{folder}: {WEIGHTS_FILE} is missing"
            + (f"; {pickles[0]} is there, but pickled weights are never loaded" if pickles else "")
            + ". Save the model again with save_pretrained."
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PretrainedError(
            f"{weights}: not a valid safetensors file ({type(exc).__name__}: {exc}); it was "
            "refused without being run (a pickle is never unpickled here). Save the model "
            "again with save_pretrained."
        ) from None
    prov = Provenance.from_dict({k: config.get(k) for k in PROVENANCE_KEYS})
    prov.origin = {**prov.origin, "kind": "pretrained", "folder": str(folder)}
    prov.evaluation = read_json(folder / EVAL_FILE)
    if prov.evaluation is None and config.get("evaluation_note"):
        prov.evaluation_note = config["evaluation_note"]
    return config["model_config"], state, prov


# ---------------------------------------------------------------------------- the Hub
def hub_error(model_id: str, exc: BaseException) -> PretrainedError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return PretrainedError(
        f"source={model_id!r} is not a local path, and the Hugging Face Hub could not provide "
        f"it ({type(exc).__name__}: {first}). Check the id, the network and HF_HUB_OFFLINE; "
        f"or {SOURCE_HINT}."
    )


def hub_download(
    model_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The folder of a Hub model's files (weights, config, card, eval.json when present)."""
    from huggingface_hub import hf_hub_download

    kwargs = dict(
        repo_id=model_id,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        token=token,
        local_files_only=local_files_only,
    )
    try:
        weights = hf_hub_download(filename=WEIGHTS_FILE, **kwargs)
        hf_hub_download(filename=CONFIG_FILE, **kwargs)
    except Exception as exc:
        raise hub_error(model_id, exc) from None
    for optional in (EVAL_FILE, CARD_FILE):  # optional: a card without evaluation has no eval.json
        with contextlib.suppress(Exception):
            hf_hub_download(filename=optional, **kwargs)
    return Path(weights).parent


__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "hub_download",
    "hub_error",
    "pretrained_config",
    "read_pretrained",
    "write_pretrained",
]
