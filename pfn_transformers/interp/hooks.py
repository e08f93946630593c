"""Running a PFN through its TransformerLens hooks, read at the prediction positions.

Everything here goes through ``run_with_cache`` / ``run_with_hooks`` and the model's own
``decode_resid`` (final LayerNorm + unembedding): no second forward implementation, so what
the analyses see is what the model computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

Hook = tuple[str, Callable[..., Any]]


def residual_points(model: Any, include_embed: bool = True) -> list[tuple[str, str]]:
    """``(label, hook name)`` of the residual stream in depth order: ``embed`` (token plus
    positional embedding, ``hook_embed``) and ``L{i}`` after each block
    (``blocks.{i}.hook_resid_post``). The last one feeds the model's output."""
    points = [("embed", "hook_embed")] if include_embed else []
    points += [(f"L{i}", f"blocks.{i}.hook_resid_post") for i in range(len(model.blocks))]
    return points


def cache_at_predictions(
    model: Any, inputs: Sequence[Tensor], names: Sequence[str]
) -> dict[str, Tensor]:
    """Cached activations ``names`` at ``model.predictive_positions``: each ``[B, S, ...]``,
    row n the token whose output predicts y_n."""
    _, cache = model.run_with_cache(*inputs, names_filter=list(names), return_type=None)
    pos = model.predictive_positions(inputs[-1].shape[1])
    return {name: cache[name][:, pos] for name in names}


def predictive_logits_with_hooks(
    model: Any, inputs: Sequence[Tensor], fwd_hooks: Sequence[Hook] = ()
) -> Tensor:
    """Predictive logits ``[B, S, out]`` (position n predicts y_n) of a forward pass with
    extra forward hooks (e.g. ablations): the final residual stream, captured through its
    hook and decoded at the prediction positions."""
    final = f"blocks.{len(model.blocks) - 1}.hook_resid_post"
    captured: dict[str, Tensor] = {}

    def capture(resid: Tensor, hook: Any) -> None:
        captured["resid"] = resid

    model.run_with_hooks(*inputs, return_type=None, fwd_hooks=[*fwd_hooks, (final, capture)])
    pos = model.predictive_positions(inputs[-1].shape[1])
    return model.decode_resid(captured["resid"][:, pos])
