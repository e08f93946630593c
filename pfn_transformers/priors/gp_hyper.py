"""GP regression with priors on its hyperparameters, and its exact predictive by quadrature.

``GPHyperPrior`` draws, per dataset, a lengthscale, an outputscale and a noise variance from
Gamma priors, then a GP dataset with those. Its posterior predictive integrates over the
hyperparameters' posterior; ``exact_log_predictive`` does that integral by a fixed product
quadrature rule in log space (see the class doc), which is exact to well under 0.001 nats
of mean NLL at the default resolution (``tests/test_gp_hyper_prior.py`` refines it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.priors._common import (
    ContinuousTargetMixin,
    PriorDraw,
    UniformInputsMixin,
    as_float_list,
    check_int,
    check_positive,
    sequential_gaussian_moments,
    uniform,
)
from pfn_transformers.priors.regression import _check_x_range

KERNELS = ("matern52", "rbf")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT5 = math.sqrt(5.0)
# elements of one float64 [nodes, rows, S, S] block of kernel matrices (about 32 MB)
_BLOCK = 1 << 22
_FINE = 20_001  # points of the fine grid that locates each hyperprior's quantiles


# ----------------------------------------------------------------------------- Gamma in log space
def log_gamma_log_density(u: Tensor, concentration: float, rate: float) -> Tensor:
    """log density of U = log X for X ~ Gamma(concentration, rate) (rate = 1 / scale)."""
    c, r = concentration, rate
    return c * math.log(r) - math.lgamma(c) + c * u - r * torch.exp(u)


def _fine_grid(concentration: float, rate: float) -> tuple[Tensor, Tensor]:
    """A fine grid over log X and its normalised trapezoid weights (float64)."""
    c = torch.tensor(concentration, dtype=torch.float64)
    mean = float(torch.digamma(c)) - math.log(rate)
    sd = math.sqrt(float(torch.polygamma(1, c)))
    # the left tail of log X decays like exp(c u), the right one doubly exponentially
    u = torch.linspace(mean - 60 * sd, mean + 15 * sd, _FINE, dtype=torch.float64)
    logf = log_gamma_log_density(u, concentration, rate)
    w = torch.exp(logf - logf.max())
    w[0] *= 0.5
    w[-1] *= 0.5
    return u, w / w.sum()


def _quantiles(values: Tensor, weights: Tensor, qs: Sequence[float]) -> list[float]:
    order = values.argsort()
    v, cdf = values[order], weights[order].cumsum(0)
    idx = torch.searchsorted(cdf, torch.tensor(list(qs), dtype=cdf.dtype)).clamp(0, v.numel() - 1)
    return v[idx].tolist()


class GPHyperPrior(UniformInputsMixin, ContinuousTargetMixin, ExactPosteriorMixin, DataGenerator):
    """GP regression with Gamma hyperpriors (a hierarchical GP), exact predictive by quadrature.

    Per dataset: lengthscale l ~ Gamma(a_l, b_l), outputscale s ~ Gamma(a_s, b_s), noise
    variance v ~ Gamma(a_v, b_v), x ~ U[x_low, x_high]^input_dim, f ~ GP(0, s k_l) and
    y = f(x) + N(0, v). Each pair ``(a, b)`` is **(concentration, rate)** as in
    ``torch.distributions.Gamma`` and gpytorch's ``GammaPrior``: mean a / b, variance a / b^2.
    ``kernel="matern52"``: k_l(d) = (1 + sqrt5 d / l + 5 d^2 / (3 l^2)) exp(-sqrt5 d / l);
    ``"rbf"``: k_l(d) = exp(-d^2 / (2 l^2)), d the Euclidean distance (one lengthscale shared
    by all input dimensions). The noise prior is on the noise *variance* (gpytorch's
    ``likelihood.noise``).

    The defaults are the PFN paper's Figure-4b setting (Mueller et al. 2022, section 5.1),
    the hyperpriors of BoTorch's former ``SingleTaskGP`` default
    (``botorch.models.utils.gpytorch_modules``: Matern nu = 2.5 with lengthscale
    ``GammaPrior(3.0, 6.0)``, ``ScaleKernel`` outputscale ``GammaPrior(2.0, 0.15)``, Gaussian
    likelihood noise ``GammaPrior(1.1, 0.05)``): means 0.5, 13.3 and 22. Where that code
    differs from this prior: BoTorch's Matern kernel is ARD (one lengthscale per input
    dimension, each with that prior) where this prior shares one; BoTorch adds a constant
    mean and bounds the noise below by 1e-4; it is meant for standardised y.

    ``draw(batch_size, seq_len)`` returns the hyperparameters it drew per dataset
    (``PriorDraw.params``: ``lengthscale``, ``outputscale``, ``noise_var``, each ``[B]``);
    ``generate_batch`` drops them. Draws are batched on ``device``: Gamma draws, kernels and
    a float64 Cholesky of s (K_l + (v / s + jitter) I) for all datasets at once (the jitter
    is relative to the outputscale; the exact predictive uses the same covariance).

    **Exact predictive by quadrature.** With theta = (l, r, s), r = v / s the noise-to-signal
    ratio, the covariance is s C_{l,r}, C = K_l + (r + jitter) I. The rule is a product of
    uniform grids in log space (the trapezoid rule, exponentially accurate for smooth
    integrands once the grid resolves the posterior): ``quadrature_nodes = (n_l, n_r, n_s)``
    points spanning each of log l, log r, log s between its ``quadrature_tail`` and
    1 - ``quadrature_tail`` prior quantiles. Node k's prior weight is the joint prior density
    p(log l) p(log s) p_log v(log r + log s) times the cell volume (normalised to sum to 1),
    and

        p(y_n | x_n, D_<n) = sum_k w_k p(D_<n | theta_k) N(y_n; m_kn, s_k d_kn^2)
                             / sum_k w_k p(D_<n | theta_k),

    every node's sequential moments and marginal likelihoods coming from one Cholesky of
    C_{l,r} over the whole sequence (n_l * n_r Cholesky factorisations per dataset; the
    outputscale only rescales them). All positions at once, in float64, in blocks.
    """

    target_type = "continuous"
    num_classes = None

    def __init__(
        self,
        input_dim: int = 1,
        kernel: str = "matern52",
        lengthscale_prior: Sequence[float] = (3.0, 6.0),
        outputscale_prior: Sequence[float] = (2.0, 0.15),
        noise_prior: Sequence[float] = (1.1, 0.05),
        x_low: float = 0.0,
        x_high: float = 1.0,
        jitter: float = 1e-6,
        quadrature_nodes: Sequence[int] = (24, 40, 24),
        quadrature_tail: float = 1e-6,
    ) -> None:
        name = type(self).__name__
        self.input_dim = check_int(name, "input_dim", input_dim)
        if kernel not in KERNELS:
            raise ValueError(
                f"{name}.kernel={kernel!r} is not valid; choose one of {list(KERNELS)}."
            )
        self.kernel = kernel
        self.lengthscale_prior = self._gamma(name, "lengthscale_prior", lengthscale_prior)
        self.outputscale_prior = self._gamma(name, "outputscale_prior", outputscale_prior)
        self.noise_prior = self._gamma(name, "noise_prior", noise_prior)
        self.x_low = float(x_low)
        self.x_high = float(x_high)
        self.jitter = float(jitter)
        check_positive(name, "jitter", self.jitter, allow_zero=True)
        _check_x_range(name, self.x_low, self.x_high)
        nodes = [check_int(name, "quadrature_nodes", n, minimum=2) for n in quadrature_nodes]
        if len(nodes) != 3:
            raise ValueError(
                f"{name}.quadrature_nodes={list(quadrature_nodes)!r} is not valid; give 3 ints "
                "(lengthscale, noise-to-signal ratio, outputscale)."
            )
        self.quadrature_nodes = tuple(nodes)
        self.quadrature_tail = float(quadrature_tail)
        if not 0 < self.quadrature_tail < 0.01:
            raise ValueError(
                f"{name}.quadrature_tail={quadrature_tail!r} is not valid; it must be in "
                "(0, 0.01) (the prior mass left beyond each end of each grid)."
            )
        self._rule_cache: dict[Any, tuple[Tensor, ...]] = {}

    @staticmethod
    def _gamma(owner: str, field: str, value: Any) -> tuple[float, float]:
        pair = as_float_list(value, f"{owner}.{field}")
        if len(pair) != 2 or not all(math.isfinite(p) and p > 0 for p in pair):
            raise ValueError(
                f"{owner}.{field}={pair!r} is not valid; give [concentration, rate] of a Gamma "
                "prior, both finite and > 0 (mean concentration / rate)."
            )
        return (pair[0], pair[1])

    # ------------------------------------------------------------------ kernel
    def correlation(self, x1: Tensor, x2: Tensor, lengthscale: Tensor) -> Tensor:
        """k_l between ``x1 [..., N, D]`` and ``x2 [..., M, D]`` for lengthscales broadcast
        against the leading dims: ``[..., N, M]`` (unit outputscale)."""
        d2 = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).pow(2).sum(-1)
        ls = lengthscale[..., None, None]
        if self.kernel == "rbf":
            return torch.exp(-0.5 * d2 / ls**2)
        t = _SQRT5 * d2.clamp_min(0).sqrt() / ls
        return (1 + t + t * t / 3) * torch.exp(-t)

    # ------------------------------------------------------------------ sampling
    def _sample_gamma(self, pair: tuple[float, float], n: int, device: Any) -> Tensor:
        c = torch.full((n,), pair[0], dtype=torch.float64, device=device)
        return torch._standard_gamma(c) / pair[1]

    def draw(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> PriorDraw:
        """``PriorDraw(x, y, params)``: the datasets and, per dataset, the ``lengthscale``,
        ``outputscale`` and ``noise_var`` they were drawn with (float64 ``[B]``)."""
        B, S = batch_size, seq_len
        x = uniform((B, S, self.input_dim), self.x_low, self.x_high, device)
        ls = self._sample_gamma(self.lengthscale_prior, B, device)
        scale = self._sample_gamma(self.outputscale_prior, B, device)
        noise = self._sample_gamma(self.noise_prior, B, device)
        xd = x.double()
        corr = self.correlation(xd, xd, ls)
        eye = torch.eye(S, dtype=torch.float64, device=device)
        ratio = (noise / scale + self.jitter)[:, None, None]
        chol = torch.linalg.cholesky(corr + ratio * eye)
        z = torch.randn(B, S, 1, dtype=torch.float64, device=device)
        y = ((chol @ z).squeeze(-1) * scale.sqrt()[:, None]).float()
        params = {"lengthscale": ls, "outputscale": scale, "noise_var": noise}
        return PriorDraw(x, y, params)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws on ``device`` (None: CPU); ``draw`` also returns the hyperparameters."""
        out = self.draw(batch_size, seq_len, device)
        return out.x, out.y

    # ------------------------------------------------------------------ known hyperparameters
    def moments_given(
        self, x: Tensor, y: Tensor, params: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """``(mean [B, S], std [B, S])``, float64: the exact sequential GP predictive of y_n
        given D_<n and each dataset's known ``params`` (``lengthscale``, ``outputscale``,
        ``noise_var``, each ``[B]``, as ``draw`` reports them), from one Cholesky per dataset
        of the unit-outputscale covariance (the outputscale s only scales the variance)."""
        xd, yd = x.double(), y.double()
        dev = xd.device
        ls, scale, noise = (
            torch.as_tensor(params[k], dtype=torch.float64, device=dev).reshape(-1)
            for k in ("lengthscale", "outputscale", "noise_var")
        )
        S = yd.shape[1]
        corr = self.correlation(xd, xd, ls)
        eye = torch.eye(S, dtype=torch.float64, device=dev)
        ratio = (noise / scale + self.jitter)[:, None, None]
        mean, unit_std = sequential_gaussian_moments(corr + ratio * eye, yd)
        return mean, unit_std * scale.sqrt()[:, None]

    def exact_log_predictive_given(self, x: Tensor, y: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``[B, S]`` float64: log p(y_n | x_n, D_<n, theta) for each dataset's known
        hyperparameters theta (the oracle a method that knew them would reach)."""
        mean, std = self.moments_given(x, y, params)
        z = (y.double() - mean) / std
        return -0.5 * z * z - std.log() - _LOG_SQRT_2PI

    # ------------------------------------------------------------------ quadrature rule
    def quadrature_rule(
        self, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(lengthscales [J], ratios [J], outputscales [K], log_weights [J, K])``: the
        (l, r) nodes flattened (J = n_l * n_r), the outputscale nodes and each node's log
        prior weight (logsumexp 0). float64 on ``device``; computed once and cached."""
        key = str(torch.device(device) if device is not None else "cpu")
        if key not in self._rule_cache:
            self._rule_cache[key] = tuple(t.to(device) for t in self._build_rule())
        return self._rule_cache[key]  # type: ignore[return-value]

    def _build_rule(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n_l, n_r, n_s = self.quadrature_nodes
        q = self.quadrature_tail
        fine = {
            k: _fine_grid(*pair)
            for k, pair in (
                ("l", self.lengthscale_prior),
                ("s", self.outputscale_prior),
                ("v", self.noise_prior),
            )
        }

        def span(u: Tensor, w: Tensor, n: int) -> tuple[Tensor, float]:
            lo, hi = _quantiles(u, w, (q, 1 - q))
            return torch.linspace(lo, hi, n, dtype=torch.float64), (hi - lo) / (n - 1)

        u_l, du_l = span(*fine["l"], n_l)
        u_s, du_s = span(*fine["s"], n_s)
        # log r = log v - log s: its quantiles from the product of coarser fine grids
        (uv, wv), (us, ws) = fine["v"], fine["s"]
        keep_v, keep_s = wv > 1e-14, ws > 1e-14
        uv, wv, us, ws = uv[keep_v][::4], wv[keep_v][::4], us[keep_s][::4], ws[keep_s][::4]
        diff = (uv[:, None] - us[None, :]).flatten()
        u_r, du_r = span(diff, (wv[:, None] * ws[None, :]).flatten(), n_r)
        log_wl = log_gamma_log_density(u_l, *self.lengthscale_prior) + math.log(du_l)
        log_ws = log_gamma_log_density(u_s, *self.outputscale_prior) + math.log(du_s)
        log_wv = log_gamma_log_density(u_r[:, None] + u_s[None, :], *self.noise_prior)
        logw = (
            log_wl[:, None, None] + (log_wv + math.log(du_r))[None, :, :] + log_ws[None, None, :]
        ).reshape(n_l * n_r, n_s)
        logw = logw - torch.logsumexp(logw.flatten(), 0)
        ls = u_l.exp()[:, None].expand(n_l, n_r).reshape(-1)
        ratio = u_r.exp()[None, :].expand(n_l, n_r).reshape(-1)
        return ls, ratio, u_s.exp(), logw

    # ------------------------------------------------------------------ exact predictive
    def _node_blocks(
        self, x: Tensor, y: Tensor
    ) -> Iterator[tuple[slice, Tensor, Tensor, Tensor, Tensor]]:
        """Per block of rows and (l, r) nodes: ``(rows, log_a [j, K, b, S], lp [j, K, b, S],
        mean [j, b, S], std [j, K, b, S])``: log prior weight + log p(D_<n | node), the log
        predictive density of y_n, and the predictive moments of each node."""
        xd, yd = x.double(), y.double()
        B, S = yd.shape
        ls, ratio, scales, logw = self.quadrature_rule(xd.device)
        J = ls.numel()
        rows = max(1, min(B, _BLOCK // max(S * S, 1)))
        log_s = scales.log()[None, :, None, None]
        for r0 in range(0, B, rows):
            sl = slice(r0, min(B, r0 + rows))
            xb, yb = xd[sl], yd[sl]
            b = yb.shape[0]
            step = max(1, _BLOCK // (b * S * max(S, scales.numel())))
            eye = torch.eye(S, dtype=torch.float64, device=xd.device)
            for j0 in range(0, J, step):
                js = slice(j0, min(J, j0 + step))
                corr = self.correlation(xb.unsqueeze(0), xb.unsqueeze(0), ls[js, None])
                cov = corr + (ratio[js] + self.jitter)[:, None, None, None] * eye
                chol = torch.linalg.cholesky(cov)  # [j, b, S, S]
                z = torch.linalg.solve_triangular(
                    chol, yb.unsqueeze(0).expand(chol.shape[0], -1, -1).unsqueeze(-1), upper=False
                ).squeeze(-1)
                diag = torch.diagonal(chol, dim1=-2, dim2=-1)  # [j, b, S]
                mean = yb - diag * z
                z2 = (z * z).unsqueeze(1)  # [j, 1, b, S]
                logd = diag.log().unsqueeze(1)
                inv_s = torch.exp(-log_s)
                # log N(y_n; mean, s d^2) for every outputscale node
                lp = -0.5 * z2 * inv_s - logd - 0.5 * log_s - _LOG_SQRT_2PI
                prefix = lp.cumsum(-1) - lp  # log p(D_<n | node)
                log_a = logw[js][:, :, None, None] + prefix
                std = (diag.unsqueeze(1) * torch.exp(0.5 * log_s)).expand_as(lp)
                yield sl, log_a, lp, mean, std

    def _reduce(self, x: Tensor, y: Tensor, values: Tensor | None = None, mean: bool = False):
        """Stream the nodes once: log predictive ``[B, S]`` and, when asked, the mixture cdf
        at ``values`` ``[B, S, V]`` and the mixture mean ``[B, S]``."""
        if x is None:
            raise ValueError(f"{type(self).__name__} is supervised: pass x [B, S, input_dim].")
        B, S = y.shape
        dev = x.device
        f64 = torch.float64
        num = torch.full((B, S), -math.inf, dtype=f64, device=dev)
        den = torch.full((B, S), -math.inf, dtype=f64, device=dev)
        cdf = None if values is None else torch.zeros(B, S, values.shape[-1], dtype=f64, device=dev)
        avg = torch.zeros(B, S, dtype=f64, device=dev) if mean else None
        for sl, log_a, lp, mu, std in self._node_blocks(x, y):
            flat_a = log_a.flatten(0, 1)  # [j*K, b, S]
            block_den = torch.logsumexp(flat_a, 0)
            new_den = torch.logaddexp(den[sl], block_den)
            new_den_safe = torch.where(torch.isinf(new_den), torch.zeros_like(new_den), new_den)
            keep = torch.exp(den[sl] - new_den_safe)
            post = torch.exp(log_a - new_den_safe)  # [j, K, b, S]
            if cdf is not None:
                cdf[sl] *= keep[..., None]
                vc = max(1, _BLOCK // post.numel())
                for v0 in range(0, values.shape[-1], vc):
                    v = values[sl, :, v0 : v0 + vc].to(f64)
                    zv = (v[None, None] - mu[:, None, ..., None]) / std[..., None]
                    phi = 0.5 * torch.erfc(-zv / math.sqrt(2.0))
                    cdf[sl, :, v0 : v0 + vc] += (post[..., None] * phi).sum((0, 1))
            if avg is not None:
                avg[sl] = avg[sl] * keep + (post.sum(1) * mu).sum(0)
            num[sl] = torch.logaddexp(num[sl], torch.logsumexp((log_a + lp).flatten(0, 1), 0))
            den[sl] = new_den
        return num - den, cdf, avg

    def exact_log_predictive(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, S]``: log p(y_n | x_n, D_<n), hyperparameters integrated by quadrature."""
        return self._reduce(x, y)[0].float()

    def exact_predictive_cdf(self, x: Tensor, y: Tensor, values: Tensor) -> Tensor:
        """``[B, S, V]``: the predictive cdf (a mixture of normals) at ``values`` ``[V]`` or
        ``[B, S, V]``."""
        B, S = y.shape
        v = torch.as_tensor(values, dtype=torch.float64, device=x.device)
        if v.dim() == 1:
            v = v.expand(B, S, -1)
        return self._reduce(x, y, values=v)[1]

    def exact_log_predictive_and_cdf(
        self, x: Tensor, y: Tensor, values: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``exact_log_predictive`` and ``exact_predictive_cdf`` in one pass over the nodes
        (``evaluate`` asks for both; each pass costs n_l * n_r Cholesky factorisations)."""
        B, S = y.shape
        v = torch.as_tensor(values, dtype=torch.float64, device=x.device)
        if v.dim() == 1:
            v = v.expand(B, S, -1)
        logp, cdf, _ = self._reduce(x, y, values=v)
        return logp.float(), cdf

    def exact_predictive_mean(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, S]``: the predictive mean (the posterior-weighted GP means)."""
        return self._reduce(x, y, mean=True)[2].float()
