"""Head and MLP ablation: which components does the Bayesian prediction rely on?

Each attention head is ablated on ``blocks.{i}.attn.hook_z`` (its slice ``[:, :, head]``,
before W_O) and each MLP on ``blocks.{i}.hook_mlp_out``, through forward hooks:

- ``zero``: the activation is replaced by zeros;
- ``mean``: it is replaced by its mean over the held-out datasets, **per token position**
  (the component keeps its average contribution and loses what depends on the data).

The effect is the paired increase of the score (``scoring``: excess NLL against the exact
posterior when the prior has one) over the unablated model, per dataset, on the same
held-out datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.evaluation.metrics import summarize
from pfn_transformers.interp.hooks import Hook, predictive_logits_with_hooks
from pfn_transformers.interp.scoring import HeldOut, score

ABLATION_MODES = ("zero", "mean")
MEAN_ABLATION = "mean over the held-out datasets, per token position"


@dataclass(frozen=True)
class Component:
    """An attention head (``head`` set) or a layer's MLP (``head`` None)."""

    layer: int
    head: int | None = None

    @property
    def kind(self) -> str:
        return "mlp" if self.head is None else "head"

    @property
    def name(self) -> str:
        return f"L{self.layer}.MLP" if self.head is None else f"L{self.layer}.H{self.head}"

    @property
    def hook_name(self) -> str:
        if self.head is None:
            return f"blocks.{self.layer}.hook_mlp_out"
        return f"blocks.{self.layer}.attn.hook_z"


def components(model: Any) -> list[Component]:
    """Every head and MLP, layer by layer (heads first)."""
    out: list[Component] = []
    for layer, block in enumerate(model.blocks):
        out += [Component(layer, h) for h in range(block.attn.n_heads)]
        out.append(Component(layer))
    return out


def _check_mode(mode: str) -> None:
    if mode not in ABLATION_MODES:
        raise ValueError(
            f"ablation mode={mode!r} is not valid; choose one of {list(ABLATION_MODES)}."
        )


def ablation_hook(component: Component, mode: str, mean: Tensor | None = None) -> Hook:
    """``(hook name, hook)`` that ablates ``component``. ``mean`` (for ``mode="mean"``) is the
    hooked activation's mean over datasets, ``[pos, ...]`` as from ``mean_activations``."""
    _check_mode(mode)
    if mode == "mean" and mean is None:
        raise ValueError(f"mean-ablating {component.name} needs its mean activation (mean=...).")

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        if component.head is None:
            act[:] = 0.0 if mode == "zero" else mean.to(act.dtype)
        elif mode == "zero":
            act[:, :, component.head] = 0.0
        else:
            act[:, :, component.head] = mean[:, component.head].to(act.dtype)
        return act

    return component.hook_name, hook


@torch.inference_mode()
def mean_activations(
    model: Any, heldout: HeldOut, names: Sequence[str], *, batch_size: int = 256
) -> dict[str, Tensor]:
    """``{hook name: mean activation over the held-out datasets}``, per token position."""
    sums: dict[str, Tensor] = {}
    names = list(dict.fromkeys(names))
    for rows in heldout.chunks(batch_size):
        _, cache = model.run_with_cache(*heldout.inputs(rows), names_filter=names, return_type=None)
        for name in names:
            part = cache[name].double().sum(0)
            sums[name] = part if name not in sums else sums[name] + part
    return {name: (s / heldout.num_datasets).float() for name, s in sums.items()}


def ablated_predictive_logits(
    model: Any,
    inputs: Sequence[Tensor],
    component: Component,
    mode: str,
    mean: Tensor | None = None,
) -> Tensor:
    """Predictive logits ``[B, S, out]`` with ``component`` ablated (see ``ablation_hook``)."""
    return predictive_logits_with_hooks(model, inputs, [ablation_hook(component, mode, mean)])


@torch.inference_mode()
def ablation_scan(
    model: Any,
    heldout: HeldOut,
    *,
    modes: Sequence[str] = ABLATION_MODES,
    batch_size: int = 256,
    only: Sequence[Component] | None = None,
) -> dict[str, Any]:
    """Ablate every head and MLP (or ``only`` these) in every mode; sorted results.

    Returns ``{"metric", "description", "mean_ablation", "baseline", "results"}``; each result
    is ``{"component", "kind", "layer", "head", "mode", "increase", "stderr", "per_n"}`` where
    ``increase`` is the mean paired increase of the score (positive: the model needs it),
    sorted from the largest increase down.
    """
    for mode in modes:
        _check_mode(mode)
    comps = list(components(model) if only is None else only)
    means = {}
    if "mean" in modes:
        means = mean_activations(
            model, heldout, [c.hook_name for c in comps], batch_size=batch_size
        )
    clean_parts: list[Tensor] = []
    deltas: dict[tuple[Component, str], list[Tensor]] = {}
    for rows in heldout.chunks(batch_size):
        inputs = heldout.inputs(rows)
        clean = score(model, heldout, predictive_logits_with_hooks(model, inputs), rows)
        clean_parts.append(clean)
        for comp in comps:
            for mode in modes:
                logits = ablated_predictive_logits(
                    model, inputs, comp, mode, means.get(comp.hook_name)
                )
                delta = score(model, heldout, logits, rows) - clean
                deltas.setdefault((comp, mode), []).append(delta)
    results = []
    for (comp, mode), parts in deltas.items():
        stat = summarize(torch.cat(parts, 0))
        results.append(
            {
                "component": comp.name,
                "kind": comp.kind,
                "layer": comp.layer,
                "head": comp.head,
                "mode": mode,
                "increase": stat["mean"],
                "stderr": stat["stderr"],
                "per_n": stat["per_n"],
            }
        )
    results.sort(key=lambda r: (r["increase"] is None, -(r["increase"] or 0.0)))
    return {
        "metric": heldout.metric,
        "description": heldout.description,
        "mean_ablation": MEAN_ABLATION,
        "baseline": summarize(torch.cat(clean_parts, 0)),
        "results": results,
    }
