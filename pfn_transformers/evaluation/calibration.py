"""Calibration that needs no exact posterior: the PIT of data drawn from the prior.

For data drawn from the prior, the probability integral transform u_n = F_n(y_n) of each
target under the Bayes-optimal predictive F_n (given x_n and D_<n) is uniform on [0, 1], at
every context size n, and u_0, u_1, ... of one dataset are independent (Rosenblatt). So the
PIT of a PFN's predictive must look uniform too, whatever the prior, exact posterior or not.
Discrete targets use the randomised PIT u = F(y - 1) + V p(y), V ~ U(0, 1), which is uniform
under the right predictive as well.

``calibration(model, prior)`` reports, in a JSON-ready dict:

- ``ks``: the Kolmogorov-Smirnov distance of the PIT from uniform, pooled over all positions
  and per context size n, each with its p-value and the null band (the distance a calibrated
  predictive stays under with probability 1 - alpha at that sample size);
- ``histogram`` of the pooled PIT with the binomial band of a uniform one, and its mean and
  variance (1/2 and 1/12 when calibrated; a variance above 1/12 means too narrow a
  predictive, below means too wide);
- ``coverage`` of central intervals at several levels (pooled and per n, with stderrs);
- ``reliability`` (discrete heads): predicted probability against observed frequency;
- ``calibrated`` and ``flags``: the verdict, and each test that failed, in words.

``exact_calibration(prior)`` runs the same check on the prior's own exact predictive
(``exact_predictive_cdf`` / ``exact_predictive_log_probs``, or ``exact_log_predictive``
itself, integrated numerically): a wrong posterior formula fails it.
``plot_calibration`` draws the figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.base import has_exact_posterior
from pfn_transformers.data.protocol import batch_source, checked_source

LEVELS = (0.5, 0.8, 0.9, 0.95)
ALPHA = 0.01  # family-wise false-alarm rate of the verdict (pooled + per-n tests)
METHODS = ("auto", "log_predictive")
_GRID = 256  # points of the numerical integration of exact_log_predictive
_ROWS = 65_536  # rows per exact_log_predictive call while integrating


# ----------------------------------------------------------------------------- statistics
def _kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (alternating series)."""
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
    return min(1.0, max(0.0, total))


def _ks_scale(m: int) -> float:
    """Stephens' small-sample correction: sqrt(m) + 0.12 + 0.11 / sqrt(m)."""
    r = math.sqrt(m)
    return r + 0.12 + 0.11 / r


def ks_p_value(distance: float, m: int) -> float:
    """p-value of a KS distance from uniform for m independent samples."""
    return _kolmogorov_sf(distance * _ks_scale(m)) if m > 0 else 1.0


def ks_critical(m: int, alpha: float = ALPHA) -> float:
    """The KS distance a calibrated predictive exceeds with probability alpha (m samples)."""
    lo, hi = 0.2, 5.0
    for _ in range(60):  # bisection on the survival function
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _kolmogorov_sf(mid) > alpha else (lo, mid)
    return 0.5 * (lo + hi) / _ks_scale(m) if m > 0 else math.nan


def ks_distance(u: Tensor) -> float:
    """sup |F_empirical - identity| of samples u in [0, 1]."""
    v = u.double().flatten().sort().values
    m = v.numel()
    if m == 0:
        return math.nan
    i = torch.arange(1, m + 1, dtype=torch.float64)
    return float(torch.maximum(i / m - v, v - (i - 1) / m).max())


def _normal_quantile(p: float) -> float:
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)))


