"""Attention patterns of every layer and head, and where each head looks when predicting.

A Bayesian update needs the observed data and a sense of how much of it there is: the
per-head averages tell whether a head reads the start token (a count/prior channel), the
earlier data, or the prediction's own token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pfn_transformers.interp.layout import ATTENTION_ROLES, prediction_role_masks


def pattern_names(model: Any) -> list[str]:
    """Hook names of the attention patterns, one per layer."""
    return [f"blocks.{i}.attn.hook_pattern" for i in range(len(model.blocks))]


def attention_patterns(model: Any, x_or_y: Tensor, y: Tensor | None = None) -> Tensor:
    """Attention patterns ``[layer, batch, head, query_pos, key_pos]`` of one forward pass
    (``run_with_cache`` on ``hook_pattern``), in the token layout of ``layout.token_roles``."""
    inputs = (x_or_y,) if y is None else (x_or_y, y)
    names = pattern_names(model)
    _, cache = model.run_with_cache(*inputs, names_filter=names, return_type=None)
    return torch.stack([cache[name] for name in names])


def head_attention_summary(model: Any, patterns: Tensor, seq_len: int) -> list[dict[str, Any]]:
    """Each head's mean attention from the prediction positions to the start token, the
    earlier data, its own token and anything else (``layout.prediction_role_masks``),
    averaged over positions n and the batch. One dict per (layer, head); the four shares sum
    to 1."""
    pos = model.predictive_positions(seq_len).to(patterns.device)
    rows = patterns[:, :, :, pos].double()  # [L, B, H, S, T]
    out: list[dict[str, Any]] = []
    shares = {}
    for role, mask in prediction_role_masks(model, seq_len).items():
        m = mask.to(patterns.device, torch.float64)
        shares[role] = (rows * m).sum(-1).mean(dim=(1, 3))  # [L, H]
    layers, heads = rows.shape[0], rows.shape[2]
    for layer in range(layers):
        for head in range(heads):
            entry: dict[str, Any] = {"layer": layer, "head": head, "name": f"L{layer}.H{head}"}
            entry.update({role: float(shares[role][layer, head]) for role in ATTENTION_ROLES})
            out.append(entry)
    return out
