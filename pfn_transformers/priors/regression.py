"""Regression priors: Bayesian linear/polynomial regression, GP (RBF), random MLPs, step/sine.

Every prior draws x uniformly on ``[x_low, x_high]^input_dim`` and returns float32
``x [B, S, input_dim]`` and ``y [B, S]``. Linear, polynomial and GP priors have exact
(Gaussian) posterior predictives; see ``exact_predictive_moments``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.priors._common import (
    ContinuousTargetMixin,
    GaussianPredictiveMixin,
    UniformInputsMixin,
    as_float_list,
    check_int,
    check_positive,
    exclusive_cumsum,
    sequential_gaussian_moments,
    uniform,
)

FEATURES = ("identity", "polynomial")


def _check_x_range(owner: str, x_low: float, x_high: float) -> None:
    if not (math.isfinite(x_low) and math.isfinite(x_high) and x_low < x_high):
        raise ValueError(
            f"{owner}.x_low={x_low!r}, x_high={x_high!r} are not valid; they must be finite "
            "with x_low < x_high."
        )


class LinearRegressionPrior(
    UniformInputsMixin,
    GaussianPredictiveMixin,
    ContinuousTargetMixin,
    ExactPosteriorMixin,
    DataGenerator,
):
    """Bayesian linear regression: y = w^T phi(x) (+ b) + eps.

    w ~ N(0, weight_std^2 I), b ~ N(0, bias_std^2) (when ``bias``), eps ~ N(0, noise_std^2),
    x ~ U[x_low, x_high]^input_dim. ``features="identity"`` uses phi(x) = x;
    ``"polynomial"`` uses the powers x_d^1..x_d^degree of every input dimension (no cross
    terms). The exact predictive is DESIGN.md's closed form, the bias being one more feature
    with prior variance bias_std^2.
    """

    target_type = "continuous"
    num_classes = None

    def __init__(
        self,
        input_dim: int = 1,
        weight_std: float = 1.0,
        bias: bool = True,
        bias_std: float = 1.0,
        noise_std: float = 0.1,
        x_low: float = -1.0,
        x_high: float = 1.0,
        features: str = "identity",
        degree: int = 1,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        self.weight_std = float(weight_std)
        self.bias = bool(bias)
        self.bias_std = float(bias_std)
        self.noise_std = float(noise_std)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        if features not in FEATURES:
            raise ValueError(
                f"{name}.features={features!r} is not valid; choose one of {list(FEATURES)}."
            )
        self.features = features
        self.degree = check_int(name, "degree", degree)
        check_positive(name, "weight_std", self.weight_std)
        check_positive(name, "noise_std", self.noise_std)
        if self.bias:
            check_positive(name, "bias_std", self.bias_std)
        _check_x_range(name, self.x_low, self.x_high)

    # ------------------------------------------------------------------ features
    @property
    def num_features(self) -> int:
        base = self.input_dim * (self.degree if self.features == "polynomial" else 1)
        return base + int(self.bias)

    def featurize(self, x: Tensor) -> Tensor:
        """phi(x): ``[..., input_dim] -> [..., num_features]`` (bias feature last)."""
        feats = [x] if self.features == "identity" else [x**k for k in range(1, self.degree + 1)]
        if self.bias:
            feats.append(torch.ones_like(x[..., :1]))
        return torch.cat(feats, dim=-1)

    def prior_variances(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> Tensor:
        """Diagonal of the prior covariance S0 of the feature weights."""
        n_w = self.num_features - int(self.bias)
        v = [self.weight_std**2] * n_w + ([self.bias_std**2] if self.bias else [])
        return torch.tensor(v, dtype=dtype, device=device)

    # ------------------------------------------------------------------ sampling
    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU) so training needs no host-to-device copy."""
        x = uniform((batch_size, seq_len, self.input_dim), self.x_low, self.x_high, device)
        phi = self.featurize(x)
        w = torch.randn(batch_size, 1, self.num_features, device=device)
        w = w * self.prior_variances(device=device).sqrt()
        y = (phi * w).sum(-1) + self.noise_std * torch.randn(batch_size, seq_len, device=device)
        return x, y

    # ------------------------------------------------------------------ exact predictive
    def exact_predictive_moments(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive N(m_n^T phi_n, sigma^2 + phi_n^T S_n phi_n) for every position n.

        S_n^-1 = S0^-1 + Phi_<n^T Phi_<n / sigma^2 and m_n = S_n Phi_<n^T y_<n / sigma^2,
        the sums over the context running as exclusive cumulative sums (all n at once).
        """
        phi = self.featurize(x.double())  # [B, S, F]
        yd = y.double()
        s2 = self.noise_std**2
        outer = phi.unsqueeze(-1) * phi.unsqueeze(-2)  # [B, S, F, F]
        prec = (
            torch.diag_embed(1.0 / self.prior_variances(torch.float64))
            + exclusive_cumsum(outer, 1) / s2
        )
        rhs = exclusive_cumsum(phi * yd.unsqueeze(-1), 1) / s2  # [B, S, F]
        chol = torch.linalg.cholesky(prec)
        sol = torch.cholesky_solve(torch.stack([rhs, phi], dim=-1), chol)  # [B, S, F, 2]
        mean = (sol[..., 0] * phi).sum(-1)
        var = s2 + (sol[..., 1] * phi).sum(-1)
        return mean, var.sqrt()

    # ------------------------------------------------------------------ posterior probes
    def posterior_statistics(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """``{"weight_mean": [B, S, F]}``: entry n is the posterior mean m_n of the feature
        weights (bias last) given D_<n, the sufficient summary the prediction at n may use.

        Read by ``pfn_transformers.interp`` to probe a PFN's residual stream for it.
        """
        phi = self.featurize(x.double())
        s2 = self.noise_std**2
        outer = phi.unsqueeze(-1) * phi.unsqueeze(-2)
        prec = (
            torch.diag_embed(1.0 / self.prior_variances(torch.float64, device=phi.device))
            + exclusive_cumsum(outer, 1) / s2
        )
        rhs = exclusive_cumsum(phi * y.double().unsqueeze(-1), 1) / s2
        mean = torch.cholesky_solve(rhs.unsqueeze(-1), torch.linalg.cholesky(prec))
        return {"weight_mean": mean.squeeze(-1)}


class PolynomialPrior(LinearRegressionPrior):
    """Bayesian polynomial regression of scalar x: y = sum_{k=0..degree} c_k x^k + eps.

    c_k ~ N(0, coef_std^2) (c_0 the bias), x ~ U[x_low, x_high]. A linear prior on the
    polynomial features, so it inherits the exact Gaussian predictive.
    """

    def __init__(
        self,
        degree: int = 3,
        coef_std: float = 1.0,
        noise_std: float = 0.1,
        x_low: float = -1.0,
        x_high: float = 1.0,
    ) -> None:
        super().__init__(
            input_dim=1,
            weight_std=coef_std,
            bias=True,
            bias_std=coef_std,
            noise_std=noise_std,
            x_low=x_low,
            x_high=x_high,
            features="polynomial",
            degree=degree,
        )
        self.coef_std = float(coef_std)

    def _hparams(self) -> dict:
        keys = ("degree", "coef_std", "noise_std", "x_low", "x_high")
        return {k: getattr(self, k) for k in keys}


class GPPrior(
    UniformInputsMixin,
    GaussianPredictiveMixin,
    ContinuousTargetMixin,
    ExactPosteriorMixin,
    DataGenerator,
):
    """Gaussian-process regression with an RBF kernel.

    f ~ GP(0, k), k(x, x') = outputscale * exp(-|x - x'|^2 / (2 lengthscale^2)),
    y = f(x) + eps, eps ~ N(0, noise_var), x ~ U[x_low, x_high]^input_dim. Datasets are drawn
    by a batched Cholesky of K + (noise_var + jitter) I; the exact predictive uses the same
    covariance, so it is exact for the data this prior generates.
    """

    target_type = "continuous"
    num_classes = None

    def __init__(
        self,
        input_dim: int = 1,
        lengthscale: float = 0.2,
        outputscale: float = 1.0,
        noise_var: float = 0.01,
        x_low: float = 0.0,
        x_high: float = 1.0,
        jitter: float = 1e-6,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        self.lengthscale = float(lengthscale)
        self.outputscale = float(outputscale)
        self.noise_var = float(noise_var)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        self.jitter = float(jitter)
        check_positive(name, "lengthscale", self.lengthscale)
        check_positive(name, "outputscale", self.outputscale)
        check_positive(name, "noise_var", self.noise_var, allow_zero=True)
        check_positive(name, "jitter", self.jitter, allow_zero=True)
        if self.noise_var + self.jitter <= 0:
            raise ValueError(f"{name}: noise_var + jitter must be > 0 for a stable Cholesky.")
        _check_x_range(name, self.x_low, self.x_high)

    def kernel(self, x1: Tensor, x2: Tensor) -> Tensor:
        """RBF kernel matrix ``[..., N, M]`` between ``x1 [..., N, D]`` and ``x2 [..., M, D]``."""
        d2 = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).pow(2).sum(-1)
        return self.outputscale * torch.exp(-0.5 * d2 / self.lengthscale**2)

    def covariance(self, x: Tensor) -> Tensor:
        """Covariance of y given x: K(x, x) + (noise_var + jitter) I, float64."""
        xd = x.double()
        k = self.kernel(xd, xd)
        eye = torch.eye(x.shape[-2], dtype=torch.float64, device=x.device)
        return k + (self.noise_var + self.jitter) * eye

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU); the float64 Cholesky runs there too."""
        x = uniform((batch_size, seq_len, self.input_dim), self.x_low, self.x_high, device)
        chol = torch.linalg.cholesky(self.covariance(x))
        z = torch.randn(batch_size, seq_len, 1, dtype=torch.float64, device=device)
        y = (chol @ z).squeeze(-1).float()
        return x, y

    def exact_predictive_moments(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """mu_n = k_n^T (K_<n + s^2 I)^-1 y_<n, v_n = k(x_n,x_n) + s^2 - k_n^T (...)^-1 k_n.

        All positions at once from one Cholesky of the full covariance
        (``sequential_gaussian_moments``).
        """
        return sequential_gaussian_moments(self.covariance(x), y.double())


_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": torch.nn.functional.gelu,
    "sigmoid": torch.sigmoid,
    "sin": torch.sin,
}


class MLPPrior(UniformInputsMixin, ContinuousTargetMixin, DataGenerator):
    """Random Bayesian neural network: y = MLP_theta(x) + eps (no exact predictive).

    ``layers`` hidden layers of width ``hidden``; weights ~ N(0, weight_std^2 / fan_in),
    biases ~ N(0, bias_std^2), eps ~ N(0, noise_std^2), x ~ U[x_low, x_high]^input_dim.
    """

    target_type = "continuous"
    num_classes = None

    def __init__(
        self,
        input_dim: int = 1,
        hidden: int = 16,
        layers: int = 2,
        weight_std: float = 1.0,
        noise_std: float = 0.1,
        activation: str = "tanh",
        bias_std: float = 1.0,
        x_low: float = -1.0,
        x_high: float = 1.0,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        self.hidden = check_int(name, "hidden", hidden)
        self.layers = check_int(name, "layers", layers)
        self.weight_std = float(weight_std)
        self.noise_std = float(noise_std)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{name}.activation={activation!r} is not valid; choose one of "
                f"{list(_ACTIVATIONS)}."
            )
        self.activation = activation
        self.bias_std = float(bias_std)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        check_positive(name, "weight_std", self.weight_std)
        check_positive(name, "noise_std", self.noise_std, allow_zero=True)
        check_positive(name, "bias_std", self.bias_std, allow_zero=True)
        _check_x_range(name, self.x_low, self.x_high)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU), the random networks included."""
        act = _ACTIVATIONS[self.activation]
        x = uniform((batch_size, seq_len, self.input_dim), self.x_low, self.x_high, device)
        h = x
        widths = [self.input_dim] + [self.hidden] * self.layers + [1]
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            w = torch.randn(batch_size, fan_in, fan_out, device=device)
            w = w * (self.weight_std / math.sqrt(fan_in))
            b = torch.randn(batch_size, 1, fan_out, device=device) * self.bias_std
            h = torch.bmm(h, w) + b
            if i < len(widths) - 2:
                h = act(h)
        y = h.squeeze(-1) + self.noise_std * torch.randn(batch_size, seq_len, device=device)
        return x, y


class StepSinePrior(UniformInputsMixin, ContinuousTargetMixin, DataGenerator):
    """Nonlinear step/sine mixture (no exact predictive).

    Each dataset picks a component with probabilities ``mixture`` = [sine, steps, both] and a
    random unit direction u (s = u^T x; u = 1 when input_dim = 1):

    - sine: a * sin(2 pi f s + phase), a ~ U[0, amplitude], f ~ U[freq_low, freq_high],
      phase ~ U[0, 2 pi);
    - steps: sum_k h_k 1[s > t_k], ``num_steps`` heights h_k ~ N(0, step_std^2) and
      locations t_k ~ U[x_low, x_high];

    then y = component + eps, eps ~ N(0, noise_std^2), x ~ U[x_low, x_high]^input_dim.
    """

    target_type = "continuous"
    num_classes = None

    def __init__(
        self,
        input_dim: int = 1,
        amplitude: float = 1.0,
        freq_low: float = 0.5,
        freq_high: float = 3.0,
        num_steps: int = 2,
        step_std: float = 1.0,
        mixture=(1 / 3, 1 / 3, 1 / 3),
        noise_std: float = 0.1,
        x_low: float = -1.0,
        x_high: float = 1.0,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        self.amplitude = float(amplitude)
        self.freq_low = float(freq_low)
        self.freq_high = float(freq_high)
        self.num_steps = check_int(name, "num_steps", num_steps, minimum=0)
        self.step_std = float(step_std)
        self.mixture = as_float_list(mixture, f"{name}.mixture")
        self.noise_std = float(noise_std)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        if len(self.mixture) != 3 or min(self.mixture) < 0 or sum(self.mixture) <= 0:
            raise ValueError(
                f"{name}.mixture={self.mixture!r} is not valid; give 3 non-negative weights "
                "[sine, steps, both] with a positive sum."
            )
        if not 0 <= self.freq_low <= self.freq_high:
            raise ValueError(
                f"{name}.freq_low={freq_low!r}, freq_high={freq_high!r} are not valid; need "
                "0 <= freq_low <= freq_high."
            )
        check_positive(name, "amplitude", self.amplitude, allow_zero=True)
        check_positive(name, "step_std", self.step_std, allow_zero=True)
        check_positive(name, "noise_std", self.noise_std, allow_zero=True)
        _check_x_range(name, self.x_low, self.x_high)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU), the mixture component choice included."""
        B, S = batch_size, seq_len
        x = uniform((B, S, self.input_dim), self.x_low, self.x_high, device)
        if self.input_dim == 1:
            s = x[..., 0]
        else:
            u = torch.randn(B, self.input_dim, device=device)
            u = u / u.norm(dim=-1, keepdim=True)
            s = (x * u.unsqueeze(1)).sum(-1)
        weights = torch.tensor(self.mixture, device=device)
        comp = torch.multinomial(weights, B, replacement=True)  # 0 sine, 1 steps, 2 both
        use_sine = (comp != 1).float().unsqueeze(-1)
        use_steps = (comp != 0).float().unsqueeze(-1)
        a = torch.rand(B, 1, device=device) * self.amplitude
        f = uniform((B, 1), self.freq_low, self.freq_high, device)
        phase = torch.rand(B, 1, device=device) * 2 * math.pi
        sine = a * torch.sin(2 * math.pi * f * s + phase)
        heights = torch.randn(B, 1, self.num_steps, device=device) * self.step_std
        locs = uniform((B, 1, self.num_steps), self.x_low, self.x_high, device)
        steps = (heights * (s.unsqueeze(-1) > locs).float()).sum(-1)
        y = use_sine * sine + use_steps * steps + self.noise_std * torch.randn(B, S, device=device)
        return x, y