def pit_report(
    pit: Tensor,
    *,
    alpha: float = ALPHA,
    levels: tuple[float, ...] = LEVELS,
    num_bins: int = 20,
) -> dict[str, Any]:
    """Uniformity statistics of PIT values ``[num_datasets, seq_len]`` (position n = context
    size n), as described in the module doc. NaN entries are left out.

    The verdict spends ``alpha`` (the chance that a calibrated predictive is flagged) half on
    the pooled KS test and half on the per-n tests (Bonferroni over the positions), so the
    null bands are at those levels.
    """
    pit = pit.double()
    n_data, seq_len = pit.shape
    valid = ~torch.isnan(pit)
    pooled = pit[valid]
    m = int(pooled.numel())
    d = ks_distance(pooled)
    per_n = [ks_distance(pit[:, j][valid[:, j]]) for j in range(seq_len)]
    counts_n = [int(valid[:, j].sum()) for j in range(seq_len)]
    per_n_p = [ks_p_value(dj, c) for dj, c in zip(per_n, counts_n)]
    a_pooled, a_n = alpha / 2, alpha / (2 * max(seq_len, 1))
    ks = {
        "distance": d,
        "critical": ks_critical(m, a_pooled),
        "p_value": ks_p_value(d, m),
        "samples": m,
        "per_n": per_n,
        "per_n_critical": [ks_critical(c, a_n) for c in counts_n],
        "per_n_p_value": per_n_p,
        "per_n_samples": counts_n,
    }
    hist = torch.histc(pooled.clamp(0, 1), bins=num_bins, min=0.0, max=1.0)
    expected = m / num_bins
    z = _normal_quantile(1 - alpha / (2 * num_bins))
    half = z * math.sqrt(m * (1 / num_bins) * (1 - 1 / num_bins))
    mean, var = float(pooled.mean()), float(pooled.var(unbiased=False))
    coverage: dict[str, Any] = {}
    for level in levels:
        lo, hi = (1 - level) / 2, (1 + level) / 2
        inside = ((pit >= lo) & (pit <= hi)).double().masked_fill(~valid, math.nan)
        observed = float(inside[valid].mean())
        per = [float(inside[:, j][valid[:, j]].mean()) for j in range(seq_len)]
        coverage[str(level)] = {
            "nominal": float(level),
            "observed": observed,
            "stderr": math.sqrt(level * (1 - level) / max(m, 1)),
            "per_n": per,
        }
    flags: list[str] = []
    if ks["p_value"] < a_pooled:
        flags.append(
            f"pooled PIT is not uniform: KS distance {d:.4f} > {ks['critical']:.4f} "
            f"(p = {ks['p_value']:.2g} < {a_pooled:.2g}, {m} samples)"
        )
    worst = min(range(seq_len), key=lambda j: per_n_p[j]) if seq_len else None
    if worst is not None and per_n_p[worst] < a_n:
        flags.append(
            f"PIT at context size n={worst} is not uniform: KS distance {per_n[worst]:.4f} "
            f"> {ks['per_n_critical'][worst]:.4f} (p = {per_n_p[worst]:.2g} < {a_n:.2g}, "
            "Bonferroni over positions)"
        )
    return {
        "num_datasets": int(n_data),
        "seq_len": int(seq_len),
        "alpha": float(alpha),
        "ks": ks,
        "histogram": {
            "edges": torch.linspace(0, 1, num_bins + 1).tolist(),
            "counts": [int(c) for c in hist.tolist()],
            "expected": expected,
            "band": [max(0.0, expected - half), expected + half],
        },
        "pit_mean": mean,
        "pit_variance": var,
        "reading": _reading(mean, var, m),
        "coverage": coverage,
        "calibrated": not flags,
        "flags": flags,
    }


def _reading(mean: float, var: float, m: int) -> str:
    """Plain words for the PIT's first two moments (uniform: mean 1/2, variance 1/12)."""
    se_mean = math.sqrt(1 / 12 / max(m, 1))
    se_var = math.sqrt(1 / 180 / max(m, 1))  # Var of (U - 1/2)^2 is 1/180
    words = []
    if abs(var - 1 / 12) > 3 * se_var:
        words.append(
            "too narrow (overconfident: PIT piles up at 0 and 1)"
            if var > 1 / 12
            else "too wide (underconfident: PIT piles up near 1/2)"
        )
    if abs(mean - 0.5) > 3 * se_mean:
        words.append(
            "biased low (y tends to lie above the predictive)"
            if mean > 0.5
            else "biased high (y tends to lie below the predictive)"
        )
    if not words:
        return "PIT mean and variance agree with a uniform PIT"
    return f"the predictive looks {' and '.join(words)}; PIT mean {mean:.3f}, variance {var:.4f} (uniform: 0.5, 0.0833)"


