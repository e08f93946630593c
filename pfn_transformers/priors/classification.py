"""Classification priors."""

from __future__ import annotations

import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.priors._common import (
    DiscretePredictiveMixin,
    UniformInputsMixin,
    check_int,
    check_positive,
    exclusive_cumsum,
    uniform,
)
from pfn_transformers.priors.regression import _check_x_range


class LogisticClassificationPrior(
    UniformInputsMixin, DiscretePredictiveMixin, ExactPosteriorMixin, DataGenerator
):
    """Softmax-linear labels: p(y = c | x) = softmax(W^T x + b)_c.

    W ~ N(0, weight_std^2) entrywise ``[input_dim, num_classes]``, b ~ N(0, bias_std^2),
    x ~ U[x_low, x_high]^input_dim; y is int64 in [0, num_classes).

    The posterior predictive has no closed form. ``exact_log_predictive`` is a **Monte-Carlo
    reference**, exact in the limit of many samples: ``num_mc_samples`` parameter draws
    theta_m from the prior (a private generator seeded with ``mc_seed``, so it is
    deterministic and leaves the global RNG alone) weighted by their likelihood of D_<n,

        p(y_n | x_n, D_<n) ~= sum_m w_m^(n) p(y_n | x_n, theta_m),
        w_m^(n) ∝ prod_{i<n} p(y_i | x_i, theta_m),

    computed in log space (logsumexp) for all positions at once. Its error grows with n as
    the posterior concentrates (fewer effective samples); ``mc_effective_sample_size``
    reports the effective sample size per position so callers can check it.
    """

    target_type = "discrete"

    def __init__(
        self,
        input_dim: int = 2,
        num_classes: int = 3,
        weight_std: float = 3.0,
        bias_std: float = 1.0,
        x_low: float = -1.0,
        x_high: float = 1.0,
        num_mc_samples: int = 4096,
        mc_seed: int = 0,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        self.num_classes = check_int(name, "num_classes", num_classes, minimum=2)
        self.weight_std = float(weight_std)
        self.bias_std = float(bias_std)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        self.num_mc_samples = check_int(name, "num_mc_samples", num_mc_samples)
        self.mc_seed = int(mc_seed)
        check_positive(name, "weight_std", self.weight_std)
        check_positive(name, "bias_std", self.bias_std, allow_zero=True)
        _check_x_range(name, self.x_low, self.x_high)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU); labels by the Gumbel-max trick, so no sync."""
        x = uniform((batch_size, seq_len, self.input_dim), self.x_low, self.x_high, device)
        w = torch.randn(batch_size, self.input_dim, self.num_classes, device=device)
        w = w * self.weight_std
        b = torch.randn(batch_size, 1, self.num_classes, device=device) * self.bias_std
        logits = torch.bmm(x, w) + b
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_min(1e-20)))
        y = (logits + gumbel).argmax(-1)
        return x, y

    # ------------------------------------------------------------------ Monte-Carlo reference
    def _mc_params(self) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.mc_seed)
        m, d, c = self.num_mc_samples, self.input_dim, self.num_classes
        w = torch.randn(m, d, c, generator=gen) * self.weight_std
        b = torch.randn(m, c, generator=gen) * self.bias_std
        return w, b

    def _mc_chunks(self, x: Tensor, y: Tensor):
        """Yield (slice, weights [b, M, S], per-sample probabilities [C, b, M, S]).

        ``weights[:, m, n]`` is w_m^(n), the normalised likelihood of D_<n under theta_m.
        Classes lead the layout so the softmax over the few classes is elementwise work.
        float32 throughout (log-likelihood prefix sums over a few hundred points lose nothing
        that matters at the MC error level); chunks keep the working set small.
        """
        w, b = self._mc_params()
        B, S, _ = x.shape
        per = self.num_mc_samples * S * self.num_classes
        chunk = max(1, 4_000_000 // per)
        for start in range(0, B, chunk):
            sl = slice(start, min(B, start + chunk))
            xf, yl = x[sl].float(), y[sl].long()
            logits = torch.einsum("bsd,mdc->cbms", xf, w) + b.T[:, None, :, None]
            lse = torch.logsumexp(logits, dim=0)  # [b, M, S]
            idx = yl[None, :, None, :].expand(1, -1, logits.shape[2], -1)
            ll = logits.gather(0, idx).squeeze(0) - lse  # log p(y_i | x_i, theta_m)
            prefix = exclusive_cumsum(ll, 2)
            yield sl, torch.softmax(prefix, dim=1), torch.exp(logits - lse)

    def exact_predictive_log_probs(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, S, C]`` Monte-Carlo posterior predictive log probabilities (see class doc)."""
        out = torch.empty(*y.shape, self.num_classes, dtype=torch.float64)
        for sl, weights, probs in self._mc_chunks(x, y):
            pred = (weights.unsqueeze(0) * probs).sum(2)  # [C, b, S]
            out[sl] = pred.permute(1, 2, 0).double().clamp_min(1e-300).log()
        return out - torch.logsumexp(out, dim=-1, keepdim=True)  # exact renormalisation

    def mc_effective_sample_size(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, S]`` effective sample size 1 / sum_m (w_m^(n))^2 of the MC reference."""
        out = torch.empty(y.shape, dtype=torch.float64)
        for sl, weights, _ in self._mc_chunks(x, y):
            out[sl] = 1.0 / weights.double().pow(2).sum(1)
        return out
