"""Where a PFN's sampled draws land under the exact posterior predictive.

The excess NLL charges a bar head little for too much mass in far buckets, yet those are the
spikes a user sees in ``pfn sample``'s posterior-predictive functions. This check draws from
the model given a context from the prior and locates every draw by its probability integral
transform (PIT) under the exact predictive given the same context: a draw outside the exact
central ``level`` interval has PIT below ``(1 - level) / 2`` or above ``(1 + level) / 2``,
which a Bayes-optimal sampler does with probability ``1 - level``. ``mean_abs_z`` is the mean
of ``|Phi^-1(PIT)|``, 0.798 for a calibrated sampler (larger: draws too far out).

- marginal draws: each query point drawn on its own (``autoregressive=False``);
- joint draws: the query points drawn one after another, each joining the context
  (``sample_posterior_predictive``; unsupervised: ``generate`` rollouts after a prefix). Each
  joint draw's marginal given the original context is that context's exact predictive, as
  for every exchangeable prior (all catalogue priors with an exact posterior are).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.protocol import batch_source

_NORMAL = torch.distributions.Normal(0.0, 1.0)


def _exact_pit(prior: Any, x: Tensor | None, y: Tensor, values: Tensor) -> Tensor:
    """PIT [B, V] of ``values`` [B, V] under the exact predictive of the last position of
    ``(x, y)`` (its y is ignored: a position's predictive never depends on its own y)."""
    v = values.double().unsqueeze(1).expand(-1, y.shape[1], -1)
    return prior.exact_predictive_cdf(x, y, v)[:, -1]


def _summary(pit: Tensor, level: float) -> dict[str, float]:
    lo, hi = (1 - level) / 2, (1 + level) / 2
    z = _NORMAL.icdf(pit.float().clamp(1e-7, 1 - 1e-7))
    return {
        "outside": ((pit < lo) | (pit > hi)).double().mean().item(),
        "mean_abs_z": z.abs().mean().item(),
    }


@torch.no_grad()
def predictive_draws(
    model: Any,
    prior: Any,
    *,
    context: int = 10,
    num_query: int = 22,
    num_datasets: int = 64,
    num_samples: int = 16,
    level: float = 0.999,
    seed: int = 0,
) -> dict[str, Any]:
    """Share of marginal and joint draws outside the exact central ``level`` interval.

    Datasets of ``context + num_query`` points come from ``prior`` (seeded; the caller's RNG
    is left as it was); keep that sum within the sequence length the model was trained on.
    Needs a continuous head (bar or point) and a prior with ``exact_predictive_cdf``.
    """
    if getattr(model, "discrete_y", False):
        raise ValueError("predictive_draws needs a continuous head; this model predicts classes.")
    if not hasattr(prior, "exact_predictive_cdf"):
        raise ValueError(
            f"predictive_draws needs a prior with exact_predictive_cdf; {type(prior).__name__} "
            "has none."
        )
    if not 0 < level < 1:
        raise ValueError(f"predictive_draws level={level!r} is not valid; use 0 < level < 1.")
    for name, value in (("context", context), ("num_query", num_query)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (name != "context"):
            raise ValueError(f"predictive_draws {name}={value!r} is not valid.")
    was_training = model.training
    model.eval()
    dev = model.device
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x, y = batch_source(prior).sample(num_datasets, context + num_query)
            if model.supervised:
                marginal, joint = _supervised_draws(model, x, y, context, num_samples, dev)
                pit = {
                    k: _supervised_pits(prior, x, y, context, d)
                    for k, d in (("marginal", marginal), ("joint", joint))
                }
            else:
                marginal, joint = _unsupervised_draws(model, y, context, num_query, num_samples)
                pit = {
                    k: _unsupervised_pits(prior, y, context, d)
                    for k, d in (("marginal", marginal), ("joint", joint))
                }
    finally:
        model.train(was_training)
    return {
        "level": level,
        "nominal_outside": 1 - level,
        "nominal_mean_abs_z": math.sqrt(2 / math.pi),
        "context": context,
        "num_query": num_query,
        "num_datasets": num_datasets,
        "num_samples": num_samples,
        **{kind: _summary(p, level) for kind, p in pit.items()},
    }


def _supervised_draws(model, x, y, n, num_samples, dev) -> tuple[Tensor, Tensor]:
    """Marginal and joint draws [B, num_samples, M] at the queries ``x[:, n:]``."""
    xc, yc, xq = x[:, :n].to(dev), y[:, :n].to(dev), x[:, n:].to(dev)
    draws = [
        model.sample_posterior_predictive(xc, yc, xq, num_samples, autoregressive=joint)
        for joint in (False, True)
    ]
    return tuple(d.permute(1, 0, 2).cpu() for d in draws)  # [S, B, M] -> [B, S, M]


def _supervised_pits(prior, x, y, n, draws: Tensor) -> Tensor:
    pits = []
    for j in range(draws.shape[-1]):
        xs = torch.cat([x[:, :n], x[:, n + j : n + j + 1]], dim=1)
        ys = torch.cat([y[:, :n], y[:, n + j : n + j + 1]], dim=1)
        pits.append(_exact_pit(prior, xs, ys, draws[..., j]))
    return torch.stack(pits, -1)


def _unsupervised_draws(model, y, n, num_query, num_samples) -> tuple[Tensor, Tensor]:
    """Marginal draws [B, S, M] (M draws of the element after the prefix) and joint ones
    (rollouts of M elements after it)."""
    b = y.shape[0]
    rows = y[:, : n + 1].to(model.device).repeat_interleave(num_samples, 0)  # [B*S, n + 1]
    prefix = rows[:, :n]
    logits = model.predictive_logits(rows)[:, n]  # y_n's predictive: it never sees y_n
    marginal = torch.stack(
        [model.sample_from_logits(logits) for _ in range(num_query)], -1
    )  # [B*S, M]
    joint = model.generate(b * num_samples, n + num_query, prefix=prefix)[:, n:]
    shape = (b, num_samples, num_query)
    return marginal.view(shape).cpu(), joint.reshape(shape).cpu()


def _unsupervised_pits(prior, y, n, draws: Tensor) -> Tensor:
    b, s, m = draws.shape
    ys = y[:, : n + 1]  # the predictive of position n given the prefix
    return _exact_pit(prior, None, ys, draws.reshape(b, s * m)).reshape(b, s, m)