def reliability_report(
    probs: Tensor, y: Tensor, *, num_bins: int = 10, alpha: float = ALPHA
) -> dict[str, Any]:
    """Predicted probability against observed frequency, over every (position, class) pair.

    ``probs [..., C]``, ``y [...]`` class ids. Each bin reports its mean predicted
    probability, the observed frequency of the class and a binomial stderr; ``ece`` is the
    expected calibration error (count-weighted mean |frequency - confidence|).
    """
    p = probs.double().reshape(-1, probs.shape[-1])
    target = torch.nn.functional.one_hot(y.long().reshape(-1), p.shape[-1]).double()
    p, target = p.flatten(), target.flatten()
    idx = (p * num_bins).long().clamp_(0, num_bins - 1)
    count = torch.bincount(idx, minlength=num_bins).double()
    conf = torch.bincount(idx, weights=p, minlength=num_bins) / count.clamp_min(1)
    freq = torch.bincount(idx, weights=target, minlength=num_bins) / count.clamp_min(1)
    se = (conf * (1 - conf) / count.clamp_min(1)).sqrt()
    z = _normal_quantile(1 - alpha / (2 * num_bins))
    bad = (count >= 30) & ((freq - conf).abs() > z * se + 1e-3)
    ece = float(((freq - conf).abs() * count).sum() / count.sum().clamp_min(1))
    keep = count > 0
    return {
        "bins": num_bins,
        "confidence": [float(v) if k else None for v, k in zip(conf.tolist(), keep.tolist())],
        "frequency": [float(v) if k else None for v, k in zip(freq.tolist(), keep.tolist())],
        "stderr": [float(v) for v in se.tolist()],
        "count": [int(v) for v in count.tolist()],
        "ece": ece,
        "miscalibrated_bins": [int(i) for i in bad.nonzero().flatten().tolist()],
    }


