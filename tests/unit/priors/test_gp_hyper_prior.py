"""``priors.GPHyperPrior``: draws, hyperpriors, and its quadrature posterior predictive.

The quadrature reference is checked three ways: refining the rule (twice the nodes per
dimension) moves the mean NLL by < 0.001 nats at n = 0, 1, 5, 30; with near point-mass
hyperpriors it is the fixed-hyperparameter GP; and it agrees with a Monte-Carlo integral over
hyperparameters drawn from the prior (importance weights = marginal likelihoods).
"""

from __future__ import annotations

import math

import pytest
import torch

from pfn_transformers import describe_generator, sample_batch
from pfn_transformers.data.base import has_exact_posterior
from pfn_transformers.prior_check import prior_check
from pfn_transformers.priors import GPHyperPrior, GPPrior
from pfn_transformers.priors._common import sequential_gaussian_moments


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("input_dim", [1, 5])
@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_draw_shapes_dtypes_devices_and_hyperparameters(kernel, input_dim):
    prior = GPHyperPrior(input_dim=input_dim, kernel=kernel)
    assert has_exact_posterior(prior)
    out = prior.draw(6, 9)
    assert out.x.shape == (6, 9, input_dim) and out.x.dtype == torch.float32
    assert out.y.shape == (6, 9) and out.y.dtype == torch.float32 and torch.isfinite(out.y).all()
    assert ((out.x >= 0) & (out.x <= 1)).all()
    assert set(out.params) == {"lengthscale", "outputscale", "noise_var"}
    for value in out.params.values():
        assert value.shape == (6,) and value.dtype == torch.float64 and (value > 0).all()
    x, y = sample_batch(prior, 4, 7)
    assert x.shape == (4, 7, input_dim) and y.shape == (4, 7)
    spec = describe_generator(prior)
    assert (spec.supervised, spec.input_dim, spec.target_type) == (True, input_dim, "continuous")
    meta = prior.draw(3, 5, device="meta")  # every tensor is made on the requested device
    assert meta.x.device.type == meta.y.device.type == "meta"
    assert all(v.device.type == "meta" for v in meta.params.values())
    lo, hi = prior.suggested_y_range
    assert lo < 0 < hi


def test_hyperpriors_are_gamma_concentration_rate():
    """Sample moments and KS distance of the drawn hyperparameters against
    Gamma(concentration, rate) (scipy's scale = 1 / rate)."""
    from scipy import stats

    prior = GPHyperPrior()
    params = prior.draw(20_000, 1).params
    for name, (c, r) in (
        ("lengthscale", (3.0, 6.0)),
        ("outputscale", (2.0, 0.15)),
        ("noise_var", (1.1, 0.05)),
    ):
        v = params[name]
        mean, var = c / r, c / r**2
        assert float(v.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / v.numel())), name
        assert float(v.var()) == pytest.approx(var, rel=0.08), name
        ks = stats.kstest(v.numpy(), stats.gamma(c, scale=1 / r).cdf)
        assert ks.pvalue > 1e-3, (name, ks)


def test_reported_hyperparameters_are_the_ones_each_dataset_was_drawn_with():
    """E[y^2 | outputscale, noise] = outputscale + noise: a dataset's own values explain its
    scale (shuffled values would not)."""
    out = GPHyperPrior().draw(20_000, 1)
    total = out.params["outputscale"] + out.params["noise_var"]
    ratio = out.y[:, 0].double() ** 2 / total
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.04)
    shuffled = out.y[:, 0].double() ** 2 / total[torch.randperm(total.numel())]
    assert abs(float(shuffled.mean()) - 1.0) > 0.3


def test_refining_the_quadrature_moves_the_mean_nll_by_under_a_millinat():
    base = GPHyperPrior()
    fine = GPHyperPrior(quadrature_nodes=[2 * n for n in base.quadrature_nodes])
    x, y = base.generate_batch(48, 31)
    a = base.exact_log_predictive(x, y).double()
    b = fine.exact_log_predictive(x, y).double()
    diff = (a - b).mean(0)
    for n in (0, 1, 5, 30):
        assert abs(float(diff[n])) < 1e-3, (n, diff.tolist())
    assert float(diff.abs().max()) < 1e-3


def _matern52(x, lengthscale):
    d = (x[:, :, None] - x[:, None]).pow(2).sum(-1).sqrt()
    t = math.sqrt(5) * d / lengthscale
    return (1 + t + t * t / 3) * torch.exp(-t)


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_point_mass_hyperpriors_give_the_fixed_gp(kernel):
    ls, scale, noise, c = 0.2, 1.0, 0.05, 1e5
    prior = GPHyperPrior(
        kernel=kernel,
        lengthscale_prior=[c, c / ls],
        outputscale_prior=[c, c / scale],
        noise_prior=[c, c / noise],
    )
    fixed = GPPrior(lengthscale=ls, outputscale=scale, noise_var=noise)
    x, y = fixed.generate_batch(8, 20)
    got = prior.exact_log_predictive(x, y).double()
    if kernel == "rbf":
        want = fixed.exact_log_predictive(x, y).double()
    else:
        xd = x.double()
        cov = scale * _matern52(xd, ls) + (noise + fixed.jitter) * torch.eye(20)
        mean, std = sequential_gaussian_moments(cov, y.double())
        want = torch.distributions.Normal(mean, std).log_prob(y.double())
    assert torch.allclose(got, want, atol=3e-3), (got - want).abs().max()


