"""How close a PFN comes to the exact posterior predictive (DESIGN.md, "Inference quality").

``evaluate(model, prior, seq_len=...)`` draws a fixed-seed held-out set from the prior (the
caller's RNG is left untouched) and reports, per context size n and overall:

- ``nll``: the PFN's mean negative log predictive density/mass;
- ``exact_nll`` and ``excess_nll`` = NLL_PFN - NLL_exact paired on the same datasets (an
  estimate of KL(exact || PFN)), with standard errors over datasets;
- ``floor_nll`` / ``floor_excess_nll`` for bar-distribution heads: the best NLL the head's
  borders allow (bucket masses equal to the exact predictive's), so bucket error and
  approximation error are told apart;
- ``prior_predictive_nll``: NLL of the n = 0 predictive applied at every position (the
  exact prior predictive, else the PFN's own n = 0 prediction): a PFN must beat it;
- ``length``: when ``seq_len`` exceeds the length the model was trained on, NLL and excess
  NLL within it and beyond it, apart (extrapolation is not averaged into one figure);
- ``mse`` (of the predictive mean) and ``coverage`` of 50%/90% central intervals for
  continuous heads; ``accuracy`` and ``kl`` for discrete heads;
- ``conditional``: for a model with ``condition_on``, the same datasets scored with their
  true hyperparameters given, against the exact predictive given them (``conditional.py``);
  the fields above are then the marginal evaluation (hyperparameters withheld).
- ``baselines``: for priors with baselines (``gp_baselines.baselines_for``: ``GPHyperPrior``'s
  MLE-II and true-hyperparameter GPs), ``{name: {"nll", "excess_nll"}}`` on the same datasets
  (excess over the exact predictive), and ``baselines_time_s``; None for other priors or
  with ``baselines=False``.

Every statistic is a dict ``{"mean", "stderr", "per_n", "per_n_stderr"}`` of plain floats;
stderr is over datasets (positions within a dataset are correlated).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.base import has_exact_posterior
from pfn_transformers.data.protocol import checked_source
from pfn_transformers.evaluation.conditional import ConditionalScores
from pfn_transformers.evaluation.gp_baselines import baselines_for
from pfn_transformers.model.length import trained_length

COVERAGE_LEVELS = (0.5, 0.9)


# ----------------------------------------------------------------------------- helpers
def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def summarize(values: Tensor) -> dict[str, Any]:
    """Mean and stderr over datasets of a ``[N, S]`` array, overall and per position n.

    NaN entries are positions left out of the score (targets outside a bounded bar
    distribution); a dataset's mean is over its scored positions. Non-finite results become
    None (so the dict stays valid JSON).
    """
    v = values.double()
    scored = ~torch.isnan(v)
    zeroed = torch.where(scored, v, torch.zeros_like(v))

    def mean_se(sums: Tensor, sq: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
        mean = sums / count
        var = (sq - count * mean * mean) / (count - 1)
        se = torch.where(count > 1, var.clamp_min(0).sqrt() / count.sqrt(), torch.zeros_like(mean))
        return mean, se

    per_dataset = zeroed.sum(1) / scored.sum(1)
    per_dataset = per_dataset[scored.any(1)]
    n = torch.tensor(float(per_dataset.numel()), dtype=torch.float64)
    mean, se = mean_se(per_dataset.sum(), (per_dataset**2).sum(), n)
    count_n = scored.sum(0).double()
    per_n, per_n_se = mean_se(zeroed.sum(0), (zeroed**2).sum(0), count_n)
    return {
        "mean": _finite(mean.item()),
        "stderr": _finite(se.item()),
        "per_n": [_finite(a) for a in per_n.tolist()],
        "per_n_stderr": [_finite(a) for a in per_n_se.tolist()],
    }


def head_kind(model: Any) -> str:
    """ "discrete" (classes/tokens), "bar" (bar distribution), "point" (MSE head) or
    "density" (another continuous head with ``log_prob``)."""
    task = model.task
    if task.discrete:
        return "discrete"
    if task.head == "point":
        return "point"
    return "bar" if getattr(model, "bucketizer", None) is not None else "density"


def _predictive_logits(model: Any, x: Tensor | None, y: Tensor) -> Tensor:
    """Logits aligned with y: position t predicts y_t (unsupervised: t = 0 is the prior)."""
    return model.predictive_logits(y) if x is None else model.predictive_logits(x, y)


def _model_device(model: Any, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def _singletons(x: Tensor | None, y: Tensor) -> tuple[Tensor | None, Tensor]:
    """Every position as its own dataset of length 1: ``[B*S, 1(, D)]``."""
    b, s = y.shape
    xs = None if x is None else x.reshape(b * s, 1, x.shape[-1])
    return xs, y.reshape(b * s, 1)


def bucket_logits_from_cdf(cdf: Tensor, support: str = "unbounded") -> Tensor:
    """Log bucket masses of the best bar distribution for a predictive with the given cdf.

    ``cdf [..., K+1]`` is the exact predictive's cdf at all K+1 borders. With unbounded
    support the edge buckets stand for everything beyond the inner borders (masses F(b_1)
    and 1 - F(b_{K-1})); with bounded support the mass inside [b_0, b_K] is renormalised.
    """
    c = cdf.double()
    if support == "unbounded":
        c = torch.cat([torch.zeros_like(c[..., :1]), c[..., 1:-1], torch.ones_like(c[..., :1])], -1)
    masses = c.diff(dim=-1).clamp_min(0)
    masses = masses / masses.sum(-1, keepdim=True).clamp_min(1e-300)
    return masses.clamp_min(1e-300).log()


def floor_points(bucketizer: Any, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(idx [B, S], points [B, S, P])``: y's bucket and where the floor needs the exact cdf.

    Only y's own bucket matters to the NLL, so the exact cdf is needed at its two borders
    (and, for bounded support, at the outer ones that renormalise): 2-4 values per position
    instead of K + 1 (a quadrature reference over 1,000 borders costs minutes per batch)."""
    borders = bucketizer.borders.detach().double().cpu()
    idx = bucketizer.bucketize(y.double()).cpu()
    points = [borders[idx], borders[idx + 1]]
    if bucketizer.support != "unbounded":
        points += [borders[0].expand_as(points[0]), borders[-1].expand_as(points[0])]
    return idx, torch.stack(points, -1)