# ----------------------------------------------------------------------------- PIT values
def _randomised_pit(log_probs: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
    """F(y - 1) + V p(y) for class ids y under categorical log probabilities ``[..., C]``
    (on the CPU; a class id outside the head gives NaN)."""
    probs = log_probs.double().cpu().exp()
    y = y.cpu()
    k = probs.shape[-1]
    inside = (y >= 0) & (y < k)
    yc = y.long().clamp(0, k - 1).unsqueeze(-1)
    below = (probs.cumsum(-1) - probs).gather(-1, yc).squeeze(-1)
    p_y = probs.gather(-1, yc).squeeze(-1)
    v = torch.rand(y.shape, generator=gen, dtype=torch.float64)
    u = below + v * p_y
    return torch.where(inside, u, torch.full_like(u, math.nan))


def model_pit(
    model: Any, x: Tensor | None, y: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """PIT ``[B, S]`` of y under the model's predictive at every position, and the class
    probabilities ``[B, S, C]`` for discrete heads (None otherwise)."""
    kw = {"validate_args": False}  # a target outside bounded support has cdf 0 or 1
    dist = model.predictive(y, **kw) if x is None else model.predictive(x, y, **kw)
    yd = y.to(model.device)
    if model.task.discrete:
        logp = torch.log_softmax(dist.logits.double(), -1).cpu()
        return _randomised_pit(logp, yd.cpu(), gen), logp.exp()
    return dist.cdf(yd.to(dist.logits.dtype)).double().cpu(), None


def exact_pit(
    prior: Any, x: Tensor | None, y: Tensor, gen: torch.Generator, method: str = "auto"
) -> dict[str, Tensor | None]:
    """The PIT ``[B, S]`` of y under the prior's exact predictive, as a dict:

    - ``pit``; ``probs`` ``[B, S, C]`` for discrete y (else None);
    - ``mass`` ``[B, S]``: the predictive's total mass, when it had to be computed
      (``method="log_predictive"``: ``exact_log_predictive`` integrated over a grid or summed
      over the classes);
    - ``mismatch`` ``[B, S]``: with ``method="auto"``, how far ``exact_log_predictive`` is
      from the cdf's / probabilities' own density at y (relative error of the density), so
      a wrong log density next to a right cdf is caught too.
    """
    discrete = batch_source(prior).spec.discrete
    out: dict[str, Tensor | None] = {"pit": None, "probs": None, "mass": None, "mismatch": None}
    if method == "auto" and discrete and hasattr(prior, "exact_predictive_log_probs"):
        logp = prior.exact_predictive_log_probs(x, y).double()
        picked = logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
        own = prior.exact_log_predictive(x, y).double()
        out.update(pit=_randomised_pit(logp, y, gen), probs=logp.exp())
        out["mismatch"] = (own - picked).exp().sub(1).abs()
        return out
    if method == "auto" and not discrete and hasattr(prior, "exact_predictive_cdf"):
        yd = y.double()
        h = 1e-4 * (1 + yd.abs())
        values = torch.stack([yd - h, yd, yd + h], dim=-1)
        cdf = prior.exact_predictive_cdf(x, y, values).double()
        density = (cdf[..., 2] - cdf[..., 0]) / (2 * h)
        own = prior.exact_log_predictive(x, y).double().exp()
        out["pit"] = cdf[..., 1]
        out["mismatch"] = (own - density).abs() / density.abs().clamp_min(1e-12)
        return out
    if discrete:
        num = batch_source(prior).spec.num_classes or int(y.max()) + 1
        logp = _enumerated_log_probs(prior, x, y, num)
        out.update(pit=_randomised_pit(logp, y, gen), probs=logp.exp(), mass=logp.exp().sum(-1))
        return out
    out["pit"], out["mass"] = _integrated_pit(prior, x, y)
    return out


def _substituted(prior: Any, x: Tensor | None, y: Tensor, n: int, values: Tensor) -> Tensor:
    """exact_log_predictive at position n with y_n replaced by each of ``values [V]``:
    ``[B, V]`` (positions after n are cut off; the predictive at n never sees them)."""
    b = y.shape[0]
    v = values.numel()
    yy = y[:, : n + 1].repeat_interleave(v, dim=0).clone()
    yy[:, n] = values.to(yy.dtype).repeat(b)
    xx = None if x is None else x[:, : n + 1].repeat_interleave(v, dim=0)
    out = []
    step = max(1, _ROWS // max(n + 1, 1))
    for i in range(0, yy.shape[0], step):
        xi = None if xx is None else xx[i : i + step]
        out.append(prior.exact_log_predictive(xi, yy[i : i + step])[:, n].double())
    return torch.cat(out).reshape(b, v)


def _enumerated_log_probs(prior: Any, x: Tensor | None, y: Tensor, num: int) -> Tensor:
    values = torch.arange(num)
    cols = [_substituted(prior, x, y, n, values) for n in range(y.shape[1])]
    return torch.stack(cols, dim=1)  # [B, S, C]


def _integrated_pit(prior: Any, x: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
    """PIT by the trapezoid rule over a grid spanning the drawn targets (widened by half
    their range on each side); unnormalised, so a density that does not integrate to one
    shows in both the PIT and the mass."""
    yd = y.double()
    lo, hi = float(yd.min()), float(yd.max())
    pad = 0.5 * max(hi - lo, 1e-3)
    grid = torch.linspace(lo - pad, hi + pad, _GRID, dtype=torch.float64)
    pits, masses = [], []
    for n in range(y.shape[1]):
        dens = _substituted(prior, x, y, n, grid).exp()  # [B, G]
        cum = torch.cumulative_trapezoid(dens, grid, dim=-1)
        cum = torch.cat([torch.zeros_like(cum[:, :1]), cum], dim=-1)
        masses.append(cum[:, -1])
        pits.append(_interp(yd[:, n], grid, cum))
    return torch.stack(pits, 1), torch.stack(masses, 1)


def _interp(v: Tensor, grid: Tensor, table: Tensor) -> Tensor:
    """Row-wise linear interpolation of ``table [B, G]`` (on ``grid``) at ``v [B]``."""
    g = grid.numel()
    j = torch.searchsorted(grid, v.contiguous()).clamp(1, g - 1)
    x0, x1 = grid[j - 1], grid[j]
    t = ((v - x0) / (x1 - x0)).clamp(0, 1).unsqueeze(-1)
    y0 = table.gather(-1, (j - 1).unsqueeze(-1))
    y1 = table.gather(-1, j.unsqueeze(-1))
    return (y0 + t * (y1 - y0)).squeeze(-1)


# ----------------------------------------------------------------------------- drivers
def _check_args(num_datasets: Any, seq_len: Any, batch_size: Any, method: str = "auto") -> None:
    for name, value in (
        ("num_datasets", num_datasets),
        ("seq_len", seq_len),
        ("batch_size", batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"calibration {name}={value!r} is not valid; it must be a positive int."
            )
    if method not in METHODS:
        raise ValueError(
            f"calibration method={method!r} is not valid; choose one of {list(METHODS)}."
        )


def _batches(
    source: Any, num_datasets: int, batch_size: int, seq_len: int, seed: int
) -> Iterator[tuple[Tensor | None, Tensor, torch.Generator]]:
    """Batches of held-out datasets under a fixed seed (the caller's RNG untouched), with the
    generator of the randomised PIT's uniforms; the body runs under inference mode."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + 1)
        done = 0
        while done < num_datasets:
            b = min(batch_size, num_datasets - done)
            done += b
            x, y = source.sample(b, seq_len)
            yield x, y, gen


def calibration(
    model: Any,
    prior: Any,
    *,
    num_datasets: int = 512,
    seq_len: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    alpha: float = ALPHA,
    levels: tuple[float, ...] = LEVELS,
    num_bins: int = 20,
) -> dict[str, Any]:
    """PIT calibration of ``model``'s predictive on ``num_datasets`` datasets from ``prior``.

    Needs a distribution head (bar or class/token); deterministic for a seed, and the
    caller's RNG is left untouched. Returns ``pit_report``'s dict plus ``source``, ``head``
    and, for discrete heads, ``reliability``.
    """
    _check_args(num_datasets, seq_len, batch_size)
    if model.task.head == "point":
        raise ValueError(
            f"calibration needs a predictive distribution, but {type(model.config).__name__} "
            "has prediction_type='point'; use a bar-distribution or classification head."
        )
    source = checked_source(
        prior, model.task,
        model_name=f"calibration: the model ({type(model.config).__name__})",
        data_name="the prior {name}",
    )  # fmt: skip
    pits, probs, ys = [], [], []
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        for x, y, gen in _batches(source, num_datasets, batch_size, seq_len, seed):
            xd = None if x is None else x.to(model.device)
            u, p = model_pit(model, xd, y, gen)
            pits.append(u)
            if p is not None:
                probs.append(p)
                ys.append(y)
    finally:
        model.train(was_training)
    out = {
        "source": "model",
        "prior": type(prior).__name__,
        "head": "discrete" if model.task.discrete else "bar",
        "randomised": bool(model.task.discrete),
        "seed": int(seed),
        **pit_report(torch.cat(pits), alpha=alpha, levels=levels, num_bins=num_bins),
    }
    if probs:
        _add_reliability(out, torch.cat(probs), torch.cat(ys), alpha)
        out["calibrated"] = not out["flags"]
    return out


def exact_calibration(
    prior: Any,
    *,
    num_datasets: int = 512,
    seq_len: int = 32,
    batch_size: int = 256,
    seed: int = 0,
    method: str = "auto",
    alpha: float = ALPHA,
    levels: tuple[float, ...] = LEVELS,
    num_bins: int = 20,
    mass_tolerance: float = 0.01,
    mismatch_tolerance: float = 1e-3,
) -> dict[str, Any]:
    """PIT calibration of the prior's own exact predictive: a check of the formula.

    ``method="auto"`` uses ``exact_predictive_cdf`` / ``exact_predictive_log_probs`` when the
    prior has them, and checks that ``exact_log_predictive`` (the formula evaluation scores
    against) agrees with them at the observed y (``mismatch_tolerance``, relative density).
    Otherwise, and with ``method="log_predictive"``, ``exact_log_predictive`` itself is
    integrated numerically (continuous y; a 256-point grid per position, so it costs 256
    formula evaluations per target) or summed over the classes (discrete y); its total mass
    must then be one (within ``mass_tolerance``).
    """
    _check_args(num_datasets, seq_len, batch_size, method)
    if not has_exact_posterior(prior):
        raise ValueError(
            f"exact_calibration: the prior {type(prior).__name__} has no exact_log_predictive "
            "(ExactPosteriorMixin), so there is no formula to check."
        )
    source = batch_source(prior)
    cols: dict[str, list[Tensor]] = {}
    for x, y, gen in _batches(source, num_datasets, batch_size, seq_len, seed):
        parts = exact_pit(prior, x, y, gen, method)
        if parts["probs"] is not None:
            parts["y"] = y
        for key, value in parts.items():
            if value is not None:
                cols.setdefault(key, []).append(value)
    data = {k: torch.cat(v) for k, v in cols.items()}
    report = pit_report(data["pit"], alpha=alpha, levels=levels, num_bins=num_bins)
    out = {
        "source": "exact",
        "prior": type(prior).__name__,
        "head": "discrete" if source.spec.discrete else "continuous",
        "randomised": bool(source.spec.discrete),
        "method": method,
        "seed": int(seed),
        **report,
    }
    if "mass" in data:
        mass = data["mass"]
        worst = float((mass - 1).abs().max())
        out["mass"] = {"mean": float(mass.mean()), "max_abs_error": worst}
        if worst > mass_tolerance:
            out["flags"].append(
                "exact_log_predictive does not integrate to one: total mass "
                f"{float(mass.mean()):.4f} on average, off by up to {worst:.3g} (tolerance "
                f"{mass_tolerance})"
            )
    if "mismatch" in data:
        worst = float(data["mismatch"].max())
        against = "the probabilities" if source.spec.discrete else "the cdf's derivative"
        out["log_predictive_mismatch"] = worst
        if worst > mismatch_tolerance:
            out["flags"].append(
                f"exact_log_predictive disagrees with {against} at the observed y: density "
                f"off by up to {worst:.3g} relative (tolerance {mismatch_tolerance}); the "
                "two formulas describe different predictives"
            )
    if "probs" in data:
        _add_reliability(out, data["probs"], data["y"], alpha)
    out["calibrated"] = not out["flags"]
    return out


def _add_reliability(out: dict[str, Any], probs: Tensor, y: Tensor, alpha: float) -> None:
    """Attach the reliability diagram's numbers, flagging bins that disagree."""
    rel = reliability_report(probs, y, alpha=alpha)
    out["reliability"] = rel
    if rel["miscalibrated_bins"]:
        edges = [
            f"[{i / rel['bins']:.1f}, {(i + 1) / rel['bins']:.1f})"
            for i in rel["miscalibrated_bins"]
        ]
        out["flags"].append(
            f"reliability: classes predicted with probability in {', '.join(edges)} occur at "
            "a different frequency (beyond the binomial band)"
        )


# ----------------------------------------------------------------------------- figure
def plot_calibration(
    result: dict[str, Any], out_dir: str | Path, name: str = "pit_calibration.png"
) -> list[Path]:
    """Write the calibration figure(s) of a ``calibration``/``exact_calibration`` result.

    ``name`` (default ``pit_calibration.png``): the PIT histogram against the uniform band,
    the KS distance per context size against its null band, and observed against nominal
    coverage. Discrete heads also get ``reliability.png`` (with the same stem prefix).
    """
    from pfn_transformers.evaluation.plots import _plt, _save

    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    hist = result["histogram"]
    edges = hist["edges"]
    ax = axes[0]
    lo, hi = hist["band"]
    ax.axhspan(lo, hi, color="k", alpha=0.12, label="uniform (null band)")
    ax.stairs(hist["counts"], edges, fill=True, alpha=0.25, color="C0")
    ax.stairs(hist["counts"], edges, color="C0", lw=1.5, label="PIT histogram")
    ax.set_xlim(0, 1)
    ax.axhline(hist["expected"], color="k", lw=0.8)
    ax.set_xlabel("PIT u = F(y)")
    ax.set_ylabel("count")
    verdict = "calibrated" if result["calibrated"] else "NOT calibrated"
    ax.set_title(f"{result.get('prior', '')} ({result.get('source', '')}): {verdict}")
    ax.legend(fontsize=8)
    ax = axes[1]
    ks = result["ks"]
    n = list(range(len(ks["per_n"])))
    ax.plot(n, ks["per_n"], "-o", markersize=3, label="KS distance")
    ax.plot(n, ks["per_n_critical"], "k--", lw=0.8, label="null band")
    ax.set_xlabel("context size n")
    ax.set_ylabel("KS distance from uniform")
    ax.set_title(f"pooled KS {ks['distance']:.4f} (band {ks['critical']:.4f})")
    ax.legend(fontsize=8)
    ax = axes[2]
    cov = result["coverage"]
    nominal = [v["nominal"] for v in cov.values()]
    observed = [v["observed"] for v in cov.values()]
    err = [2 * v["stderr"] for v in cov.values()]
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.errorbar(nominal, observed, yerr=err, fmt="o")
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("nominal coverage of central interval")
    ax.set_ylabel("observed coverage")
    ax.set_title("coverage (±2 stderr)")
    paths = [_save(fig, out_dir / name)]
    rel = result.get("reliability")
    if rel:
        fig, ax = plt.subplots(figsize=(5, 5))
        conf = [c for c in rel["confidence"] if c is not None]
        freq = [f for c, f in zip(rel["confidence"], rel["frequency"]) if c is not None]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.plot(conf, freq, "-o")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"reliability (ECE {rel['ece']:.4f})")
        stem = Path(name).stem.replace("pit_calibration", "").strip("_")
        rel_name = f"{stem}_reliability.png" if stem else "reliability.png"
        paths.append(_save(fig, out_dir / rel_name))
    return paths


__all__ = [
    "ALPHA",
    "LEVELS",
    "calibration",
    "exact_calibration",
    "exact_pit",
    "ks_critical",
    "ks_distance",
    "ks_p_value",
    "model_pit",
    "pit_report",
    "plot_calibration",
    "reliability_report",
]
