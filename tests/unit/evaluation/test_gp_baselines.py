"""``gp_baselines``: MLE-II and true-hyperparameter GPs beside the exact predictive of
``GPHyperPrior``, checked against scikit-learn's ``GaussianProcessRegressor`` and direct
conditioning, and reported by ``evaluate``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from pfn_transformers.evaluation import evaluate
from pfn_transformers.evaluation.gp_baselines import (
    BOUNDS,
    _log_ml,
    baselines_for,
    fit_mle_ii,
    gp_baselines,
    mle_ii_log_predictive,
)
from pfn_transformers.model.configs import RegressionConfig
from pfn_transformers.priors import GPHyperPrior, GPPrior
from tests.unit.evaluation.test_evaluation import SMALL, FakeModel

COARSE = {"quadrature_nodes": (12, 16, 12)}


def _direct_log_predictive(prior, x, y, n, theta):
    """log N(y_n; GP conditional on D_<n) at hyperparameters exp(theta), by plain solves."""
    ls, s, v = (float(t) for t in theta.exp())
    xd, yd = x[: n + 1].double(), y[: n + 1].double()
    cov = s * prior.correlation(xd, xd, torch.tensor(ls, dtype=torch.float64))
    cov = cov + (v + prior.jitter * s) * torch.eye(n + 1, dtype=torch.float64)
    k_q = cov[n, :n]
    mean = k_q @ torch.linalg.solve(cov[:n, :n], yd[:n]) if n else torch.zeros((), dtype=cov.dtype)
    var = cov[n, n] - (k_q @ torch.linalg.solve(cov[:n, :n], k_q) if n else 0.0)
    return torch.distributions.Normal(mean, var.sqrt()).log_prob(yd[n]).item()


@pytest.mark.parametrize("input_dim", [1, 3], ids=["1d", "3d"])
def test_mle_ii_reaches_sklearns_optimum_and_predicts_with_it(input_dim):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    # no jitter: the prior's covariance is then scikit-learn's (alpha=1e-10) exactly
    prior = GPHyperPrior(input_dim=input_dim, jitter=0.0, **COARSE)
    torch.manual_seed(1)
    draw = prior.draw(4, 16)
    theta, log_ml = fit_mle_ii(prior, draw.x, draw.y)
    logp = mle_ii_log_predictive(prior, draw.x, draw.y)
    gaps = []
    for b in range(4):
        for n in (3, 7, 15):
            X, Y = draw.x[b, :n].double().numpy(), draw.y[b, :n].double().numpy()
            kernel = ConstantKernel(1.0, BOUNDS["outputscale"]) * Matern(
                1.0, BOUNDS["lengthscale"], nu=2.5
            ) + WhiteKernel(1.0, BOUNDS["noise_var"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optima on a bound are expected
                gp = GaussianProcessRegressor(kernel, alpha=1e-10, n_restarts_optimizer=8,
                                              random_state=0).fit(X, Y)  # fmt: skip
            k = gp.kernel_
            sk = torch.tensor(
                [[math.log(k.k1.k2.length_scale), math.log(k.k1.k1.constant_value),
                  math.log(k.k2.noise_level)]], dtype=torch.float64,
            )  # fmt: skip
            # scikit-learn's optimum, scored by ours
            sk_ml = _log_ml(prior, draw.x[b : b + 1, :n].double(), draw.y[b : b + 1, :n].double(),
                            sk).item()  # fmt: skip
            assert sk_ml == pytest.approx(gp.log_marginal_likelihood_value_, abs=1e-6)
            gaps.append(log_ml[b, n].item() - sk_ml)
            # the predictive is the GP's at the fitted hyperparameters, conditioned on D_<n
            ref = _direct_log_predictive(prior, draw.x[b], draw.y[b], n, theta[b, n])
            assert logp[b, n].item() == pytest.approx(ref, abs=1e-7)
    assert min(gaps) > -1e-4, gaps  # never a worse optimum than scikit-learn's
    lo = torch.tensor([math.log(BOUNDS[k][0]) for k in ("lengthscale", "outputscale", "noise_var")])
    assert (theta >= lo.double() - 1e-12).all()


def test_n0_and_n1_use_the_hyperprior_means():
    prior = GPHyperPrior(**COARSE)
    torch.manual_seed(2)
    draw = prior.draw(5, 6)
    logp = mle_ii_log_predictive(prior, draw.x, draw.y)
    means = {
        k: torch.full((5,), c / r, dtype=torch.float64)
        for k, (c, r) in zip(("lengthscale", "outputscale", "noise_var"),
                             (prior.lengthscale_prior, prior.outputscale_prior, prior.noise_prior))
    }  # fmt: skip
    ref = prior.exact_log_predictive_given(draw.x, draw.y, means)
    assert torch.allclose(logp[:, :2], ref[:, :2], atol=1e-10)
    assert not torch.allclose(logp[:, 2:], ref[:, 2:], atol=1e-3)


def test_mle_ii_loses_to_the_exact_predictive_at_small_n_and_the_oracle_wins():
    prior = GPHyperPrior(**COARSE)
    torch.manual_seed(0)
    draw = prior.draw(64, 12)
    out = gp_baselines(prior, draw.x, draw.y, draw.params)
    assert set(out) == {"mle_ii", "true_hyperparameters"}
    assert all(v.shape == (64, 12) and v.dtype == torch.float64 for v in out.values())
    exact = prior.exact_log_predictive(draw.x, draw.y).double()
    # positive = the exact predictive (hyperparameters integrated out) scores better
    mle_gap = (exact - out["mle_ii"])[:, 2:6].mean().item()
    oracle_gap = (exact - out["true_hyperparameters"]).mean().item()
    assert mle_gap > 0.5, mle_gap  # plug-in fits on 2..5 points are overconfident
    assert -0.5 < oracle_gap < -0.02, oracle_gap  # knowing theta helps, but not by much
    # at n = 0 the true-hyperparameter GP is the exact prior predictive of that theta
    assert torch.allclose(out["true_hyperparameters"],
                          prior.exact_log_predictive_given(draw.x, draw.y, draw.params))  # fmt: skip


def test_bad_input_is_named():
    prior = GPHyperPrior(input_dim=2, **COARSE)
    torch.manual_seed(0)
    draw = prior.draw(2, 5)
    with pytest.raises(TypeError, match="prior=GPPrior.*GPHyperPrior"):
        mle_ii_log_predictive(GPPrior(), draw.x, draw.y)
    with pytest.raises(ValueError, match="3 features.*input_dim is 2"):
        mle_ii_log_predictive(prior, torch.zeros(2, 5, 3), draw.y)
    with pytest.raises(ValueError, match=r"y of shape \(2, 4\)"):
        mle_ii_log_predictive(prior, draw.x, draw.y[:, :4])
    with pytest.raises(ValueError, match=r"params lacks \['noise_var'\]"):
        gp_baselines(
            prior, draw.x, draw.y, {k: v for k, v in draw.params.items() if k != "noise_var"}
        )
    assert baselines_for(prior) is gp_baselines and baselines_for(GPPrior()) is None


class _WideGauss(FakeModel):
    """A context-free N(0, 5^2) predictive: a stand-in PFN with a density head."""

    def forward(self, x_or_y, y=None):
        y = x_or_y if y is None else y
        return torch.stack([torch.zeros_like(y), torch.full_like(y, math.log(5.0))], -1)


def test_evaluate_reports_baselines_on_the_same_datasets():
    prior = GPHyperPrior(**COARSE)
    cfg = RegressionConfig(input_dim=1, **SMALL)
    model = _WideGauss(prior, cfg, "gauss")
    kw = {"num_datasets": 24, "seq_len": 8, "batch_size": 16, "seed": 3}
    res = evaluate(model, prior, **kw)
    plain = evaluate(model, prior, baselines=False, **kw)
    assert plain["baselines"] is None and plain["baselines_time_s"] is None
    for key in ("nll", "exact_nll", "prior_predictive_nll"):  # the same datasets either way
        assert res[key] == plain[key]
    base = res["baselines"]
    assert set(base) == {"mle_ii", "true_hyperparameters"} and res["baselines_time_s"] > 0
    # the datasets are prior.draw's for this seed, batch by batch: recompute the baselines
    with torch.random.fork_rng():
        torch.manual_seed(3)
        draws = [prior.draw(16, 8), prior.draw(8, 8)]
    x = torch.cat([d.x for d in draws])
    y = torch.cat([d.y for d in draws])
    params = {k: torch.cat([d.params[k] for d in draws]) for k in draws[0].params}
    ref = gp_baselines(prior, x, y, params)
    exact = prior.exact_log_predictive(x, y).double()
    for name, logp in ref.items():
        assert base[name]["nll"]["mean"] == pytest.approx(-logp.mean().item(), rel=1e-9)
        per_n = (exact - logp).mean(0).tolist()
        assert base[name]["excess_nll"]["per_n"] == pytest.approx(per_n, rel=1e-6, abs=1e-6)
    assert res["exact_nll"]["mean"] == pytest.approx(-exact.mean().item(), rel=1e-6)
    # other priors have no baselines
    other = evaluate(_WideGauss(GPPrior(), cfg, "gauss"), GPPrior(), num_datasets=8, seq_len=4)
    assert other["baselines"] is None
    assert np.isfinite(base["mle_ii"]["excess_nll"]["mean"])


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_newtons_gradient_and_hessian_are_the_log_marginal_likelihoods(kernel):
    from pfn_transformers.evaluation.gp_baselines import _distance, _log_ml_at, _log_ml_derivatives

    prior = GPHyperPrior(input_dim=2, kernel=kernel, **COARSE)
    torch.manual_seed(0)
    draw = prior.draw(3, 9)
    dist, y = _distance(draw.x.double()), draw.y.double()
    theta = torch.tensor([[-1.0, 2.0, 0.5], [0.3, 1.0, -3.0], [-2.0, 3.0, 1.0]]).double()
    g, H = _log_ml_derivatives(prior, dist, y, theta)
    for i in range(3):

        def f(t, i=i):
            return _log_ml_at(prior, dist[i : i + 1], y[i : i + 1], t[None]).sum()

        assert torch.allclose(g[i], torch.func.grad(f)(theta[i]), atol=1e-9)
        assert torch.allclose(H[i], torch.func.hessian(f)(theta[i]), atol=1e-8)
