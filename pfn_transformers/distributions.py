"""The distributions a trained PFN predicts: ``BarDistribution``, ``AffinePredictive``.

``model.predictive(...)`` returns a ``BarDistribution`` for bar-distribution heads and a
``torch.distributions.Categorical`` for class/token heads, so intervals, cdfs, samples and
scores are the usual ``Distribution`` calls instead of ``model.bucketizer`` internals::

    dist = model.predictive(x_context, y_context, x_query)   # batch shape [batch, points]
    lo, hi = dist.interval(0.9)
    dist.log_prob(y_query), dist.cdf(y_query), dist.sample((100,)), dist.mean, dist.stddev

``BarDistribution`` delegates every quantity the ``Bucketizer`` defines (density, cdf, icdf,
moments, sampling) to it, so the bounded/unbounded tails are honoured exactly as in training;
only the entropy, which the bucketizer has no use for, is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    AffineTransform,
    Categorical,
    Distribution,
    TransformedDistribution,
    constraints,
)

from .model.bucketizer import Bucketizer

# Differential entropy of HalfNormal(scale) is log(scale) + this constant.
_HN_ENTROPY = 0.5 * math.log(math.pi * math.e / 2.0)


class BarDistribution(Distribution):
    """The predictive a bar-distribution head describes: K bucket masses over fixed borders.

    ``logits [..., K]`` give the bucket masses (softmax); the batch shape is
    ``logits.shape[:-1]`` (``[batch, points]`` from ``model.predictive``) and the event shape
    is ``()``. Mass is uniform inside each bucket; with ``support="unbounded"`` the edge
    buckets are half-normal tails (see ``Bucketizer``). ``rsample`` is the inverse-cdf
    transform of a uniform draw, so gradients flow to the logits.
    """

    arg_constraints = {"logits": constraints.real_vector}
    has_rsample = True

    def __init__(
        self, logits: Tensor, bucketizer: Bucketizer, validate_args: bool | None = None
    ) -> None:
        if not isinstance(bucketizer, Bucketizer):
            raise TypeError(
                f"BarDistribution bucketizer={type(bucketizer).__name__} is not valid; pass the "
                "model's Bucketizer (model.bucketizer)."
            )
        if logits.ndim < 1 or logits.shape[-1] != bucketizer.num_buckets:
            raise ValueError(
                f"BarDistribution logits of shape {tuple(logits.shape)} are not valid; the last "
                f"dimension must equal the bucketizer's num_buckets={bucketizer.num_buckets}."
            )
        dtype = torch.promote_types(logits.dtype, torch.float32)
        self.logits = logits.to(device=bucketizer.borders.device, dtype=dtype)
        self.bucketizer = bucketizer
        super().__init__(self.logits.shape[:-1], torch.Size(), validate_args=validate_args)

    # ------------------------------------------------------------------ structure
    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> BarDistribution:
        shape = torch.Size(batch_shape)
        logits = self.logits.expand(*shape, self.bucketizer.num_buckets)
        return BarDistribution(logits, self.bucketizer, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        if self.bucketizer.support == "unbounded":
            return constraints.real
        b = self.bucketizer.borders
        return constraints.interval(float(b[0]), float(b[-1]))

    @property
    def probs(self) -> Tensor:
        """Bucket masses ``[..., K]`` (they sum to one)."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def borders(self) -> Tensor:
        """Bucket borders ``[K + 1]``."""
        return self.bucketizer.borders

    # ------------------------------------------------------------------ moments
    @property
    def mean(self) -> Tensor:
        return self.bucketizer.mean(self.logits)

    @property
    def variance(self) -> Tensor:
        return self.bucketizer.variance(self.logits)

    def entropy(self) -> Tensor:
        """Differential entropy: sum_k p_k (h_k - log p_k), h_k the entropy of bucket k's
        shape (log width for a uniform bucket, that of the half-normal for a tail)."""
        bz = self.bucketizer
        logp = torch.log_softmax(self.logits, dim=-1)
        widths = bz.widths.to(logp)
        h = widths.log()
        if bz.support == "unbounded":
            tails = bz.tail_scales.to(logp).log() + _HN_ENTROPY
            h = torch.cat([tails[:1], h[1:-1], tails[1:]])
        p = logp.exp()
        terms = torch.where(p > 0, p * (h - logp), torch.zeros_like(p))
        return terms.sum(-1)

    # ------------------------------------------------------------------ density, cdf
    def log_prob(self, value: Tensor) -> Tensor:
        value = self._as_value(value)
        if self._validate_args:
            self._validate_sample(value)
        return self.bucketizer.log_prob(self.logits, value)

    def cdf(self, value: Tensor) -> Tensor:
        value = self._as_value(value)
        if self._validate_args:
            self._validate_sample(value)
        return self.bucketizer.cdf(self.logits, value)

    def icdf(self, value: Tensor) -> Tensor:
        return self.bucketizer.icdf(self.logits, self._as_value(value))

    def quantile(self, q: float | Sequence[float] | Tensor) -> Tensor:
        """Quantiles: a float gives the batch shape, a sequence of Q levels gives
        ``[Q, *batch_shape]``."""
        levels = torch.as_tensor(q, dtype=torch.float64)
        if bool(((levels < 0) | (levels > 1) | torch.isnan(levels)).any()):
            raise ValueError(f"quantile q={q!r} is not valid; every level must lie in [0, 1].")
        levels = levels.reshape(levels.shape + (1,) * len(self.batch_shape))
        return self.icdf(levels.to(self.logits.device))

    def interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        """The central interval holding ``level`` of the mass: (lower, upper) quantiles."""
        level = _check_level(level)
        lo = self.quantile((1 - level) / 2)
        hi = self.quantile((1 + level) / 2)
        return lo, hi

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        sample_shape: torch.Size | Sequence[int] = (),
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draws of shape ``sample_shape + batch_shape`` (``generator`` for reproducibility)."""
        with torch.no_grad():
            return self.bucketizer.sample(self.logits, sample_shape, generator=generator)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        return self.icdf(u)

    # ------------------------------------------------------------------ helpers
    def _as_value(self, value: Tensor | float) -> Tensor:
        return torch.as_tensor(value, device=self.logits.device).to(self.logits.dtype)


class AffinePredictive(TransformedDistribution):
    """A predictive on a standardised scale mapped back to the data's: y = loc + scale * z.

    What the estimators return when they standardise y: ``log_prob``, ``cdf``, ``icdf``,
    ``sample`` and ``rsample`` come from ``TransformedDistribution``; the moments, entropy,
    quantiles and intervals follow the affine map exactly.
    """

    def __init__(self, base: Distribution, loc: float, scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"AffinePredictive scale={scale!r} is not valid; it must be > 0.")
        self.base = base
        self.loc, self.scale = float(loc), float(scale)
        super().__init__(base, AffineTransform(self.loc, self.scale), validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc + self.scale * self.base.mean

    @property
    def variance(self) -> Tensor:
        return self.scale**2 * self.base.variance

    @property
    def stddev(self) -> Tensor:
        return self.scale * self.base.stddev

    def entropy(self) -> Tensor:
        return self.base.entropy() + math.log(self.scale)

    def quantile(self, q: float | Sequence[float] | Tensor) -> Tensor:
        return self.loc + self.scale * self.base.quantile(q)

    def interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        lo, hi = self.base.interval(level)
        return self.loc + self.scale * lo, self.loc + self.scale * hi


def _check_level(level: Any) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"interval level={level!r} is not valid; it must be a probability in (0, 1), "
            "e.g. 0.9 for the central 90% interval."
        )
    return value


def distribution_from_logits(
    model: Any, logits: Tensor, validate_args: bool | None = None
) -> Distribution:
    """The predictive distribution a model's head describes, given its logits ``[..., out]``.

    Bar heads give a ``BarDistribution``, class/token heads a ``Categorical``; a point head
    predicts a value, not a distribution, and is refused.
    """
    task = model.task
    if task.discrete:
        return Categorical(logits=logits.float(), validate_args=validate_args)
    if task.head == "point" or getattr(model, "bucketizer", None) is None:
        name = type(model.config).__name__
        raise ValueError(
            f"{name}.prediction_type='point': a point head predicts a value, not a predictive "
            "distribution, so predictive() is not available; train with "
            "prediction_type='distribution' (a bar-distribution head) for one."
        )
    return BarDistribution(logits, model.bucketizer, validate_args=validate_args)


__all__ = ["AffinePredictive", "BarDistribution", "distribution_from_logits"]
