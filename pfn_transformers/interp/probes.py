"""Linear probes for the posterior: does the residual stream carry the sufficient statistics?

A prior whose posterior has closed-form sufficient statistics opts in by defining

    posterior_statistics(x, y) -> dict[str, Tensor [B, S, k]]

where entry n summarises the posterior after the data before position n (what the
prediction of y_n may use), e.g. the posterior mean of a coin's bias. Ridge-regression probes
(closed form, standardised features) map each layer's residual stream at the prediction
positions to each statistic; they are fitted on one part of the held-out datasets (the
penalty chosen on an inner validation split) and scored by R² on the other part. Splits are
by dataset, so correlated positions of one dataset never sit on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.interp.hooks import cache_at_predictions, residual_points
from pfn_transformers.interp.scoring import HeldOut

#: ridge penalties tried (times the number of fitting rows, on standardised features)
PROBE_LAMBDAS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def has_posterior_statistics(prior: Any) -> bool:
    """Does the prior declare closed-form posterior statistics (``posterior_statistics``)?"""
    return callable(getattr(prior, "posterior_statistics", None))


@dataclass
class RidgeProbe:
    """A fitted ridge probe: ``predict(X) = ((X - x_mean) / x_std) @ weight + y_mean``."""

    x_mean: Tensor
    x_std: Tensor
    y_mean: Tensor
    weight: Tensor
    lam: float

    def predict(self, features: Tensor) -> Tensor:
        return ((features.double() - self.x_mean) / self.x_std) @ self.weight + self.y_mean


def _standardise(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    x_mean, y_mean = x.mean(0), y.mean(0)
    x_std = x.std(0, unbiased=False)
    x_std = torch.where(x_std > 1e-8, x_std, torch.ones_like(x_std))  # constant features
    return (x - x_mean) / x_std, y - y_mean, x_mean, x_std, y_mean


def fit_ridge_path(features: Tensor, targets: Tensor, lambdas: Sequence[float]) -> list[RidgeProbe]:
    """Ridge probes for several penalties from one eigendecomposition of X^T X.

    ``features [N, d]``, ``targets [N, k]``; penalty ``lam * N`` on standardised features.
    """
    x, y = features.double(), targets.double()
    xs, yc, x_mean, x_std, y_mean = _standardise(x, y)
    evals, evecs = torch.linalg.eigh(xs.T @ xs)
    proj = evecs.T @ (xs.T @ yc)  # [d, k]
    n = x.shape[0]
    probes = []
    for lam in lambdas:
        w = evecs @ (proj / (evals.clamp_min(0) + lam * n).unsqueeze(-1))
        probes.append(RidgeProbe(x_mean, x_std, y_mean, w, float(lam)))
    return probes


def r2_scores(truth: Tensor, pred: Tensor) -> tuple[float | None, list[float | None]]:
    """(pooled R², R² per component) of ``pred`` against ``truth`` ``[N, k]``.

    Pooled R² is 1 - sum SSE / sum SST over the components; a component without variance
    has no R² (None)."""
    t, p = truth.double(), pred.double()
    sse = ((t - p) ** 2).sum(0)
    sst = ((t - t.mean(0)) ** 2).sum(0)
    ok = sst > 1e-12 * max(1.0, float(t.abs().max()) ** 2) * t.shape[0]
    per = [float(1 - a / b) if good else None for a, b, good in zip(sse, sst, ok)]
    pooled = float(1 - sse[ok].sum() / sst[ok].sum()) if bool(ok.any()) else None
    return pooled, per


def _rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def ridge_probe(
    features: Tensor,
    targets: Tensor,
    *,
    test_fraction: float = 0.5,
    lambdas: Sequence[float] = PROBE_LAMBDAS,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a ridge probe from ``features`` to ``targets`` and report held-out R².

    ``features [B, S, d]`` and ``targets [B, S, k]`` (or ``[N, d]``/``[N, k]``: rows are
    then the units): datasets (dim 0) are split at random into a fitting part and a
    ``test_fraction`` test part; the penalty is chosen on a quarter of the fitting part, then
    the probe is refitted on all of it. Rows whose targets are not finite are left out.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} is not valid; it must be in (0, 1).")
    if features.shape[0] != targets.shape[0] or features.ndim != targets.ndim:
        raise ValueError(
            f"features {tuple(features.shape)} and targets {tuple(targets.shape)} do not match; "
            "pass [B, S, d] and [B, S, k] (or [N, d] and [N, k])."
        )
    units = features.shape[0]
    if units < 4:
        raise ValueError(f"ridge_probe needs at least 4 datasets to split; got {units}.")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(units, generator=gen)
    n_test = min(units - 2, max(1, round(units * test_fraction)))
    test, fit = perm[:n_test], perm[n_test:]
    n_val = max(1, len(fit) // 4) if len(fit) > 1 else 0
    val, inner = fit[:n_val], fit[n_val:]

    def pick(idx: Tensor) -> tuple[Tensor, Tensor]:
        x, y = _rows(features[idx].double().cpu()), _rows(targets[idx].double().cpu())
        keep = torch.isfinite(y).all(-1)
        return x[keep], y[keep]

    lam = float(lambdas[0])
    if n_val and len(lambdas) > 1:
        (xi, yi), (xv, yv) = pick(inner), pick(val)
        best = -float("inf")
        for probe in fit_ridge_path(xi, yi, lambdas):
            r2, _ = r2_scores(yv, probe.predict(xv))
            if r2 is not None and r2 > best:
                best, lam = r2, probe.lam
    (xf, yf), (xt, yt) = pick(fit), pick(test)
    probe = fit_ridge_path(xf, yf, [lam])[0]
    pooled, per = r2_scores(yt, probe.predict(xt))
    return {
        "r2": pooled,
        "r2_per_component": per,
        "lambda": lam,
        "num_fit_rows": int(xf.shape[0]),
        "num_test_rows": int(xt.shape[0]),
    }


def posterior_statistics(prior: Any, x: Tensor | None, y: Tensor) -> dict[str, Tensor]:
    """The prior's ``posterior_statistics(x, y)``, checked: each ``[B, S, k]`` (``[B, S]`` is
    read as k = 1), float64, on the CPU."""
    name = type(prior).__name__
    if not has_posterior_statistics(prior):
        raise TypeError(
            f"{name} declares no posterior statistics: define posterior_statistics(x, y) -> "
            "{name: Tensor [B, S, k]} (entry n summarising the posterior given the data before "
            "n) to probe for them."
        )
    raw = prior.posterior_statistics(x, y)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            f"{name}.posterior_statistics returned {type(raw).__name__}; return a non-empty "
            "dict {name: Tensor [B, S, k]}."
        )
    out = {}
    b, s = y.shape
    for key, value in raw.items():
        t = torch.as_tensor(value).detach().double().cpu()
        if t.ndim == 2:
            t = t.unsqueeze(-1)
        if t.ndim != 3 or tuple(t.shape[:2]) != (b, s):
            raise ValueError(
                f"{name}.posterior_statistics()[{key!r}] has shape {tuple(t.shape)}; expected "
                f"[B, S, k] = [{b}, {s}, k] for y of shape [{b}, {s}]."
            )
        out[str(key)] = t
    return out


@torch.inference_mode()
def posterior_probes(
    model: Any,
    prior: Any,
    heldout: HeldOut,
    *,
    batch_size: int = 256,
    include_embed: bool = True,
    test_fraction: float = 0.5,
    lambdas: Sequence[float] = PROBE_LAMBDAS,
    seed: int = 0,
) -> dict[str, Any]:
    """R² of ridge probes from every residual point to every posterior statistic.

    Returns ``{"statistics": {name: k}, "layers", "r2": {stat: {layer: R²}},
    "r2_per_component": {stat: {layer: [R² per component]}}, "lambda": {stat: {layer: lam}},
    "split"}``.
    """
    x_cpu = None if heldout.x is None else heldout.x.cpu()
    stats = posterior_statistics(prior, x_cpu, heldout.y.cpu())
    points = residual_points(model, include_embed)
    names = [name for _, name in points]
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    for rows in heldout.chunks(batch_size):
        for name, t in cache_at_predictions(model, heldout.inputs(rows), names).items():
            parts[name].append(t.float().cpu())
    feats = {label: torch.cat(parts[name], 0) for label, name in points}
    r2: dict[str, dict[str, float | None]] = {}
    per: dict[str, dict[str, list[float | None]]] = {}
    lams: dict[str, dict[str, float]] = {}
    for stat, target in stats.items():
        r2[stat], per[stat], lams[stat] = {}, {}, {}
        for label, f in feats.items():
            res = ridge_probe(f, target, test_fraction=test_fraction, lambdas=lambdas, seed=seed)
            r2[stat][label] = res["r2"]
            per[stat][label] = res["r2_per_component"]
            lams[stat][label] = res["lambda"]
    return {
        "statistics": {k: int(v.shape[-1]) for k, v in stats.items()},
        "layers": [label for label, _ in points],
        "r2": r2,
        "r2_per_component": per,
        "lambda": lams,
        "split": (
            f"ridge fitted on {1 - test_fraction:.0%} of {heldout.num_datasets} held-out datasets "
            f"(penalty from {list(lambdas)} x rows, chosen on a quarter of them), R² on the "
            f"other {test_fraction:.0%}"
        ),
    }
