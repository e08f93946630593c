"""Persistence: everything that puts a model on disk or takes one off it.

Modules, from the bottom up (each imports only those above it)::

    errors       every persistence exception (standard library only)
    files        atomic writes, JSON reading, step-file naming (standard library only)
    sources      what a load source names: folder, run, checkpoint, W&B ref, Hub id (stdlib)
    provenance   the typed provenance record of a model (stdlib)
    run_folder   a run folder's files, read without loading a model (stdlib)
    checkpoint   the checkpoint payload (plain data), saved and read (torch)
    pretrained   the save_pretrained folder and its card, written and read
    reading      any source to plain data (``Weights``), W&B imported only for W&B refs
    hub          the model's ``huggingface_hub`` hooks (``PretrainedMixin``)
    loading      ``load_model(source, step=None, device=...)``: the one load path

Models are built from weights only by ``pfn_transformers.model.build.build_model``.
Names are imported on first use, so ``import pfn_transformers.persistence`` loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointError": "errors",
    "CheckpointNotFoundError": "errors",
    "CheckpointWriteError": "errors",
    "PretrainedError": "errors",
    "RunNotFoundError": "errors",
    "WeightsMismatchError": "errors",
    "Provenance": "provenance",
    "Source": "sources",
    "parse_source": "sources",
    "Weights": "reading",
    "read_weights": "reading",
    "load_checkpoint": "loading",
    "load_model": "loading",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
