"""Trained PFNs that travel: ``model.save_pretrained(dir)`` and ``PFN.from_pretrained(source)``.

The names this module has always offered, kept for existing imports. The code lives in
``pfn_transformers.persistence``: ``pretrained`` (the folder: model.safetensors, config.json,
README.md card, eval.json), ``sources`` (what a source names), ``reading`` and ``loading``
(the one load path, ``load_model``), ``hub`` (the model's ``huggingface_hub`` hooks),
``provenance`` (``model.provenance``) and ``errors``. Weight checks live next to the model
(``pfn_transformers.model.build``).
"""

from __future__ import annotations

from typing import Any

from .model.build import check_weights, load_weights
from .persistence.errors import PretrainedError, RunNotFoundError, WeightsMismatchError
from .persistence.hub import PretrainedMixin
from .persistence.loading import load_model
from .persistence.pretrained import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    hub_download,
    pretrained_config,
    write_pretrained,
)
from .persistence.provenance import PROVENANCE_KEYS, Provenance
from .persistence.sources import is_pretrained_dir


def provenance_from_checkpoint(payload: Any) -> dict[str, Any]:
    """``model.provenance`` of a checkpoint's payload (see ``Provenance.from_checkpoint``)."""
    return Provenance.from_checkpoint(payload).to_dict()


__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "PROVENANCE_KEYS",
    "WEIGHTS_FILE",
    "PretrainedError",
    "PretrainedMixin",
    "RunNotFoundError",
    "WeightsMismatchError",
    "check_weights",
    "hub_download",
    "is_pretrained_dir",
    "load_model",
    "load_weights",
    "pretrained_config",
    "provenance_from_checkpoint",
    "write_pretrained",
]
