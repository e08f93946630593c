"""Unsupervised (sequence-only) priors: y is drawn without x, ``generate_batch`` returns x=None.

Exact predictives follow DESIGN.md: Beta-Bernoulli, Dirichlet-categorical, Markov chain with
Dirichlet rows and the Normal-Inverse-Gamma Student-t.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.priors._common import (
    ContinuousTargetMixin,
    DiscretePredictiveMixin,
    as_float_list,
    check_int,
    check_positive,
    exclusive_cumsum,
    student_t_cdf,
    student_t_log_pdf,
)


class CoinFlipPrior(DiscretePredictiveMixin, ExactPosteriorMixin, DataGenerator):
    """Beta-Bernoulli coin: theta ~ Beta(alpha, beta), y_i ~ Bernoulli(theta), y in {0, 1}.

    Exact predictive p(y_n = 1 | y_<n) = (alpha + k) / (alpha + beta + n), k the heads in y_<n.
    """

    input_dim = None
    target_type = "discrete"
    num_classes = 2

    def __init__(self, alpha: float = 1.0, beta: float = 1.0) -> None:
        name = type(self).__name__
        self.alpha = float(alpha)
        self.beta = float(beta)
        check_positive(name, "alpha", self.alpha)
        check_positive(name, "beta", self.beta)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[None, Tensor]:
        """Draws on ``device`` (None: CPU); the Beta has its parameters there so samples there."""
        a, b = (torch.tensor(v, device=device) for v in (self.alpha, self.beta))
        theta = torch.distributions.Beta(a, b, validate_args=False).sample((batch_size, 1))
        y = (torch.rand(batch_size, seq_len, device=device) < theta).long()
        return None, y

    def exact_predictive_log_probs(self, x: Tensor | None, y: Tensor) -> Tensor:
        yd = y.double()
        heads = exclusive_cumsum(yd, 1)
        n = torch.arange(y.shape[1], dtype=torch.float64)
        p1 = (self.alpha + heads) / (self.alpha + self.beta + n)
        return torch.stack([torch.log1p(-p1), p1.log()], dim=-1)

    def posterior_statistics(self, x: Tensor | None, y: Tensor) -> dict[str, Tensor]:
        """``{"bias_mean": [B, S, 1]}``: entry n is the posterior mean of theta given y_<n,
        (alpha + k) / (alpha + beta + n) (read by ``pfn_transformers.interp``'s probes)."""
        heads = exclusive_cumsum(y.double(), 1)
        n = torch.arange(y.shape[1], dtype=torch.float64, device=y.device)
        return {"bias_mean": ((self.alpha + heads) / (self.alpha + self.beta + n)).unsqueeze(-1)}


class CategoricalPrior(DiscretePredictiveMixin, ExactPosteriorMixin, DataGenerator):
    """Dirichlet-categorical: p ~ Dirichlet(alpha), y_i ~ Categorical(p), y in [0, K).

    ``concentration`` is one number (symmetric alpha_j) or a list of K numbers. Exact
    predictive p(j | y_<n) = (alpha_j + n_j) / (sum alpha + n).
    """

    input_dim = None
    target_type = "discrete"

    def __init__(self, num_categories: int = 5, concentration=0.5) -> None:
        name = type(self).__name__
        self.num_categories = check_int(name, "num_categories", num_categories, minimum=2)
        conc = as_float_list(concentration, f"{name}.concentration")
        if len(conc) == 1:
            conc = conc * self.num_categories
        if len(conc) != self.num_categories or min(conc) <= 0:
            raise ValueError(
                f"{name}.concentration={concentration!r} is not valid; give one positive number "
                f"or {self.num_categories} positive numbers."
            )
        self.concentration = concentration if isinstance(concentration, int | float) else conc

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.num_categories

    @property
    def alpha(self) -> Tensor:
        return torch.tensor(self._alpha_values(), dtype=torch.float64)

    def _alpha_values(self) -> list[float]:
        conc = as_float_list(self.concentration, "concentration")
        return conc * self.num_categories if len(conc) == 1 else conc

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[None, Tensor]:
        """Draws on ``device`` (None: CPU); the Dirichlet has its parameters there."""
        alpha = torch.tensor(self._alpha_values(), dtype=torch.float32, device=device)
        p = torch.distributions.Dirichlet(alpha, validate_args=False).sample((batch_size,))
        y = torch.multinomial(p, seq_len, replacement=True) if seq_len > 0 else p[:, :0].long()
        return None, y

    def exact_predictive_log_probs(self, x: Tensor | None, y: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(y.long(), self.num_categories).double()
        counts = exclusive_cumsum(onehot, 1)  # [B, S, K]
        a = self.alpha
        n = torch.arange(y.shape[1], dtype=torch.float64).unsqueeze(-1)
        return torch.log(a + counts) - torch.log(a.sum() + n)

    def posterior_statistics(self, x: Tensor | None, y: Tensor) -> dict[str, Tensor]:
        """``{"probs_mean": [B, S, K]}``: entry n is the posterior mean of the category
        probabilities given y_<n (read by ``pfn_transformers.interp``'s probes)."""
        return {"probs_mean": self.exact_predictive_log_probs(x, y.cpu()).exp().to(y.device)}


class MarkovChainPrior(DiscretePredictiveMixin, ExactPosteriorMixin, DataGenerator):
    """Markov chain with Dirichlet rows: P_i. ~ Dirichlet(concentration * 1_K), y_0 uniform.

    Exact predictive: position 0 is 1/K; for n >= 1 with i = y_{n-1},
    p(y_n = j | y_<n) = (alpha + n_ij) / (K alpha + n_i), counting transitions in y_<n.
    """

    input_dim = None
    target_type = "discrete"

    def __init__(self, num_states: int = 4, concentration: float = 1.0) -> None:
        name = type(self).__name__
        self.num_states = check_int(name, "num_states", num_states, minimum=2)
        self.concentration = float(concentration)
        check_positive(name, "concentration", self.concentration)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.num_states

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[None, Tensor]:
        """Draws on ``device`` (None: CPU); the chain steps never read values back to Python."""
        K = self.num_states
        conc = torch.full((K,), self.concentration, device=device)
        trans = torch.distributions.Dirichlet(conc, validate_args=False).sample(
            (batch_size, K)
        )  # [B, K, K]
        cum = trans.cumsum(-1)
        cum[..., -1] = 1.0
        y = torch.empty(batch_size, seq_len, dtype=torch.long, device=device)
        if seq_len == 0:
            return None, y
        state = torch.randint(0, K, (batch_size,), device=device)
        y[:, 0] = state
        u = torch.rand(batch_size, seq_len, device=device)
        rows = torch.arange(batch_size, device=device)
        # The chain is sequential in time; each step is vectorised over the whole batch.
        for t in range(1, seq_len):
            c = cum[rows, state]  # [B, K]
            state = (u[:, t : t + 1] > c).sum(-1).clamp_max(K - 1)
            y[:, t] = state
        return None, y

    def exact_predictive_log_probs(self, x: Tensor | None, y: Tensor) -> Tensor:
        K, a = self.num_states, self.concentration
        B, S = y.shape
        yl = y.long()
        out = torch.full((B, S, K), -math.log(K), dtype=torch.float64)
        if S < 2:
            return out
        trans_idx = yl[:, :-1] * K + yl[:, 1:]  # transition into position t = 1..S-1
        onehot = torch.nn.functional.one_hot(trans_idx, K * K).double()  # [B, S-1, K*K]
        counts = exclusive_cumsum(onehot, 1).view(B, S - 1, K, K)  # before transition t
        prev = yl[:, :-1]
        row = counts.gather(2, prev[:, :, None, None].expand(-1, -1, 1, K)).squeeze(2)
        out[:, 1:] = torch.log(a + row) - torch.log(K * a + row.sum(-1, keepdim=True))
        return out

    def posterior_statistics(self, x: Tensor | None, y: Tensor) -> dict[str, Tensor]:
        """``{"transition_counts": [B, S, K]}``: entry n counts the transitions out of the
        current state y_{n-1} seen in y_<n (the Dirichlet row the prediction of y_n uses;
        zeros at n = 0, where there is no current state). Read by ``pfn_transformers.interp``.
        """
        K = self.num_states
        B, S = y.shape
        yl = y.long()
        out = torch.zeros(B, S, K, dtype=torch.float64, device=y.device)
        if S < 2:
            return {"transition_counts": out}
        onehot = torch.nn.functional.one_hot(yl[:, :-1] * K + yl[:, 1:], K * K).double()
        counts = exclusive_cumsum(onehot, 1).view(B, S - 1, K, K)
        prev = yl[:, :-1, None, None].expand(-1, -1, 1, K)
        out[:, 1:] = counts.gather(2, prev).squeeze(2)
        return {"transition_counts": out}


class NormalInverseGammaPrior(ContinuousTargetMixin, ExactPosteriorMixin, DataGenerator):
    """Normal with unknown mean and variance under a Normal-Inverse-Gamma prior.

    sigma^2 ~ InvGamma(alpha0, beta0), mu | sigma^2 ~ N(mu0, sigma^2 / kappa0),
    y_i ~ N(mu, sigma^2). After n observations the exact predictive is Student-t with
    2 alpha_n degrees of freedom, location mu_n and scale^2 = beta_n (kappa_n + 1) /
    (alpha_n kappa_n), where kappa_n = kappa0 + n, mu_n = (kappa0 mu0 + sum y) / kappa_n,
    alpha_n = alpha0 + n / 2, beta_n = beta0 + (sum y^2 + kappa0 mu0^2 - kappa_n mu_n^2) / 2.
    """

    input_dim = None
    target_type = "continuous"
    num_classes = None

    def __init__(
        self, mu0: float = 0.0, kappa0: float = 1.0, alpha0: float = 2.0, beta0: float = 1.0
    ) -> None:
        name = type(self).__name__
        self.mu0 = float(mu0)
        self.kappa0 = float(kappa0)
        self.alpha0 = float(alpha0)
        self.beta0 = float(beta0)
        if not math.isfinite(self.mu0):
            raise ValueError(f"{name}.mu0={mu0!r} is not valid; it must be finite.")
        for k in ("kappa0", "alpha0", "beta0"):
            check_positive(name, k, getattr(self, k))

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[None, Tensor]:
        """Draws on ``device`` (None: CPU); the Gamma has its parameters there."""
        a, b = (torch.tensor(v, device=device) for v in (self.alpha0, self.beta0))
        prec = torch.distributions.Gamma(a, b, validate_args=False).sample((batch_size, 1))
        sigma = prec.rsqrt()
        mu = self.mu0 + sigma / math.sqrt(self.kappa0) * torch.randn(batch_size, 1, device=device)
        y = mu + sigma * torch.randn(batch_size, seq_len, device=device)
        return None, y

    def exact_predictive_params(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(df, loc, scale)`` ``[B, S]`` of the Student-t predictive of y_n given y_<n."""
        yd = y.double()
        n = torch.arange(y.shape[1], dtype=torch.float64)
        s1 = exclusive_cumsum(yd, 1)
        s2 = exclusive_cumsum(yd * yd, 1)
        kappa = self.kappa0 + n
        mu = (self.kappa0 * self.mu0 + s1) / kappa
        alpha = self.alpha0 + n / 2
        beta = self.beta0 + 0.5 * (s2 + self.kappa0 * self.mu0**2 - kappa * mu * mu)
        beta = beta.clamp_min(self.beta0)  # guards round-off; beta_n >= beta0 exactly
        scale = torch.sqrt(beta * (kappa + 1) / (alpha * kappa))
        return (2 * alpha).expand_as(mu), mu, scale

    def exact_log_predictive(self, x: Tensor | None, y: Tensor) -> Tensor:
        df, loc, scale = self.exact_predictive_params(y)
        return student_t_log_pdf(y.double(), df, loc, scale).float()

    def posterior_statistics(self, x: Tensor | None, y: Tensor) -> dict[str, Tensor]:
        """``{"mean": [B, S, 1], "log_scale": [B, S, 1]}``: entry n holds the posterior mean
        mu_n of the mean given y_<n and the log scale of the Student-t predictive (finite for
        every n, unlike the variance when 2 alpha_n <= 2). Read by ``pfn_transformers.interp``.
        """
        _, loc, scale = self.exact_predictive_params(y)
        return {"mean": loc.unsqueeze(-1), "log_scale": scale.log().unsqueeze(-1)}

    def exact_predictive_mean(self, x: Tensor | None, y: Tensor) -> Tensor:
        """``[B, S]`` predictive mean mu_n (finite since 2 alpha_n > 1 once alpha0 > 1/2)."""
        return self.exact_predictive_params(y)[1].float()

    def exact_predictive_cdf(self, x: Tensor | None, y: Tensor, values: Tensor) -> Tensor:
        """``[B, S, V]``: the Student-t predictive cdf of position n at ``values``.

        ``values`` is ``[V]`` (the same points for every position) or ``[B, S, V]``.
        """
        df, loc, scale = self.exact_predictive_params(y)
        return student_t_cdf(torch.as_tensor(values).double(), df, loc, scale)
