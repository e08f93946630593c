"""A trained PFN's predictions as ``torch.distributions`` objects.

``model.predictive(...)`` returns a ``BarDistribution`` for bar-distribution heads and a
``torch.distributions.Categorical`` for class/token heads, so intervals, cdfs, samples and
scores are the usual ``Distribution`` calls instead of ``model.bucketizer`` internals::

    dist = model.predictive(x_context, y_context, x_query)   # batch shape [batch, points]
    lo, hi = dist.interval(0.9)
    dist.log_prob(y_query), dist.cdf(y_query), dist.sample((100,)), dist.mean, dist.stddev

The distribution classes live in ``distributions.py``; this module picks one for a model
(``model_predictive``) and re-exports them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .context import CachedContext
from .distributions import AffinePredictive, BarDistribution, distribution_from_logits
from .model.conditioning import logits_given


@torch.no_grad()
def model_predictive(
    model: Any,
    x_or_y: Tensor,
    y: Tensor | None = None,
    x_query: Tensor | None = None,
    *,
    next_element: bool = False,
    chunk_size: int | None = None,
    validate_args: bool | None = None,
    hyperparameters: Any = None,
) -> Distribution:
    """What ``PFNModel.predictive`` does (see there)."""
    if model.supervised:
        if next_element:
            raise ValueError(
                "next_element=True is for unsupervised models; a supervised model predicts at "
                "query points: predictive(x_context, y_context, x_query)."
            )
        if y is None:
            raise ValueError(
                "a supervised model needs predictive(x_context, y_context, x_query) (or "
                "predictive(x, y) for every position given the ones before it)."
            )
        if x_query is None:
            logits = logits_given(model, x_or_y, y, hyperparameters)
        else:
            return CachedContext(model, x_or_y, y, hyperparameters=hyperparameters).predictive(
                x_query, chunk_size=chunk_size, validate_args=validate_args
            )
    else:
        if y is not None or x_query is not None:
            raise ValueError(
                "an unsupervised model takes predictive(y) with y [batch, seq]; there is no x."
            )
        model._condition(hyperparameters, 0)  # refuses them: unsupervised models have none
        if next_element:
            y_home = model._check_inputs(None, model._home(x_or_y))
            logits = model._unsupervised_logits(y_home)[:, -1:]
        else:
            logits = logits_given(model, x_or_y, None, hyperparameters)
    return distribution_from_logits(model, logits, validate_args=validate_args)


__all__ = ["AffinePredictive", "BarDistribution", "distribution_from_logits", "model_predictive"]
