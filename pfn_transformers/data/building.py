"""Priors from configs, and what a bar distribution needs to know about a prior.

``build_prior(node)`` turns a Hydra-style config (``{"_target_": "pkg.Class", ...}``, as in
``conf/prior/*.yaml`` and a run's saved config) into a data generator: the CLI, run folders
and ``from_pretrained`` rebuild a run's prior with it. ``prior_targets``, ``prior_y_range``
and ``riemann_borders_for`` derive bucket borders from a prior (the CLI's ``${pfn.*}``
resolvers and ``train(..., refit_buckets=True)`` share them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .protocol import batch_source

TARGET_SEED = 0  # fixed: the same borders every time
RIEMANN_SAMPLES = 50_000
RANGE_SAMPLES = 20_000


class PriorConfigError(ValueError):
    """A prior config cannot be built into a data generator (the message says why)."""


def build_prior(node: Mapping[str, Any] | Any, label: str = "prior") -> Any:
    """The data generator a ``{"_target_": ..., **kwargs}`` config describes.

    ``node`` may be a dict or an OmegaConf node. Raises PriorConfigError naming ``label``
    when it has no ``_target_``, its target cannot be imported or built, or the object
    built is not a data generator.
    """
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        raise PriorConfigError(f"{label}: no prior config is given.")
    if isinstance(node, Mapping):
        node = OmegaConf.create(dict(node))
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise PriorConfigError(
            f"{label}: the prior config has no _target_; a prior config names the class or "
            "function that builds the generator, e.g. "
            "`_target_: pfn_transformers.priors.GPPrior`."
        )
    target = node.get("_target_")
    try:
        prior = instantiate(node, _convert_="all")
    except Exception as exc:
        raise PriorConfigError(
            f"{label}: could not build {target}: {_innermost(exc)}. Check the prior's fields "
            "and that its module is importable (run from the folder that holds it, or add it "
            "to PYTHONPATH)."
        ) from None
    try:
        batch_source(prior)
    except TypeError as exc:
        raise PriorConfigError(f"{label}: {target} returned {exc}") from None
    return prior


def _innermost(exc: BaseException) -> str:
    """The message of the exception Hydra's instantiate wrapped (its own adds nothing)."""
    while exc.__cause__ is not None and type(exc).__name__ == "InstantiationException":
        exc = exc.__cause__
    lines = [ln for ln in str(exc).strip().splitlines() if not ln.startswith("full_key:")]
    return "\n".join(lines) or type(exc).__name__


def prior_targets(prior: Any, n: int, seed: int = TARGET_SEED) -> Tensor:
    """``n`` draws of y from any prior's predictive, float32 ``[n]`` (fixed seed, the caller's
    RNG untouched): ``sample_targets`` when it has one, else position 0 of n datasets."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(prior, "sample_targets"):
            y = prior.sample_targets(n)
        else:
            _, y = batch_source(prior).sample(n, 1)
    return torch.as_tensor(y).reshape(-1).float()


def prior_y_range(prior: Any) -> tuple[float, float]:
    """The prior's ``suggested_y_range``, else the catalogue's rule (central 99.9% of its
    targets, padded by 10% of that width on each side) applied to 20,000 draws."""
    rng = getattr(prior, "suggested_y_range", None)
    if callable(rng):
        rng = rng()
    if rng is not None:
        lo, hi = (float(v) for v in rng)
        return lo, hi
    from ..priors import ContinuousTargetMixin

    y = prior_targets(prior, RANGE_SAMPLES)
    tail = (1.0 - ContinuousTargetMixin.y_range_coverage) / 2
    lo, hi = torch.quantile(y, torch.tensor([tail, 1.0 - tail])).tolist()
    if not hi > lo:
        lo, hi = lo - 1.0, hi + 1.0
    pad = ContinuousTargetMixin.y_range_padding * (hi - lo)
    return float(lo - pad), float(hi + pad)


def riemann_borders_for(prior: Any, num_buckets: int) -> list[float]:
    """``num_buckets`` quantile (Riemann) buckets estimated from the prior's targets."""
    from ..model.bucketizer import estimate_riemann_borders

    y = prior_targets(prior, RIEMANN_SAMPLES)
    return [float(b) for b in estimate_riemann_borders(y, int(num_buckets)).tolist()]


def refit_bucket_fields(config: Mapping[str, Any], prior: Any) -> dict[str, Any]:
    """A bar-distribution model config (as a dict) with its borders refit to ``prior``,
    keeping the number of buckets: uniform buckets span the prior's y range, Riemann
    buckets follow its quantiles."""
    out = dict(config)
    if out.get("bucket_type") == "riemann":
        out["riemann_borders"] = riemann_borders_for(prior, int(out["d_vocab"]))
    else:
        out["y_min"], out["y_max"] = prior_y_range(prior)
    return out
