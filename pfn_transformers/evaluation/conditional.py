"""The conditional half of ``evaluate`` for models trained with ``condition_on``.

Such a model is scored twice on the same held-out datasets: ``evaluate``'s usual fields are
the marginal evaluation (hyperparameters withheld, against the prior's exact predictive,
e.g. ``GPHyperPrior``'s quadrature over them), and ``out["conditional"]`` gives the model
each dataset's true hyperparameters and scores it against the exact predictive given them
(the prior's ``exact_log_predictive_given``). ``ConditionalScores`` draws the datasets
itself, through the prior's ``draw``, so both halves see the very same data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.protocol import BatchSource


class ConditionalScores:
    """Per-batch conditional scores of ``evaluate``'s datasets (inactive, a plain pass-
    through to ``source.sample``, unless the model conditions on hyperparameters that the
    prior reports and the prior has ``exact_log_predictive_given``)."""

    def __init__(self, model: Any, prior: Any, source: BatchSource) -> None:
        self.model, self.prior, self.source = model, prior, source
        self.names = list(getattr(model, "condition_on", None) or [])
        self.active = (
            bool(self.names)
            and getattr(model, "bucketizer", None) is not None  # a density to score
            and source.has_draw
            and callable(getattr(prior, "exact_log_predictive_given", None))
        )
        self.params: dict[str, Tensor] = {}
        self.cols: dict[str, list[Tensor]] = {"nll": [], "exact_nll": []}

    def sample(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        """The next held-out batch (keeping its hyperparameters when active)."""
        if not self.active:
            return self.source.sample(batch_size, seq_len)
        x, y, self.params = self.source.sample_with_params(batch_size, seq_len)
        if any(n not in self.params for n in self.names):  # e.g. another prior's names
            self.active = False
        return x, y

    def use(self, params: dict[str, Tensor]) -> None:
        """Take the hyperparameters of a batch ``evaluate`` drew itself (for the baselines)."""
        self.params = params
        if any(n not in params for n in self.names):
            self.active = False

    def score(self, x: Tensor | None, y: Tensor, device: torch.device) -> None:
        """Score the batch ``sample`` returned, with its true hyperparameters given."""
        if not self.active:
            return
        model = self.model
        known = {n: self.params[n].to(device) for n in self.names}
        yd = y.to(device)
        xd = None if x is None else x.to(device)
        nll = -model.log_predictive(xd, yd, hyperparameters=known)
        outside = model.out_of_range(yd)
        if outside is not None:  # scored over in-range targets, as the marginal NLL
            nll = nll.masked_fill(outside, math.nan)
        exact = -self.prior.exact_log_predictive_given(x, y, self.params)
        self.cols["nll"].append(nll.detach().to("cpu", torch.float64))
        self.cols["exact_nll"].append(exact.detach().to("cpu", torch.float64))

    def summary(self, summarize: Callable[[Tensor], dict]) -> dict[str, Any] | None:
        """``{"hyperparameters", "nll", "exact_nll", "excess_nll"}``, each statistic as
        ``summarize`` (``metrics.summarize``) gives it, or None when nothing was scored."""
        if not self.active or not self.cols["nll"]:
            return None
        nll, exact = (torch.cat(self.cols[k], 0) for k in ("nll", "exact_nll"))
        return {
            "hyperparameters": list(self.names),
            "nll": summarize(nll),
            "exact_nll": summarize(exact),
            "excess_nll": summarize(nll - exact),
        }


__all__ = ["ConditionalScores"]
