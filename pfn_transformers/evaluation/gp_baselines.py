"""What a GP user would get on ``GPHyperPrior`` data: MLE-II, and the true-hyperparameter oracle.

The quadrature predictive of ``GPHyperPrior`` integrates over the hyperparameters; a GP user
instead fits them (type-II maximum likelihood, as scikit-learn's ``GaussianProcessRegressor``
or gpytorch do) and predicts with the fit. ``gp_baselines`` scores both ends beside the exact
predictive, per position n, on the same datasets:

- ``"mle_ii"``: position n's predictive is the GP (zero mean, the prior's kernel and relative
  jitter) whose lengthscale l, outputscale s and noise variance v maximise the marginal
  likelihood p(D_<n | l, s, v) of the first n points alone (plain ML, no hyperprior term),
  within ``BOUNDS``. n = 0 and n = 1 use the hyperprior means (concentration / rate): there
  is nothing, or one point, to fit.
- ``"true_hyperparameters"``: the GP with the hyperparameters that drew the dataset
  (``GPHyperPrior.exact_log_predictive_given``), an oracle no method can use.

**The fit (restarts).** Every (dataset, n) problem is solved in log space from two starts:
(1) the best node of a grid of ``GRID`` lengthscales x ``GRID`` noise-to-signal ratios spanning
the prior's quadrature range, with the outputscale profiled out in closed form (s = y^T C^-1 y
/ n for the unit-outputscale covariance C, clipped to its bounds; one Cholesky per node gives
every n at once), and (2) the hyperprior means. Each start is refined by a damped Newton
method (analytic gradient and Hessian of the log marginal likelihood, eigenvalues of the
Hessian flipped negative, Levenberg-Marquardt damping, steps accepted only when the
likelihood rises, bounds held by projection), all problems of one n batched in float64; the
better of the two optima is kept. Unlike L-BFGS-B from a few random starts (scikit-learn's
``n_restarts_optimizer``) the grid start sees the whole prior range, so the fit reaches
scikit-learn's optimum or a better one (``tests/unit/evaluation/test_gp_baselines.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.priors.gp_hyper import GPHyperPrior

# (low, high) of lengthscale, outputscale and noise variance. The noise floor is gpytorch's
# GaussianLikelihood default (1e-4); the others are wide enough never to bind on this prior's
# data in practice (scikit-learn's defaults are 1e-5 .. 1e5).
BOUNDS: dict[str, tuple[float, float]] = {
    "lengthscale": (1e-3, 1e3),
    "outputscale": (1e-3, 1e4),
    "noise_var": (1e-4, 1e4),
}
GRID = 10  # start grid: lengthscales x noise-to-signal ratios
MAX_ITER = 60
TOL = 1e-8  # a Newton step that gains less (nats) ends that problem's search
_LOG_2PI = math.log(2 * math.pi)
_SQRT5 = math.sqrt(5.0)
_KEYS = ("lengthscale", "outputscale", "noise_var")


def _log_bounds(device: Any) -> tuple[Tensor, Tensor]:
    lo = torch.tensor([math.log(BOUNDS[k][0]) for k in _KEYS], dtype=torch.float64, device=device)
    hi = torch.tensor([math.log(BOUNDS[k][1]) for k in _KEYS], dtype=torch.float64, device=device)
    return lo, hi


def _distance(x: Tensor) -> Tensor:
    """Euclidean distances ``[..., n, n]`` (fixed while the hyperparameters move)."""
    return (x.unsqueeze(-2) - x.unsqueeze(-3)).pow(2).sum(-1).clamp_min(0).sqrt()


def _kernel(
    kernel: str, dist: Tensor, log_l: Tensor, derivatives: bool = False
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Unit-outputscale kernel ``[P, n, n]`` (``GPHyperPrior.correlation``) and, when asked,
    its first and second derivatives in log l (in-place arithmetic: these loops are bound by
    memory traffic over P x n x n tensors)."""
    inv_l = torch.exp(-log_l)[:, None, None]
    if kernel == "rbf":
        u = (dist * inv_l).square_()
        k = u.mul(-0.5).exp_()
        if not derivatives:
            return k, None, None
        return k, u * k, (u - 2).mul_(u).mul_(k)
    t = dist * (_SQRT5 * inv_l)
    e = t.neg().exp_()
    k = t.mul(1 / 3).add_(1).mul_(t).add_(1).mul_(e)  # (1 + t + t^2 / 3) e^-t
    if not derivatives:
        return k, None, None
    t2 = t.square()
    dk = (t + 1).mul_(t2).mul_(e).mul_(1 / 3)  # t^2 (1 + t) e^-t / 3
    d2k = t.mul_(-2).add_(t2).sub_(2).mul_(t2).mul_(e).mul_(1 / 3)  # t^2 (t^2 - 2t - 2) e^-t / 3
    return k, dk, d2k


