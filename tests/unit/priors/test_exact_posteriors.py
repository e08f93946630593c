"""Every exact posterior predictive against an independent computation.

Closed forms are checked against explicit loops or another route (linear regression as a GP
with a linear kernel, GP by per-n solves, NIG by Monte Carlo over the prior, logistic by
quadrature), cdfs against densities, and discrete predictives sum to one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn_transformers.priors import (
    CategoricalPrior,
    CoinFlipPrior,
    GPPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
    MarkovChainPrior,
    NormalInverseGammaPrior,
    PolynomialPrior,
    betainc,
    student_t_cdf,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _gauss_logpdf(y, mean, var):
    return -0.5 * (y - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * torch.as_tensor(var))


# --------------------------------------------------------------------------- discrete
def test_coin_matches_counting_loop():
    prior = CoinFlipPrior(alpha=2.0, beta=0.5)
    _, y = prior.generate_batch(6, 12)
    lp = prior.exact_log_predictive(None, y)
    for b in range(6):
        heads = 0
        for n in range(12):
            p1 = (2.0 + heads) / (2.5 + n)
            want = math.log(p1 if y[b, n] == 1 else 1 - p1)
            assert lp[b, n].item() == pytest.approx(want, abs=1e-6)
            heads += int(y[b, n])


def test_categorical_matches_counting_loop():
    alpha = [0.3, 1.0, 2.0, 0.5]
    prior = CategoricalPrior(num_categories=4, concentration=alpha)
    _, y = prior.generate_batch(5, 15)
    lp = prior.exact_log_predictive(None, y)
    for b in range(5):
        counts = [0] * 4
        for n in range(15):
            j = int(y[b, n])
            want = math.log((alpha[j] + counts[j]) / (sum(alpha) + n))
            assert lp[b, n].item() == pytest.approx(want, abs=1e-6)
            counts[j] += 1


def test_markov_matches_counting_loop():
    K, a = 3, 0.7
    prior = MarkovChainPrior(num_states=K, concentration=a)
    _, y = prior.generate_batch(5, 20)
    lp = prior.exact_log_predictive(None, y)
    for b in range(5):
        counts = [[0] * K for _ in range(K)]
        assert lp[b, 0].item() == pytest.approx(-math.log(K), abs=1e-6)
        for n in range(1, 20):
            i, j = int(y[b, n - 1]), int(y[b, n])
            want = math.log((a + counts[i][j]) / (K * a + sum(counts[i])))
            assert lp[b, n].item() == pytest.approx(want, abs=1e-6)
            counts[i][j] += 1


@pytest.mark.parametrize(
    "prior",
    [
        CoinFlipPrior(0.5, 3.0),
        CategoricalPrior(5, 0.5),
        MarkovChainPrior(4, 1.0),
        LogisticClassificationPrior(num_mc_samples=256),
    ],
    ids=lambda p: type(p).__name__,
)
def test_discrete_predictives_sum_to_one_and_are_causal(prior):
    x, y = prior.generate_batch(4, 10)
    probs = prior.exact_predictive_probs(x, y)
    assert probs.shape == (4, 10, prior.num_classes)
    assert torch.allclose(probs.sum(-1), torch.ones(4, 10, dtype=probs.dtype), atol=1e-9)
    lp = prior.exact_log_predictive(x, y)
    assert torch.allclose(lp.double(), probs.log().gather(-1, y.unsqueeze(-1)).squeeze(-1))
    # entry n depends on y_<n only (and x_<=n)
    y2 = y.clone()
    y2[:, 6:] = (y2[:, 6:] + 1) % prior.num_classes
    x2 = None if x is None else torch.cat([x[:, :7], x[:, 7:] + 0.3], 1)
    assert torch.allclose(prior.exact_predictive_probs(x2, y2)[:, :7], probs[:, :7])


def test_logistic_mc_matches_quadrature():
    """Binary 1-D logistic: the predictive depends on (dw, db) = differences of the two classes'
    weights, each N(0, 2 std^2); integrate the posterior on a grid."""
    prior = LogisticClassificationPrior(
        input_dim=1, num_classes=2, weight_std=2.0, bias_std=1.0, num_mc_samples=20000
    )
    x, y = prior.generate_batch(3, 6)
    mc = prior.exact_predictive_probs(x, y)[..., 1]
    g = torch.linspace(-6, 6, 481, dtype=torch.float64)
    dw, db = torch.meshgrid(g * 2.0 * math.sqrt(2), g * math.sqrt(2), indexing="ij")
    log_prior = -0.5 * g[:, None] ** 2 - 0.5 * g[None, :] ** 2
    for b in range(3):
        logpost = log_prior.clone()
        for n in range(6):
            logit = dw * x[b, n, 0].double() + db
            p1 = torch.sigmoid(logit)
            w = torch.softmax(logpost.flatten(), 0).view_as(logpost)
            want = (w * p1).sum().item()
            assert mc[b, n].item() == pytest.approx(want, abs=0.02)
            logpost = logpost + torch.nn.functional.logsigmoid(logit if y[b, n] else -logit)
    ess = prior.mc_effective_sample_size(x, y)
    assert ess[:, 0].allclose(torch.full((3,), 20000.0, dtype=torch.float64))
    assert (ess > 100).all()


# --------------------------------------------------------------------------- Gaussian
def _loop_linear(prior: LinearRegressionPrior, x, y):
    """DESIGN.md formula with explicit inverses, one position at a time."""
    s2 = prior.noise_std**2
    S0inv = torch.diag(1 / prior.prior_variances(torch.float64))
    phi = prior.featurize(x.double())
    B, S = y.shape
    out = torch.empty(B, S, dtype=torch.float64)
    for b in range(B):
        for n in range(S):
            P, Y = phi[b, :n], y[b, :n].double()
            Sn = torch.linalg.inv(S0inv + P.T @ P / s2)
            mn = Sn @ (P.T @ Y / s2)
            f = phi[b, n]
            out[b, n] = _gauss_logpdf(y[b, n].double(), mn @ f, s2 + f @ Sn @ f)
    return out


def _gp_from_cov(cov, y):
    """Per-position conditioning of y ~ N(0, cov) with torch.linalg.solve (no Cholesky)."""
    B, S = y.shape
    out = torch.empty(B, S, dtype=torch.float64)
    for b in range(B):
        for n in range(S):
            c = cov[b]
            if n == 0:
                mean, var = torch.tensor(0.0, dtype=torch.float64), c[0, 0]
            else:
                k = c[:n, n]
                sol = torch.linalg.solve(c[:n, :n], torch.stack([y[b, :n].double(), k], -1))
                mean, var = sol[:, 0] @ k, c[n, n] - k @ sol[:, 1]
            out[b, n] = _gauss_logpdf(y[b, n].double(), mean, var)
    return out


@pytest.mark.parametrize(
    "prior",
    [
        LinearRegressionPrior(),
        LinearRegressionPrior(input_dim=2, weight_std=2.0, bias=False, noise_std=0.3),
        LinearRegressionPrior(input_dim=2, features="polynomial", degree=2, bias_std=0.5),
        PolynomialPrior(degree=3),
    ],
    ids=["linear", "linear-2d-nobias", "poly-features-2d", "polynomial"],
)
def test_linear_matches_loop_and_linear_kernel_gp(prior):
    x, y = prior.generate_batch(3, 9)
    lp = prior.exact_log_predictive(x, y).double()
    assert torch.allclose(lp, _loop_linear(prior, x, y).float().double(), atol=1e-4)
    # the same model as a GP with kernel phi(x)^T S0 phi(x') + noise
    phi = prior.featurize(x.double())
    cov = phi @ torch.diag(prior.prior_variances(torch.float64)) @ phi.transpose(1, 2)
    cov = cov + prior.noise_std**2 * torch.eye(9, dtype=torch.float64)
    assert torch.allclose(lp, _gp_from_cov(cov, y).float().double(), atol=1e-4)


def test_gp_matches_per_n_solve():
    prior = GPPrior(input_dim=2, lengthscale=0.3, outputscale=1.5, noise_var=0.02)
    x, y = prior.generate_batch(3, 12)
    lp = prior.exact_log_predictive(x, y).double()
    xd = x.double()
    d2 = ((xd[:, :, None] - xd[:, None]) ** 2).sum(-1)
    cov = 1.5 * torch.exp(-d2 / (2 * 0.3**2)) + (0.02 + prior.jitter) * torch.eye(12)
    assert torch.allclose(lp, _gp_from_cov(cov, y).float().double(), atol=1e-4)


def test_exact_predictive_is_calibrated_on_prior_draws():
    """Averaged over prior draws, the exact predictive's probability integral transform is
    uniform: a check of the whole sampler + posterior pair."""
    for prior in (GPPrior(), LinearRegressionPrior(), NormalInverseGammaPrior()):
        x, y = prior.generate_batch(3000, 6)
        pit = prior.exact_predictive_cdf(x, y, y.double().unsqueeze(-1))[..., 0]
        hist = torch.histc(pit.flatten().float(), bins=5, min=0, max=1) / pit.numel()
        assert torch.allclose(hist, torch.full((5,), 0.2), atol=0.02), type(prior).__name__


@pytest.mark.parametrize(
    "prior",
    [GPPrior(), LinearRegressionPrior(), NormalInverseGammaPrior()],
    ids=lambda p: type(p).__name__,
)
def test_cdf_is_the_integral_of_the_density(prior):
    x, y = prior.generate_batch(2, 5)
    v = torch.linspace(-6, 6, 4001, dtype=torch.float64)
    cdf = prior.exact_predictive_cdf(x, y, v)  # [2, 5, V]
    assert (cdf.diff(dim=-1) >= -1e-12).all()
    # d cdf / dv = density: compare against exact_log_predictive with y_n replaced by v
    for n in (0, 4):
        for vi in (1000, 2000, 2600):
            y2 = y.clone()
            y2[:, n] = v[vi].float()
            dens = prior.exact_log_predictive(x, y2)[:, n].double().exp()
            slope = (cdf[:, n, vi + 1] - cdf[:, n, vi - 1]) / (v[vi + 1] - v[vi - 1])
            assert torch.allclose(slope, dens, rtol=1e-3, atol=1e-5)


def test_student_t_cdf_and_betainc_match_scipy():
    from scipy import special, stats

    a = torch.tensor([0.5, 1.0, 2.5, 10.0, 30.0], dtype=torch.float64)
    b = torch.tensor([0.5, 3.0, 0.5, 10.0, 2.0], dtype=torch.float64)
    for xv in (0.01, 0.3, 0.5, 0.9, 0.999):
        x = torch.full_like(a, xv)
        want = special.betainc(a.numpy(), b.numpy(), x.numpy())
        assert np.allclose(betainc(a, b, x).numpy(), want, atol=1e-10)
    v = torch.linspace(-30, 30, 121, dtype=torch.float64)
    df = torch.tensor([[1.0, 4.0, 25.0]], dtype=torch.float64)
    loc = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64)
    scale = torch.tensor([[1.0, 0.5, 3.0]], dtype=torch.float64)
    got = student_t_cdf(v, df, loc, scale, backend="torch")  # [1, 3, V]
    assert torch.allclose(got, student_t_cdf(v, df, loc, scale, backend="scipy"), atol=1e-11)
    for i in range(3):
        want = stats.t.cdf(v.numpy(), df[0, i].item(), loc[0, i].item(), scale[0, i].item())
        assert np.allclose(got[0, i].numpy(), want, atol=1e-10)


def test_nig_matches_monte_carlo_over_the_prior():
    """p(y_n | y_<n) = E_prior[p(y_<=n | theta)] / E_prior[p(y_<n | theta)] by simple MC."""
    prior = NormalInverseGammaPrior(mu0=0.3, kappa0=1.5, alpha0=2.5, beta0=1.2)
    _, y = prior.generate_batch(3, 5)
    lp = prior.exact_log_predictive(None, y).double()
    gen = torch.Generator().manual_seed(1)
    m = 400_000
    prec = torch.distributions.Gamma(
        torch.tensor(2.5, dtype=torch.float64), torch.tensor(1.2, dtype=torch.float64)
    ).sample((m,))
    sigma = prec.rsqrt()
    mu = 0.3 + sigma / math.sqrt(1.5) * torch.randn(m, generator=gen, dtype=torch.float64)
    for b in range(3):
        ll = _gauss_logpdf(y[b].double()[None, :], mu[:, None], (sigma**2)[:, None])  # [m, 5]
        prefix = torch.cat([torch.zeros(m, 1, dtype=torch.float64), ll.cumsum(1)], 1)
        logz = torch.logsumexp(prefix, 0)  # log sum_m p(y_<n | theta_m), n = 0..5
        mc = logz[1:] - logz[:-1]
        assert torch.allclose(lp[b], mc, atol=0.03), (lp[b], mc)


def test_nig_quantiles_and_mean():
    prior = NormalInverseGammaPrior()
    y = torch.tensor([[1.0, 2.0, 3.0]])
    df, loc, scale = prior.exact_predictive_params(y)
    # after n = 3 observations: kappa 4, mu (0 + 6)/4 = 1.5, alpha 3.5
    assert df[0, 3 - 1].item() == pytest.approx(2 * (2.0 + 1.0))
    assert loc[0, 2].item() == pytest.approx(3.0 / 3)  # y_<2 = [1, 2]: (0 + 3) / 3
    assert prior.exact_predictive_mean(None, y)[0, 0].item() == pytest.approx(0.0)
