"""Save one context's activations for a notebook: a ``.pt`` dict of plain tensors.

The file loads with ``torch.load(path, weights_only=True)`` without this library::

    data = torch.load("cache.pt", weights_only=True)
    data["cache"]["blocks.0.attn.hook_pattern"]   # [batch, head, query_pos, key_pos]
    data["token_roles"]                           # labels of the positions

Keys: ``cache`` ({TransformerLens hook name: tensor}), ``x`` (None for unsupervised data),
``y``, ``token_roles``, ``predictive_positions`` (the token whose output predicts y_n),
``predictive_logits``, ``model_config`` (plain dict) and ``format``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.interp.layout import token_roles

EXPORT_FORMAT = "pfn-interp-cache/1"


def _plain(t: Tensor) -> Tensor:
    """A detached, contiguous CPU copy that owns its storage (no view of a bigger tensor)."""
    return t.detach().to("cpu").contiguous().clone()


@torch.inference_mode()
def activation_cache(
    model: Any,
    x_or_y: Tensor,
    y: Tensor | None = None,
    *,
    names_filter: str | list[str] | Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Every hooked activation of one forward pass (or those ``names_filter`` keeps) with
    the context and labels, as the dict ``export_activations`` writes."""
    inputs = (x_or_y,) if y is None else (x_or_y, y)
    _, cache = model.run_with_cache(*inputs, names_filter=names_filter, return_type=None)
    seq_len = inputs[-1].shape[1]
    return {
        "format": EXPORT_FORMAT,
        "cache": {name: _plain(t) for name, t in cache.items()},
        "x": None if y is None else _plain(x_or_y),
        "y": _plain(inputs[-1]),
        "token_roles": token_roles(model, seq_len),
        "predictive_positions": _plain(model.predictive_positions(seq_len)),
        "predictive_logits": _plain(model.predictive_logits(*inputs)),
        "model_config": model.config.to_dict(),
    }


def export_activations(
    model: Any,
    path: str | os.PathLike,
    x_or_y: Tensor,
    y: Tensor | None = None,
    *,
    names_filter: str | list[str] | Callable[[str], bool] | None = None,
) -> Path:
    """Write ``activation_cache(...)`` to ``path`` (atomically: temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = activation_cache(model, x_or_y, y, names_filter=names_filter)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path
