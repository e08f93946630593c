"""What an interpretability analysis scores a prediction against, on held-out datasets.

The logit lens and ablations compare predictions on the same fixed-seed held-out datasets
(paired, as ``evaluate`` does). Per position the score is:

- ``excess_nll``: NLL of the prediction minus NLL of the exact posterior predictive, when the
  prior has one (an estimate of the KL from the exact predictive: 0 is Bayes-optimal);
- ``nll``: the prediction's own NLL, when the prior has no exact predictive;
- ``excess_mse`` / ``mse``: the same for point heads, which have no NLL (squared error of the
  point prediction, minus that of the exact posterior mean when the prior has one).

Targets outside a bounded bar distribution are left out (NaN), as in ``evaluate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.base import has_exact_posterior
from pfn_transformers.data.protocol import checked_source
from pfn_transformers.evaluation.metrics import head_kind

METRICS = {
    "excess_nll": "NLL minus the exact posterior predictive's NLL (nats; 0 = Bayes-optimal)",
    "nll": "the PFN's own NLL (nats): the prior has no exact posterior predictive",
    "excess_mse": "squared error of the point prediction minus that of the exact posterior mean",
    "mse": "squared error of the point prediction (point head; no exact posterior mean)",
}


@dataclass
class HeldOut:
    """Held-out datasets on the model's device and the per-position reference score.

    ``reference`` ``[B, S]`` (float64, CPU) is subtracted from each prediction's loss: the
    exact predictive's NLL (or squared error), or None when there is nothing to subtract.
    """

    x: Tensor | None
    y: Tensor
    metric: str
    reference: Tensor | None
    prior_name: str

    @property
    def num_datasets(self) -> int:
        return int(self.y.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.y.shape[1])

    @property
    def description(self) -> str:
        return METRICS[self.metric]

    def inputs(self, rows: slice = slice(None)) -> tuple[Tensor, ...]:
        """The model's positional inputs for a slice of the datasets: (x, y) or (y,)."""
        return (self.y[rows],) if self.x is None else (self.x[rows], self.y[rows])

    def chunks(self, batch_size: int) -> Iterator[slice]:
        """Slices of at most ``batch_size`` datasets covering them all, in order."""
        for start in range(0, self.num_datasets, batch_size):
            yield slice(start, min(start + batch_size, self.num_datasets))


def draw_heldout(
    model: Any, prior: Any, *, num_datasets: int, seq_len: int, seed: int = 0
) -> HeldOut:
    """``num_datasets`` fixed-seed datasets from ``prior`` and what they are scored against.

    The caller's global RNG is left untouched.
    """
    for name, value in (("num_datasets", num_datasets), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not valid; it must be a positive int.")
    source = checked_source(
        prior,
        model.task,
        model_name=f"the model ({type(model.config).__name__})",
        data_name="the prior {name}",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x, y = source.sample(num_datasets, seq_len)
    head = head_kind(model)
    exact = has_exact_posterior(prior)
    reference = None
    if head == "point":
        metric = "mse"
        if exact and hasattr(prior, "exact_predictive_mean"):
            mean = prior.exact_predictive_mean(x, y).double()
            reference, metric = (mean - y.double()) ** 2, "excess_mse"
    else:
        metric = "nll"
        if exact:
            reference, metric = -prior.exact_log_predictive(x, y).double(), "excess_nll"
    dev = model.device
    return HeldOut(
        x=None if x is None else x.to(dev),
        y=y.to(dev),
        metric=metric,
        reference=None if reference is None else reference.cpu(),
        prior_name=type(prior).__name__,
    )


def position_loss(model: Any, logits: Tensor, y: Tensor) -> Tensor:
    """Per-position loss ``[B, S]`` (float64, CPU) of predictive logits aligned with y.

    NLL for distribution heads (NaN where a bounded bar head cannot score the target),
    squared error of the point prediction for point heads.
    """
    if head_kind(model) == "point":
        return ((logits[..., 0].double() - y.double()) ** 2).cpu()
    nll = -model.log_prob(logits, y).double()
    outside = model.out_of_range(y)
    if outside is not None:
        nll = nll.masked_fill(outside, math.nan)
    return nll.cpu()


def score(model: Any, heldout: HeldOut, logits: Tensor, rows: slice = slice(None)) -> Tensor:
    """``[B, S]`` score of predictive logits for ``heldout``'s datasets ``rows`` (see the
    module doc); lower is better."""
    loss = position_loss(model, logits, heldout.y[rows])
    return loss if heldout.reference is None else loss - heldout.reference[rows]
