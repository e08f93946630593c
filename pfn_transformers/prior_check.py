"""The workbench for someone writing a prior: look at it before training on it.

``prior_check(prior, model_config=..., training_config=...)`` returns a JSON-ready report and,
with ``out_dir``, writes its figures:

- ``draws``: a few datasets (functions y(x) for supervised priors, sequences otherwise),
  ``prior_draws.png``;
- ``targets``: the distribution of y against the model's bucket borders: the share of
  targets outside the borders (and in the unbounded tails), the prior's suggested range,
  ``prior_targets.png`` (class frequencies for discrete y);
- ``speed``: sampling time per batch of the training shape, the time of one training step
  of the model, and sampling's share of the two;
- ``exact``: for a prior with ``exact_log_predictive``, the PIT check of that formula on
  data from the prior (``evaluation.exact_calibration``), ``exact_pit.png``; a wrong
  posterior formula fails it before anyone trains against it;
- ``warnings``: what needs attention, in words.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from .data.base import has_exact_posterior
from .data.protocol import batch_source
from .task import compatibility_problem

OUT_OF_RANGE_LIMIT = 1e-3  # share of targets beyond the borders that earns a warning
DATA_SHARE_LIMIT = 0.5  # sampling share of a step that earns a warning


def prior_check(
    prior: Any,
    *,
    model_config: Any = None,
    training_config: Any = None,
    num_datasets: int = 256,
    seq_len: int | None = None,
    num_draws: int = 6,
    num_targets: int = 20_000,
    exact: bool = True,
    speed: bool = True,
    speed_repeats: int = 5,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Check ``prior`` against a model config and training profile (see the module doc).

    ``seq_len`` defaults to the training profile's (else 32); the exact-formula check uses
    ``num_datasets`` datasets of that length. Deterministic for a seed (timings aside) and
    the caller's RNG is left untouched.
    """
    source = batch_source(prior)
    spec = source.spec
    tc = training_config
    seq_len = int(seq_len or getattr(tc, "seq_len", None) or 32)
    report: dict[str, Any] = {
        "prior": source.name,
        "prior_repr": repr(prior),
        "task": spec.describe(),
        "input_dim": spec.input_dim,
        "num_classes": spec.num_classes,
        "has_exact": has_exact_posterior(prior),
        "seq_len": seq_len,
        "warnings": [],
        "figures": [],
    }
    warn = report["warnings"]
    if model_config is not None:
        problem = compatibility_problem(
            model_config.task, spec, model_name=type(model_config).__name__,
            data_name=f"the prior {source.name}",
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x, y = source.sample(num_draws, max(seq_len, 64 if spec.supervised else seq_len))
        report["draws"] = {"num": int(num_draws), "points": int(y.shape[1])}
        if out is not None:
            report["figures"].append(str(_plot_draws(x, y, spec, source.name, out)))
        report["targets"] = _targets(prior, spec, model_config, num_targets, seed, warn)
        if out is not None:
            report["figures"].append(str(_plot_targets(report["targets"], source.name, out)))
    if speed:
        report["speed"] = _speed(source, model_config, tc, seq_len, speed_repeats, warn)
    if exact and report["has_exact"]:
        from .evaluation.calibration import exact_calibration, plot_calibration

        section = exact_calibration(prior, num_datasets=num_datasets, seq_len=seq_len, seed=seed)
        report["exact"] = section
        if not section["calibrated"]:
            warn.append(
                "the exact posterior formula fails its PIT check: "
                + "; ".join(section["flags"])
                + ". Fix exact_log_predictive before evaluating against it."
            )
        if out is not None:
            paths = plot_calibration(section, out, name="exact_pit.png")
            report["figures"] += [str(p) for p in paths]
    return report


# ---------------------------------------------------------------------------- targets
def _targets(
    prior: Any, spec: Any, model_config: Any, n: int, seed: int, warn: list[str]
) -> dict[str, Any]:
    from .data.building import prior_targets

    y = prior_targets(prior, n, seed=seed).double()
    if spec.discrete:
        counts = torch.bincount(y.long().clamp_min(0)).tolist()
        out: dict[str, Any] = {"kind": "discrete", "samples": n, "counts": counts}
        head = None if model_config is None else model_config.task.num_classes
        if head is not None:
            beyond = float((y >= head).double().mean())
            out.update(model_classes=int(head), out_of_range_share=beyond)
            if beyond > 0:
                warn.append(
                    f"{beyond:.2%} of the targets are class ids >= the model's {head} "
                    "classes; raise num_classes/d_vocab."
                )
        return out
    from .data.building import prior_y_range

    qs = torch.tensor([0.0, 0.001, 0.01, 0.5, 0.99, 0.999, 1.0], dtype=torch.float64)
    quant = torch.quantile(y, qs).tolist()
    out = {
        "kind": "continuous",
        "samples": n,
        "quantiles": dict(zip(["min", "0.001", "0.01", "0.5", "0.99", "0.999", "max"], quant)),
        "mean": float(y.mean()),
        "std": float(y.std()),
        "suggested_range": list(prior_y_range(prior)),
        "values": y[:5000].tolist(),  # for the figure (dropped from the JSON by the CLI)
    }
    bucketizer = _bucketizer(model_config)
    if bucketizer is None:
        return out
    b = bucketizer.borders.double()
    outside = float(((y < b[0]) | (y > b[-1])).double().mean())
    tails = float(((y < b[1]) | (y > b[-2])).double().mean())
    out.update(
        borders=[float(b[0]), float(b[-1])],
        num_buckets=bucketizer.num_buckets,
        support=bucketizer.support,
        out_of_range_share=outside,
        tail_share=tails,
        border_values=b.tolist(),
    )
    if outside > OUT_OF_RANGE_LIMIT:
        what = (
            "are clamped to the edge buckets in the loss"
            if bucketizer.support == "bounded"
            else "land in the half-normal tails, where the head is coarse"
        )
        lo, hi = out["suggested_range"]
        warn.append(
            f"{outside:.2%} of the targets lie outside the bucket borders "
            f"[{b[0]:.4g}, {b[-1]:.4g}] and {what}; use y_min={lo:.4g}, y_max={hi:.4g} "
            "(the suggested range)."
        )
    return out


def _bucketizer(model_config: Any) -> Any:
    if model_config is None or getattr(model_config.task, "head", None) != "bar":
        return None
    from .model.bucketizer import Bucketizer

    return Bucketizer.from_config(model_config)


# ---------------------------------------------------------------------------- speed
def _speed(
    source: Any, model_config: Any, tc: Any, seq_len: int, repeats: int, warn: list[str]
) -> dict[str, Any]:
    """Median times of drawing a training batch and of one training step of the model."""
    from .training.config import TrainingConfig

    tc = tc if tc is not None else TrainingConfig(seq_len=seq_len)
    batch = int(tc.batch_size)
    source.sample(batch, seq_len)  # warm up (vmap tracing, caches)
    sample_s = _median_time(lambda: source.sample(batch, seq_len), repeats)
    out: dict[str, Any] = {
        "batch_size": batch,
        "seq_len": seq_len,
        "sample_s": sample_s,
        "sequences_per_s": batch / sample_s if sample_s > 0 else None,
    }
    if model_config is None:
        return out
    step_s, device = _step_time(model_config, tc, source, batch, seq_len, repeats)
    share = sample_s / (sample_s + step_s)
    out.update(step_s=step_s, data_share=share, device=str(device))
    if share > DATA_SHARE_LIMIT:
        warn.append(
            f"sampling takes {share:.0%} of a training step ({sample_s * 1e3:.1f} ms of "
            f"{(sample_s + step_s) * 1e3:.1f} ms); vectorise generate_batch (or draw on the "
            "device) so data does not dominate training."
        )
    return out


def _step_time(
    model_config: Any, tc: Any, source: Any, batch: int, seq_len: int, repeats: int
) -> tuple[float, torch.device]:
    from .training.distributed import DistributedContext
    from .training.state import build_state
    from .training.step import TrainStep
    from .utils import resolve_device

    device = resolve_device(tc.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        state = build_state(model_config, tc, DistributedContext.from_env(device))
        step = TrainStep(state)
        x, y = source.sample(batch, seq_len, device=device)
        step(x, y)  # warm up (and compile, when the profile asks for it)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def one() -> None:
            step(x, y)
            sync()

        return _median_time(one, repeats), device


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------- figures
def _plot_draws(x: Any, y: torch.Tensor, spec: Any, name: str, out: Path) -> Path:
    from .evaluation.plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i in range(y.shape[0]):
        if x is None:  # a sequence per draw (discrete ones offset so they stay apart)
            offset = 0.08 * i if spec.discrete else 0.0
            ax.plot(torch.arange(y.shape[1]), y[i].float() + offset, "-o", markersize=2, lw=1)
            ax.set_xlabel("position t")
        elif spec.discrete and x.shape[-1] >= 2:
            ax.scatter(x[i, :, 0], x[i, :, 1], c=y[i], cmap="tab10", s=10, marker="ox+^sv"[i % 6])
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1] (colour: class)")
        else:
            order = x[i, :, 0].argsort()
            xs, ys = x[i, order, 0].float(), y[i, order].float()
            ax.plot(xs, ys, "-o" if not spec.discrete else "o", markersize=2, lw=1)
            ax.set_xlabel("x[0]" if x.shape[-1] > 1 else "x")
    if x is None or not (spec.discrete and x.shape[-1] >= 2):
        ax.set_ylabel("y")
    ax.set_title(f"{name}: {y.shape[0]} draws ({spec.describe()})")
    return _save(fig, out / "prior_draws.png")


def _plot_targets(targets: dict[str, Any], name: str, out: Path) -> Path:
    from .evaluation.plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if targets["kind"] == "discrete":
        counts = targets["counts"]
        ax.bar(range(len(counts)), counts)
        if "model_classes" in targets:
            ax.axvline(
                targets["model_classes"] - 0.5, color="r", ls="--", label="model's classes end"
            )
            ax.legend()
        ax.set_xlabel("class / token id")
        ax.set_ylabel("count")
    else:
        values = targets["values"]
        ax.hist(values, bins=100, density=True, alpha=0.6, label="prior targets")
        lo, hi = targets["suggested_range"]
        ax.axvspan(lo, hi, color="g", alpha=0.08, label=f"suggested range [{lo:.3g}, {hi:.3g}]")
        if "borders" in targets:
            b = targets["border_values"]
            ax.axvline(b[0], color="r", lw=1.2, label="outer borders")
            ax.axvline(b[-1], color="r", lw=1.2)
            if targets["support"] == "unbounded":
                ax.axvline(b[1], color="r", ls=":", lw=1, label="tails start")
                ax.axvline(b[-2], color="r", ls=":", lw=1)
            ax.set_title(
                f"{name}: {targets['out_of_range_share']:.2%} of y outside the "
                f"{targets['num_buckets']} buckets"
            )
        ax.set_xlabel("y")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    if targets["kind"] == "discrete" or "borders" not in targets:
        ax.set_title(f"{name}: distribution of y")
    return _save(fig, out / "prior_targets.png")


__all__ = ["prior_check"]
