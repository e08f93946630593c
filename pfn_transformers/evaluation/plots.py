"""Figures for ``evaluate`` results and PFN-vs-exact predictive bands (matplotlib, Agg).

matplotlib is imported lazily, inside the functions, with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pfn_transformers.data.protocol import batch_source


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write a finished figure as PNG and free it (figures are not kept open)."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _series(stat: dict | None) -> tuple[list[int], list[float], list[float]] | None:
    if not stat or not stat.get("per_n"):
        return None
    mean = [float("nan") if v is None else v for v in stat["per_n"]]
    se = [0.0 if v is None else v for v in stat.get("per_n_stderr") or [0.0] * len(mean)]
    return list(range(len(mean))), mean, se


def _plot_baselines(ax: Any, baselines: dict[str, Any] | None) -> None:
    """Draw each baseline's NLL per n, keeping the axis range of the curves already drawn
    (MLE-II's NLL at small n can be orders of magnitude above the rest: it runs off the top)."""
    if not baselines:
        return
    lo, hi = ax.get_ylim()
    top = hi
    for name, label in (("mle_ii", "MLE-II GP"), ("true_hyperparameters", "true-hyper GP")):
        s = _series((baselines.get(name) or {}).get("nll"))
        if s:
            ax.plot(s[0], s[1], "-.", label=label, lw=1.2)
            finite = [v for v in s[1] if v == v] or [hi]
            top = max(top, min(max(finite), hi + 0.5 * (hi - lo)))
    ax.set_ylim(min(lo, ax.get_ylim()[0]), top)


def plot_evaluation(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the figures for one ``evaluate`` result into ``out_dir``; return their paths.

    - ``nll_vs_context.png``: NLL of the PFN, the exact predictive, the bucket floor and the
      prior predictive per context size n, and the paired excess NLL with +-1 stderr bands;
    - ``calibration.png`` (bar heads): observed coverage of the 50%/90% central intervals per
      n against the nominal level;
    - ``accuracy_vs_context.png`` (discrete heads) or ``mse_vs_context.png`` (continuous).
    """
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{results.get('prior', '')} ({results.get('head', '')} head)"
    paths: list[Path] = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for key, label, style in (
        ("nll", "PFN", "-o"),
        ("exact_nll", "exact", "-"),
        ("floor_nll", "bucket floor", "--"),
        ("prior_predictive_nll", "prior predictive", ":"),
    ):
        s = _series(results.get(key))
        if s:
            ax.plot(s[0], s[1], style, label=label, markersize=3)
    _plot_baselines(ax, results.get("baselines"))
    ax.set_xlabel("context size n")
    ax.set_ylabel("NLL (nats)")
    ax.set_title(title)
    ax.legend()
    ax = axes[1]
    for key, label in (("excess_nll", "PFN - exact"), ("floor_excess_nll", "floor - exact")):
        s = _series(results.get(key))
        if s:
            n, m, se = s
            ax.plot(n, m, "-o", label=label, markersize=3)
            lo = [a - b for a, b in zip(m, se)]
            hi = [a + b for a, b in zip(m, se)]
            ax.fill_between(n, lo, hi, alpha=0.25)
    ax.axhline(0.0, color="k", lw=0.8)
    ex = results.get("excess_nll")
    if ex and ex.get("mean") is not None:
        ax.set_title(f"excess NLL {ex['mean']:.4f} ± {ex['stderr']:.4f} nats")
    else:
        ax.set_title("excess NLL (no exact predictive)")
    ax.set_xlabel("context size n")
    ax.set_ylabel("nats")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    paths.append(_save(fig, out_dir / "nll_vs_context.png"))

    coverage = results.get("coverage")
    if coverage:
        fig, ax = plt.subplots(figsize=(6, 4))
        for level, stat in coverage.items():
            s = _series(stat)
            if s:
                line = ax.plot(s[0], s[1], "-o", markersize=3, label=f"{float(level):.0%} interval")
                ax.axhline(float(level), color=line[0].get_color(), ls="--", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("context size n")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"calibration: {title}")
        ax.legend()
        paths.append(_save(fig, out_dir / "calibration.png"))

    if results.get("accuracy"):
        pairs, name, ylabel = (("accuracy", "PFN"), ("exact_accuracy", "exact")), "accuracy", "acc"
    else:
        pairs, name, ylabel = (("mse", "PFN"), ("exact_mse", "exact")), "mse", "MSE of mean"
    if results.get(pairs[0][0]):
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in pairs:
            s = _series(results.get(key))
            if s:
                ax.plot(s[0], s[1], "-o", markersize=3, label=label)
        ax.set_xlabel("context size n")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name}: {title}")
        ax.legend()
        paths.append(_save(fig, out_dir / f"{name}_vs_context.png"))
    return paths


BAND_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def plot_predictive_bands(
    model: Any,
    prior: Any,
    out_path: str | Path,
    *,
    num_context: int = 10,
    num_query: int = 200,
    seed: int = 0,
) -> Path:
    """PFN predictive bands (median, 50% and 90% intervals) vs the exact posterior's.

    For supervised 1-D continuous priors: draws one dataset of ``num_context`` points (fixed
    seed, the caller's RNG untouched), queries ``model.predict`` on a grid over the prior's x
    range and, when the prior has ``exact_predictive_quantiles``, overlays the exact bands.
    """
    source = batch_source(prior)
    spec = source.spec
    if not spec.supervised or spec.input_dim != 1 or spec.discrete:
        raise ValueError(
            f"plot_predictive_bands needs a supervised prior with input_dim=1 and continuous y; "
            f"{source.name} is {spec.describe()} with input_dim={spec.input_dim}."
        )
    plt = _plt()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        x, y = source.sample(1, num_context)
    lo = float(getattr(prior, "x_low", x.min()))
    hi = float(getattr(prior, "x_high", x.max()))
    xq = torch.linspace(lo, hi, num_query).reshape(1, num_query, 1)
    grid = xq[0, :, 0].numpy()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dev = getattr(model, "device", torch.device("cpu"))
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.inference_mode():
            logits = model.predict(x.to(dev), y.to(dev), xq.to(dev)).float()
            bucketizer = getattr(model, "bucketizer", None)
            if bucketizer is not None:
                q = [bucketizer.quantile(logits, p)[0].cpu().numpy() for p in BAND_QUANTILES]
                ax.fill_between(grid, q[0], q[4], color="C0", alpha=0.2, label="PFN 90%")
                ax.fill_between(grid, q[1], q[3], color="C0", alpha=0.35, label="PFN 50%")
                ax.plot(grid, q[2], color="C0", label="PFN median")
            else:
                mean = model.point_prediction(logits)[0].float().cpu().numpy()
                ax.plot(grid, mean, color="C0", label="PFN mean")
    finally:
        if was_training and hasattr(model, "train"):
            model.train()

    if hasattr(prior, "exact_predictive_quantiles"):
        xs = torch.cat([x.expand(num_query, -1, -1), xq[0].unsqueeze(1)], dim=1)
        ys = torch.cat([y.expand(num_query, -1), torch.zeros(num_query, 1)], dim=1)
        eq = prior.exact_predictive_quantiles(xs, ys, BAND_QUANTILES)[:, -1].numpy()
        ax.plot(grid, eq[:, 0], "k--", lw=1, label="exact 90%")
        ax.plot(grid, eq[:, 4], "k--", lw=1)
        ax.plot(grid, eq[:, 1], "k:", lw=1, label="exact 50%")
        ax.plot(grid, eq[:, 3], "k:", lw=1)
        ax.plot(grid, eq[:, 2], "k-", lw=1, label="exact median")
    ax.scatter(x[0, :, 0].numpy(), y[0].numpy(), color="C3", zorder=5, s=18, label="context")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{type(prior).__name__}: posterior predictive, n={num_context}")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out_path)