def floor_logits_from_cdf(bucketizer: Any, idx: Tensor, cdf: Tensor) -> Tensor:
    """Logits ``[B, S, K]`` giving each y the log density of the best bar distribution
    (``bucket_logits_from_cdf`` of the exact cdf at every border), from the exact cdf at
    ``floor_points``; the other buckets share the remaining mass evenly."""
    k = bucketizer.num_buckets
    cdf = cdf.double()
    lower, upper = cdf[..., 0], cdf[..., 1]
    if bucketizer.support == "unbounded":  # the edge buckets hold everything beyond them
        lower = torch.where(idx == 0, torch.zeros_like(lower), lower)
        upper = torch.where(idx == k - 1, torch.ones_like(upper), upper)
        mass = upper - lower
    else:
        mass = (upper - lower) / (cdf[..., 3] - cdf[..., 2]).clamp_min(1e-300)
    mass = mass.clamp(1e-300, 1.0)
    rest = ((1 - mass) / max(k - 1, 1)).clamp_min(1e-300)
    logits = rest.log().unsqueeze(-1).expand(*idx.shape, k).clone()
    return logits.scatter_(-1, idx.unsqueeze(-1), mass.log().unsqueeze(-1))


def floor_logits(prior: Any, bucketizer: Any, x: Tensor | None, y: Tensor) -> Tensor:
    """The best bar distribution's logits for y under ``prior``'s exact predictive."""
    idx, points = floor_points(bucketizer, y)
    return floor_logits_from_cdf(bucketizer, idx, prior.exact_predictive_cdf(x, y, points))


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    model: Any,
    prior: Any,
    *,
    num_datasets: int = 2048,
    seq_len: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: Any = None,
    baselines: bool = True,
) -> dict[str, Any]:
    """Score ``model`` on ``num_datasets`` held-out datasets of length ``seq_len`` from ``prior``.

    Returns a JSON-serialisable dict (see the module doc). Deterministic for a given seed and
    leaves the caller's global RNG state as it was. The model runs in eval mode under
    ``torch.inference_mode`` and is put back into its previous mode afterwards.
    ``baselines=False`` skips the prior's baselines (MLE-II costs about as much as the
    exact predictive); the datasets are the same either way.
    """
    if seq_len is None or isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"evaluate(seq_len={seq_len!r}) is not valid; pass a positive int.")
    for name, value in (("num_datasets", num_datasets), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"evaluate({name}={value!r}) is not valid; it must be a positive int.")
    head = head_kind(model)
    source = checked_source(
        prior,
        model.task,
        model_name=f"evaluate: the model ({type(model.config).__name__})",
        data_name="the prior {name}",
    )
    dev = _model_device(model, device)
    exact = has_exact_posterior(prior)
    bucketizer = getattr(model, "bucketizer", None) if head == "bar" else None
    want_floor = bucketizer is not None and exact and hasattr(prior, "exact_predictive_cdf")
    # a reference that is costly per pass (quadrature) may give log predictive and cdf at once
    joint_floor = want_floor and hasattr(prior, "exact_log_predictive_and_cdf")
    want_exact_mean = exact and hasattr(prior, "exact_predictive_mean")
    want_probs = exact and head == "discrete" and hasattr(prior, "exact_predictive_log_probs")
    baseline_fn = baselines_for(prior) if baselines and exact else None
    baseline_time = 0.0

    cols: dict[str, list[Tensor]] = {}
    conditional = ConditionalScores(model, prior, source)

    def put(key: str, value: Tensor) -> None:
        cols.setdefault(key, []).append(value.detach().to("cpu", torch.float64))

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.random.default_generator.manual_seed(seed)
            done = 0
            while done < num_datasets:
                b = min(batch_size, num_datasets - done)
                done += b
                if baseline_fn is None:
                    x, y = conditional.sample(b, seq_len)
                else:  # the same draw as source.sample's, with the hyperparameters it used
                    x, y, params = source.sample_with_params(b, seq_len)
                    conditional.use(params)
                xd = None if x is None else x.to(dev)
                logits = _predictive_logits(model, xd, y.to(dev))
                conditional.score(x, y, dev)
                yf = y.double()
                outside = model.out_of_range(y.to(dev)) if head == "bar" else None
                if outside is not None:
                    put("outside", outside.double())
                if head != "point":
                    nll = -model.log_prob(logits, y.to(dev))
                    if outside is not None:  # scored over in-range targets (reported apart)
                        nll = nll.masked_fill(outside, math.nan)
                    put("nll", nll)
                ex_logp = None
                if want_probs:
                    ex_logp = prior.exact_predictive_log_probs(x, y).double()
                if ex_logp is not None:  # the same numbers, without a second (MC) pass
                    put("exact_nll", -ex_logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1))
                elif joint_floor:  # one pass over the reference gives both
                    idx, points = floor_points(bucketizer, y)
                    ex_lp, cdf = prior.exact_log_predictive_and_cdf(x, y, points)
                    put("exact_nll", -ex_lp)
                    flog = floor_logits_from_cdf(bucketizer, idx, cdf)
                elif exact:
                    put("exact_nll", -prior.exact_log_predictive(x, y))
                if baseline_fn is not None:
                    tb = time.perf_counter()
                    for name, logp in baseline_fn(prior, x, y, params).items():
                        put(f"baseline/{name}", -logp)
                    baseline_time += time.perf_counter() - tb
                if exact:
                    put("prior_nll", _prior_nll_exact(prior, x, y))
                elif head != "point":
                    put("prior_nll", _prior_nll_model(model, xd, y.to(dev), batch_size))
                if head == "discrete":
                    pred = model.point_prediction(logits).cpu()
                    put("correct", (pred == y).double())
                    if ex_logp is not None:
                        put("exact_correct", (ex_logp.argmax(-1) == y).double())
                        model_logp = torch.log_softmax(logits.double(), -1).cpu()
                        model_logp = model_logp[..., : ex_logp.shape[-1]]
                        kl = (ex_logp.exp() * (ex_logp - model_logp)).sum(-1)
                        put("kl", kl)
                    continue
                mean = model.point_prediction(logits).double().cpu()
                put("se", (mean - yf) ** 2)
                if want_exact_mean:
                    put("exact_se", (prior.exact_predictive_mean(x, y).double() - yf) ** 2)
                if bucketizer is not None:
                    lf = logits.float()
                    for level in COVERAGE_LEVELS:
                        lo = bucketizer.quantile(lf, (1 - level) / 2).double().cpu()
                        hi = bucketizer.quantile(lf, (1 + level) / 2).double().cpu()
                        put(f"cover{int(level * 100)}", ((yf >= lo) & (yf <= hi)).double())
                if want_floor:
                    if not joint_floor:
                        flog = floor_logits(prior, bucketizer, x, y)
                    floor = -bucketizer.log_prob(flog.to(dev), yf.to(dev))
                    if outside is not None:  # scored over the same in-range targets as nll
                        floor = floor.masked_fill(outside, math.nan)
                    put("floor_nll", floor)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    elapsed = time.perf_counter() - t0

    data = {k: torch.cat(v, 0) for k, v in cols.items()}
    cfg = model.config
    out: dict[str, Any] = {
        "prior": type(prior).__name__,
        "prior_repr": repr(prior),
        "model_kind": getattr(cfg, "kind", type(cfg).__name__),
        "head": head,
        "num_datasets": int(num_datasets),
        "seq_len": int(seq_len),
        "seed": int(seed),
        "has_exact": bool(exact),
        "eval_time_s": round(elapsed, 3),
    }
    if head == "bar":
        out["num_buckets"] = int(bucketizer.num_buckets)
        out["bucket_support"] = bucketizer.support
    # bounded bar distributions: share of targets outside [y_min, y_max], left out of the NLLs
    out["out_of_range"] = summarize(data["outside"]) if "outside" in data else None
    for key, name in (
        ("nll", "nll"),
        ("exact_nll", "exact_nll"),
        ("prior_nll", "prior_predictive_nll"),
        ("se", "mse"),
        ("exact_se", "exact_mse"),
        ("correct", "accuracy"),
        ("exact_correct", "exact_accuracy"),
        ("floor_nll", "floor_nll"),
    ):
        out[name] = summarize(data[key]) if key in data else None
    out["excess_nll"] = (
        summarize(data["nll"] - data["exact_nll"])
        if "nll" in data and "exact_nll" in data
        else None
    )
    out["floor_excess_nll"] = (
        summarize(data["floor_nll"] - data["exact_nll"]) if "floor_nll" in data else None
    )
    if head == "discrete":
        # KL(exact || PFN): summed over the support when the exact probabilities are known,
        # else its paired Monte-Carlo estimate, the excess NLL.
        out["kl"] = summarize(data["kl"]) if "kl" in data else out["excess_nll"]
    else:
        out["kl"] = out["excess_nll"]
    out["length"] = _by_trained_length(model, data, seq_len)
    out["baselines"] = _baselines(data) if baseline_fn is not None else None
    out["baselines_time_s"] = round(baseline_time, 3) if baseline_fn is not None else None
    out["coverage"] = None
    if bucketizer is not None:
        out["coverage"] = {
            str(level): summarize(data[f"cover{int(level * 100)}"]) for level in COVERAGE_LEVELS
        }
    # paired NLL_PFN - NLL_prior-predictive: "beats" when below zero by > 2 stderr
    gain = (
        summarize(data["nll"] - data["prior_nll"])
        if "nll" in data and "prior_nll" in data
        else None
    )
    out["conditional"] = conditional.summary(summarize)
    out["nll_minus_prior_predictive"] = gain
    out["beats_prior_predictive"] = (
        bool(gain["mean"] < -1e-6 and gain["mean"] + 2 * gain["stderr"] < 0)
        if gain is not None and gain["mean"] is not None and gain["stderr"] is not None
        else None
    )
    return out


