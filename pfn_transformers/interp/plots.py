"""Figures of the interpretability analyses (matplotlib, Agg, imported lazily).

Each function takes an analysis result (the dicts of ``lens_scores``, ``ablation_scan``,
``posterior_probes``) or tensors, writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor

_METRIC_LABEL = {
    "excess_nll": "excess NLL vs exact posterior (nats)",
    "nll": "NLL of the PFN (nats; no exact posterior)",
    "excess_mse": "excess MSE vs exact posterior mean",
    "mse": "MSE of the point prediction",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _ticks(ax: Any, roles: list[str]) -> None:
    step = max(1, math.ceil(len(roles) / 24))  # keep labels readable on long contexts
    idx = list(range(0, len(roles), step))
    ax.set_xticks(idx, [roles[i] for i in idx], rotation=90, fontsize=6)
    ax.set_yticks(idx, [roles[i] for i in idx], fontsize=6)


def plot_attention_grid(
    patterns: Tensor, roles: list[str], mask: Tensor, path: str | Path, title: str = ""
) -> Path:
    """Layers x heads grid of one context's patterns ``[layer, head, query, key]``; cells
    the mask forbids are grey, axes labelled with the token roles (queries down, keys across)."""
    plt = _plt()
    import numpy as np

    layers, heads = patterns.shape[0], patterns.shape[1]
    size = 2.2 + 0.04 * len(roles)
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers), squeeze=False)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")
    allowed = mask.cpu().numpy()
    image = None
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            p = patterns[layer, head].float().cpu().numpy()
            image = ax.imshow(np.where(allowed, p, np.nan), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"L{layer}.H{head}", fontsize=9)
            _ticks(ax, roles)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="attention")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # colorbar over all axes: no tight_layout
    plt.close(fig)
    return path


def plot_lens(lens: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Score per layer (mean ± stderr over datasets) and per context size n for each layer."""
    plt = _plt()
    labels = lens["layers"]
    per_layer = lens["per_layer"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    means = [_nan(per_layer[lab]["mean"]) for lab in labels]
    errs = [_nan(per_layer[lab]["stderr"]) for lab in labels]
    ax.errorbar(range(len(labels)), means, yerr=errs, fmt="-o", capsize=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("residual stream after")
    ax.set_ylabel(_METRIC_LABEL.get(lens["metric"], lens["metric"]))
    if lens["metric"].startswith("excess"):
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_title("logit lens by depth")
    ax = axes[1]
    cmap = plt.get_cmap("viridis")
    for i, lab in enumerate(labels):
        per_n = [_nan(v) for v in per_layer[lab]["per_n"]]
        ax.plot(range(len(per_n)), per_n, "-", color=cmap(i / max(1, len(labels) - 1)), label=lab)
    if lens["metric"].startswith("excess"):
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_xlabel("context size n")
    ax.set_title("per context size")
    ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ablation(
    ablation: dict[str, Any], path: str | Path, title: str = "", top: int = 30
) -> Path:
    """Horizontal bars: the increase of the score when each component is ablated (one bar
    per mode), the ``top`` largest effects (ranked by their largest mode)."""
    plt = _plt()
    by_comp: dict[str, dict[str, tuple[float, float]]] = {}
    for r in ablation["results"]:
        by_comp.setdefault(r["component"], {})[r["mode"]] = (_nan(r["increase"]), _nan(r["stderr"]))
    modes = sorted({m for v in by_comp.values() for m in v}, key=["zero", "mean"].index)
    ranked = sorted(
        by_comp,
        key=lambda c: -max((v[0] for v in by_comp[c].values() if not math.isnan(v[0])), default=0),
    )[:top]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.28 * len(ranked) * max(1, len(modes))))
    height = 0.8 / max(1, len(modes))
    for k, mode in enumerate(modes):
        ys = [i + k * height for i in range(len(ranked))]
        vals = [by_comp[c].get(mode, (math.nan, 0))[0] for c in ranked]
        errs = [by_comp[c].get(mode, (0, math.nan))[1] for c in ranked]
        ax.barh(ys, vals, height=height, xerr=errs, label=f"{mode}-ablation", capsize=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(ranked))], ranked)
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.8)
    metric = ablation["metric"]
    ax.set_xlabel(f"increase of {_METRIC_LABEL.get(metric, metric)}")
    ax.legend(loc="lower right")
    ax.set_title(title or "ablation")
    return _save(fig, path)


def plot_probes(probes: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Held-out R² of the ridge probes per layer, one line per posterior statistic."""
    plt = _plt()
    labels = probes["layers"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for stat, by_layer in probes["r2"].items():
        ax.plot(range(len(labels)), [_nan(by_layer[lab]) for lab in labels], "-o", label=stat)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(max(-1.0, min(-0.05, ax.get_ylim()[0])), 1.02)  # R² can be very negative
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("residual stream after")
    ax.set_ylabel("held-out R²")
    ax.set_title(title or "linear probes for the posterior statistics")
    ax.legend()
    return _save(fig, path)