def _covariance(prior: GPHyperPrior, corr: Tensor, theta: Tensor) -> Tensor:
    """s (K_l + jitter I) + v I, the prior's covariance at log hyperparameters ``theta``."""
    s, v = theta[:, 1].exp(), theta[:, 2].exp()
    cov = corr * s[:, None, None]
    cov.diagonal(dim1=-2, dim2=-1).add_((v + prior.jitter * s)[:, None])
    return cov


def _log_ml_at(prior: GPHyperPrior, dist: Tensor, y: Tensor, theta: Tensor) -> Tensor:
    """log p(y | theta) ``[P]`` from distances (-inf where the covariance is not positive
    definite)."""
    corr = _kernel(prior.kernel, dist, theta[:, 0])[0]
    chol, info = torch.linalg.cholesky_ex(_covariance(prior, corr, theta))
    ok = info == 0
    if not bool(ok.all()):
        eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
        chol = torch.where(ok[:, None, None], chol, eye)
    z = torch.linalg.solve_triangular(chol, y.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    out = -0.5 * (z * z).sum(-1) - logdet - 0.5 * y.shape[-1] * _LOG_2PI
    return torch.where(ok, out, torch.full_like(out, -math.inf))


def _log_ml(prior: GPHyperPrior, x: Tensor, y: Tensor, theta: Tensor) -> Tensor:
    """log p(y | x, theta) ``[P]`` for x ``[P, n, D]``, y ``[P, n]``, theta ``[P, 3]`` =
    (log l, log s, log v)."""
    return _log_ml_at(prior, _distance(x), y, theta)


def _log_ml_derivatives(
    prior: GPHyperPrior, dist: Tensor, y: Tensor, theta: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradient ``[P, 3]`` and Hessian ``[P, 3, 3]`` of the log marginal likelihood in theta =
    (log l, log s, log v): with K the covariance, W = K^-1, a = W y and D_i = dK/dtheta_i,
    g_i = a'D_i a / 2 - tr(W D_i) / 2 and H_ij = a'D_ij a / 2 - (D_i a)'W(D_j a)
    - tr(W D_ij) / 2 + tr(W D_i W D_j) / 2. Here D_s = K - v I and D_v = v I, so W D_s =
    I - v W and W D_v = v W: one matrix product (W D_l) per problem."""
    corr, dk, d2k = _kernel(prior.kernel, dist, theta[:, 0], derivatives=True)
    n = y.shape[-1]
    s, v = theta[:, 1].exp(), theta[:, 2].exp()
    cov = _covariance(prior, corr, theta)
    chol = torch.linalg.cholesky(cov)
    a = torch.cholesky_solve(y.unsqueeze(-1), chol).squeeze(-1)
    W = torch.cholesky_inverse(chol)
    Da = dk.mul_(s[:, None, None])
    M = W @ Da  # W D_l

    def mv(m: Tensor, vec: Tensor) -> Tensor:
        return (m @ vec.unsqueeze(-1)).squeeze(-1)

    def dot(p: Tensor, q: Tensor) -> Tensor:
        return (p * q).sum(-1)

    def tr(m: Tensor) -> Tensor:
        return torch.diagonal(m, dim1=-2, dim2=-1).sum(-1)

    ua, ub = mv(Da, a), y - v[:, None] * a  # D_l a, D_s a (D_v a = v a)
    Wa, Wua = mv(W, a), mv(W, ua)
    Wub = a - v[:, None] * Wa
    trW, trM = tr(W), tr(M)
    sWW, sMW, sMM = (W * W).sum((-2, -1)), (M * W).sum((-2, -1)), (M * M.mT).sum((-2, -1))
    ga = 0.5 * dot(ua, a) - 0.5 * trM
    gb = 0.5 * dot(ub, a) - 0.5 * (n - v * trW)
    gc = 0.5 * v * dot(a, a) - 0.5 * v * trW
    Daa = d2k.mul_(s[:, None, None])
    haa = 0.5 * dot(mv(Daa, a), a) - 0.5 * (W * Daa).sum((-2, -1))
    haa = haa - dot(ua, Wua) + 0.5 * sMM
    hab = ga - dot(ua, Wub) + 0.5 * (trM - v * sMW)
    hac = -v * dot(ua, Wa) + 0.5 * v * sMW
    hbb = gb - dot(ub, Wub) + 0.5 * (n - 2 * v * trW + v * v * sWW)
    hbc = -v * dot(ub, Wa) + 0.5 * (v * trW - v * v * sWW)
    hcc = gc - v * v * dot(a, Wa) + 0.5 * v * v * sWW
    g = torch.stack([ga, gb, gc], -1)
    H = torch.stack(
        [torch.stack([haa, hab, hac], -1), torch.stack([hab, hbb, hbc], -1),
         torch.stack([hac, hbc, hcc], -1)], -2,
    )  # fmt: skip
    return g, H


def _newton(prior: GPHyperPrior, x: Tensor, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """Maximise the log marginal likelihood of each problem from ``theta [P, 3]``: damped,
    projected Newton (see the module doc). Returns ``(theta, log_ml)``."""
    lo, hi = _log_bounds(theta.device)
    theta = torch.maximum(torch.minimum(theta, hi), lo)
    P = theta.shape[0]
    dist = _distance(x)
    best = _log_ml_at(prior, dist, y, theta)
    damp = torch.full((P,), 1e-3, dtype=theta.dtype, device=theta.device)
    active = torch.ones(P, dtype=torch.bool, device=theta.device)
    for _ in range(MAX_ITER):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        th, di, yi = theta[idx], dist[idx], y[idx]
        g, H = _log_ml_derivatives(prior, di, yi, th)
        # a coordinate on its bound whose gradient points outward stays there
        pinned = ((th <= lo + 1e-12) & (g < 0)) | ((th >= hi - 1e-12) & (g > 0))
        g = g.masked_fill(pinned, 0.0)
        keep = (~pinned).double()
        H = H * keep[:, :, None] * keep[:, None, :] - torch.diag_embed(pinned.double())
        evals, evecs = torch.linalg.eigh(H)
        mag = evals.abs().clamp_min(1e-8) + damp[idx, None]
        step = evecs @ ((evecs.mT @ g.unsqueeze(-1)) / mag.unsqueeze(-1))  # ascent direction
        step = step.squeeze(-1)
        step = step * (3.0 / step.norm(dim=-1, keepdim=True).clamp_min(3.0))  # trust radius 3
        cand = torch.maximum(torch.minimum(th + step, hi), lo)
        val = _log_ml_at(prior, di, yi, cand)
        gain = val - best[idx]
        ok = gain > 0
        theta[idx] = torch.where(ok[:, None], cand, th)
        best[idx] = torch.where(ok, val, best[idx])
        damp[idx] = torch.where(ok, damp[idx] / 4, damp[idx] * 8).clamp(1e-10, 1e10)
        moved = (cand - th).abs().amax(-1)
        done = (ok & (gain < TOL)) | (moved < 1e-7) | (damp[idx] >= 1e10)
        active[idx] = ~done
    return theta, best


def _grid_start(prior: GPHyperPrior, x: Tensor, y: Tensor) -> Tensor:
    """``[B, S, 3]``: per dataset and n, the best (l, r) grid node with the outputscale profiled
    out (s = q_n / n, clipped to its bounds; v = r s), in log space."""
    ls_q, ratio_q, _, _ = prior.quadrature_rule(x.device)
    lg = torch.linspace(ls_q.min().log(), ls_q.max().log(), GRID, dtype=torch.float64)
    rg = torch.linspace(ratio_q.min().log(), ratio_q.max().log(), GRID, dtype=torch.float64)
    lo, hi = _log_bounds(x.device)
    B, S = y.shape
    best = torch.full((B, S), -math.inf, dtype=torch.float64, device=x.device)
    theta = torch.zeros(B, S, 3, dtype=torch.float64, device=x.device)
    n = torch.arange(S, dtype=torch.float64, device=x.device).clamp_min(1)
    eye = torch.eye(S, dtype=torch.float64, device=x.device)
    for log_l in lg:
        corr = prior.correlation(x, x, log_l.exp().expand(B))
        for log_r in rg:
            chol = torch.linalg.cholesky(corr + (log_r.exp() + prior.jitter) * eye)
            z = torch.linalg.solve_triangular(chol, y.unsqueeze(-1), upper=False).squeeze(-1)
            q = (z * z).cumsum(-1) - z * z  # y_<n' C_<n^-1 y_<n
            logdet = 2 * (torch.diagonal(chol, dim1=-2, dim2=-1).log().cumsum(-1))
            logdet = logdet - 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log()
            log_s = (q / n).clamp_min(1e-300).log().clamp(float(lo[1]), float(hi[1]))
            val = -0.5 * q * torch.exp(-log_s) - 0.5 * logdet - 0.5 * n * log_s
            better = val > best
            best = torch.where(better, val, best)
            cand = torch.stack(
                [log_l.expand(B, S), log_s, (log_r + log_s).clamp(float(lo[2]), float(hi[2]))], -1
            )
            theta = torch.where(better[..., None], cand, theta)
    return theta


def _prior_mean_theta(prior: GPHyperPrior, device: Any) -> Tensor:
    """log of the hyperprior means (concentration / rate) ``[3]``."""
    pairs = (prior.lengthscale_prior, prior.outputscale_prior, prior.noise_prior)
    return torch.tensor([math.log(c / r) for c, r in pairs], dtype=torch.float64, device=device)


def fit_mle_ii(prior: GPHyperPrior, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(theta [B, S, 3], log_ml [B, S])``: per dataset and position n, the log hyperparameters
    (log l, log s, log v) maximising p(D_<n) and that maximum; n = 0, 1 hold the hyperprior
    means (log_ml there is that of the means)."""
    xd, yd = _checked(prior, x, y)
    B, S = yd.shape
    mean = _prior_mean_theta(prior, xd.device)
    theta = mean.expand(B, S, 3).clone()
    log_ml = torch.zeros(B, S, dtype=torch.float64, device=xd.device)
    if S > 1:
        log_ml[:, 1] = _log_ml(prior, xd[:, :1], yd[:, :1], mean.expand(B, 3))
    if S <= 2:
        return theta, log_ml
    grid = _grid_start(prior, xd, yd)
    for n in range(2, S):
        # starts: the grid's best node, the hyperprior means, and (n > 2) the fit of D_<n-1
        starts = [grid[:, n], mean.expand(B, 3)] + ([theta[:, n - 1]] if n > 2 else [])
        k = len(starts)
        xn, yn = xd[:, :n].repeat(k, 1, 1), yd[:, :n].repeat(k, 1)
        th, val = _newton(prior, xn, yn, torch.cat(starts, 0))
        pick = val.reshape(k, B).argmax(0)
        rows = pick * B + torch.arange(B, device=xd.device)
        theta[:, n], log_ml[:, n] = th[rows], val[rows]
    return theta, log_ml


def _checked(prior: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(prior, GPHyperPrior):
        raise TypeError(
            f"gp_baselines: prior={type(prior).__name__} is not valid; the GP baselines need a "
            "GPHyperPrior (their kernel, jitter and hyperpriors)."
        )
    if x is None or x.dim() != 3 or y.dim() != 2 or x.shape[:2] != y.shape:
        raise ValueError(
            f"gp_baselines: x of shape {None if x is None else tuple(x.shape)} and y of shape "
            f"{tuple(y.shape)} are not valid; pass x [B, S, input_dim] and y [B, S]."
        )
    if x.shape[-1] != prior.input_dim:
        raise ValueError(
            f"gp_baselines: x has {x.shape[-1]} features but the prior's input_dim is "
            f"{prior.input_dim}."
        )
    return x.double(), y.double()


def mle_ii_log_predictive(prior: GPHyperPrior, x: Tensor, y: Tensor) -> Tensor:
    """``[B, S]`` float64: log p(y_n | x_n, D_<n) under the GP whose hyperparameters maximise
    the marginal likelihood of D_<n (the prior means for n = 0, 1); see the module doc."""
    xd, yd = _checked(prior, x, y)
    theta, _ = fit_mle_ii(prior, xd, yd)
    B, S = yd.shape
    out = torch.empty(B, S, dtype=torch.float64, device=xd.device)
    for n in range(S):
        th = theta[:, n]
        params = dict(zip(_KEYS, th.exp().unbind(-1)))
        logp = prior.exact_log_predictive_given(xd[:, : n + 1], yd[:, : n + 1], params)
        out[:, n] = logp[:, n]
    return out


def gp_baselines(
    prior: GPHyperPrior, x: Tensor, y: Tensor, params: dict[str, Tensor]
) -> dict[str, Tensor]:
    """``{"mle_ii": [B, S], "true_hyperparameters": [B, S]}``, float64 log p(y_n | x_n, D_<n)
    of each baseline (see the module doc); ``params`` are the hyperparameters ``draw``
    reported for these datasets."""
    missing = [k for k in _KEYS if k not in params]
    if missing:
        raise ValueError(
            f"gp_baselines: params lacks {missing}; pass the dict GPHyperPrior.draw returns "
            f"(keys {list(_KEYS)})."
        )
    return {
        "mle_ii": mle_ii_log_predictive(prior, x, y),
        "true_hyperparameters": prior.exact_log_predictive_given(x, y, params),
    }


def baselines_for(prior: Any) -> Callable[..., dict[str, Tensor]] | None:
    """The baseline function for ``prior`` (called as ``fn(prior, x, y, params)`` on a
    ``prior.draw``), or None when there is none: ``evaluate`` asks this."""
    return gp_baselines if isinstance(prior, GPHyperPrior) else None