def test_quadrature_matches_monte_carlo_over_the_hyperprior():
    """An independent route: hyperparameters drawn from the Gamma priors, each weighted by its
    exact GP marginal likelihood of D_<n (self-normalised importance sampling)."""
    prior = GPHyperPrior()
    x, y = prior.generate_batch(4, 6)
    got = prior.exact_log_predictive(x, y).double()
    gen = torch.Generator().manual_seed(1)
    m = 40_000

    def gamma(c, r):
        return torch._standard_gamma(torch.full((m,), c, dtype=torch.float64), generator=gen) / r

    ls, scale, noise = gamma(3.0, 6.0), gamma(2.0, 0.15), gamma(1.1, 0.05)
    for b in range(4):
        xd, yd = x[b].double(), y[b].double()
        corr = _matern52(xd[None].expand(m, -1, -1), ls[:, None, None])
        cov = scale[:, None, None] * corr + (noise + prior.jitter * scale)[
            :, None, None
        ] * torch.eye(6)
        mean, std = sequential_gaussian_moments(cov, yd.expand(m, -1))
        lp = torch.distributions.Normal(mean, std).log_prob(yd)  # [M, S]
        prefix = lp.cumsum(-1) - lp
        want = torch.logsumexp(prefix + lp, 0) - torch.logsumexp(prefix, 0)
        assert torch.allclose(got[b], want, atol=0.03), (got[b], want)


def test_cdf_mean_and_density_agree():
    prior = GPHyperPrior(input_dim=2, kernel="rbf")
    x, y = prior.generate_batch(3, 6)
    v = torch.linspace(-60, 60, 2401, dtype=torch.float64)
    cdf = prior.exact_predictive_cdf(x, y, v)
    assert (cdf.diff(dim=-1) >= -1e-12).all()
    assert torch.allclose(cdf[..., -1], torch.ones(3, 6, dtype=torch.float64), atol=1e-4)
    dens = cdf.diff(dim=-1) / (v[1] - v[0])
    mid = 0.5 * (v[1:] + v[:-1])
    mean = (dens * mid).sum(-1) * (v[1] - v[0])
    assert torch.allclose(prior.exact_predictive_mean(x, y).double(), mean, atol=2e-2)
    for n in (0, 5):
        y2 = y.clone()
        y2[:, n] = 1.5
        at = int(torch.searchsorted(mid, torch.tensor(1.5, dtype=torch.float64)))
        got = prior.exact_log_predictive(x, y2)[:, n].double().exp()
        assert torch.allclose(got, dens[:, n, at], rtol=2e-2)


def test_prior_check_pit_passes_for_the_quadrature_reference():
    rep = prior_check(GPHyperPrior(), speed=False, num_datasets=96, seq_len=12)
    assert rep["has_exact"] is True
    assert rep["exact"]["calibrated"], rep["exact"]["flags"]
    assert rep["exact"]["log_predictive_mismatch"] < 1e-3


class _WrongNoiseReference(GPHyperPrior):
    """Draws with the default noise prior (mean 22) but integrates against one ten times
    smaller (mean 2.2): a deliberately wrong reference."""

    def __init__(self) -> None:
        super().__init__(noise_prior=(1.1, 0.5), quadrature_nodes=(12, 16, 12))
        self._truth = GPHyperPrior()

    def draw(self, batch_size, seq_len, device=None):
        return self._truth.draw(batch_size, seq_len, device)


def test_prior_check_pit_fails_for_a_wrong_reference():
    rep = prior_check(_WrongNoiseReference(), speed=False, num_datasets=96, seq_len=12)
    assert rep["exact"]["calibrated"] is False, rep["exact"]
    assert any("exact posterior formula fails its PIT check" in w for w in rep["warnings"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel": "matern32"}, "kernel='matern32'"),
        (
            {"lengthscale_prior": [3.0, -1.0]},
            r"lengthscale_prior=\[3.0, -1.0\].*concentration, rate",
        ),
        ({"noise_prior": [1.0]}, "noise_prior"),
        ({"quadrature_nodes": [4, 4]}, "quadrature_nodes"),
        ({"input_dim": 0}, "input_dim"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPHyperPrior(**kwargs)


def test_cli_trains_and_evaluates_on_the_hierarchical_gp(tmp_path):
    import json

    from tests.cli_helpers import TINY, run_dirs, run_pfn

    args = ["train", "prior=gp_hyper", "prior.quadrature_nodes=[12,16,12]", *TINY,
            "training.num_steps=5", "eval.num_datasets=16", "eval.batch_size=16"]  # fmt: skip
    run_pfn(args, tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    ev = json.loads((run / "eval.json").read_text())
    assert ev["prior"] == "GPHyperPrior" and ev["has_exact"] is True
    assert ev["excess_nll"]["mean"] is not None and ev["floor_nll"] is not None


def test_predictive_given_known_hyperparameters_matches_direct_conditioning():
    """The one-Cholesky sequential predictive equals conditioning the GP on D_<n directly."""
    torch.manual_seed(3)
    prior = GPHyperPrior(input_dim=2)
    draw = prior.draw(4, 9)
    logp = prior.exact_log_predictive_given(draw.x, draw.y, draw.params)
    for b in range(4):
        x, y = draw.x[b].double(), draw.y[b].double()
        ls, s, v = (draw.params[k][b] for k in ("lengthscale", "outputscale", "noise_var"))
        cov = s * prior.correlation(x, x, ls) + (v + prior.jitter * s) * torch.eye(9).double()
        for n in (0, 1, 4, 8):
            k_q = cov[n, :n]
            mean = k_q @ torch.linalg.solve(cov[:n, :n], y[:n]) if n else torch.zeros(())
            var = cov[n, n] - (k_q @ torch.linalg.solve(cov[:n, :n], k_q) if n else 0.0)
            ref = torch.distributions.Normal(mean, var.sqrt()).log_prob(y[n])
            assert logp[b, n].item() == pytest.approx(ref.item(), abs=1e-8)