def _by_trained_length(model: Any, data: dict[str, Tensor], seq_len: int) -> dict | None:
    """NLL and excess NLL over the positions within the trained length (n < T) and beyond
    it (n >= T), when the evaluation runs past it; None otherwise."""
    trained = trained_length(model)
    if trained is None or seq_len <= trained:
        return None
    out: dict[str, Any] = {"trained_seq_len": int(trained)}
    for part, cols in (("within", slice(0, trained)), ("beyond", slice(trained, None))):
        block = {}
        if "nll" in data:
            block["nll"] = summarize(data["nll"][:, cols])
        if "nll" in data and "exact_nll" in data:
            block["excess_nll"] = summarize((data["nll"] - data["exact_nll"])[:, cols])
        out[part] = block
    return out


def _baselines(data: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    """``{name: {"nll", "excess_nll"}}`` of each baseline, paired with the exact NLL."""
    return {
        key.split("/", 1)[1]: {
            "nll": summarize(values),
            "excess_nll": summarize(values - data["exact_nll"]),
        }
        for key, values in data.items()
        if key.startswith("baseline/")
    }


def _prior_nll_exact(prior: Any, x: Tensor | None, y: Tensor) -> Tensor:
    """NLL of the exact n = 0 (prior) predictive at every position."""
    b, s = y.shape
    xs, ys = _singletons(x, y)
    return -prior.exact_log_predictive(xs, ys).reshape(b, s)


def _prior_nll_model(model: Any, x: Tensor | None, y: Tensor, chunk: int) -> Tensor:
    """NLL of the PFN's own n = 0 prediction (no context) at every position."""
    b, s = y.shape
    if x is None:  # unsupervised: the n = 0 prediction is the same for every position
        logits0 = model.predictive_logits(y[:, :1])
        return -model.log_prob(logits0.expand(b, s, -1), y)
    xs, ys = _singletons(x, y)
    parts = []
    step = max(1, chunk * 16)
    for i in range(0, xs.shape[0], step):
        logits = model.predictive_logits(xs[i : i + step], ys[i : i + step])
        parts.append(-model.log_prob(logits, ys[i : i + step]))
    return torch.cat(parts, 0).reshape(b, s)
