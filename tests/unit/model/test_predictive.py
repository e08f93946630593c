"""``model.predictive(...)``: torch.distributions objects over a PFN's predictions.

The bar distribution is checked against the bucketizer's own numbers (it must honour the
tails exactly as training does) and against numerical integration of its density (moments,
cdf, entropy), its sampler against its cdf (KS), and ``rsample``'s gradients against the
analytic mean's.
"""

from __future__ import annotations

import pytest
import scipy.stats
import torch
from torch.distributions import Categorical, Distribution

from pfn_transformers import (
    PFN,
    BarDistribution,
    Bucketizer,
    ClassificationConfig,
    RegressionConfig,
    UnsupervisedConfig,
)

SUPPORTS = ["bounded", "unbounded"]
BORDERS = [-2.0, -1.0, -0.25, 0.0, 0.5, 1.5, 3.0]  # uneven widths on purpose


def _dist(support: str, n: int = 3, seed: int = 0, tail_boost: float = 1.0) -> BarDistribution:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(BORDERS) - 1, generator=g, dtype=torch.float64)
    logits[:, [0, -1]] += tail_boost  # heavy tails, so they matter in every check
    return BarDistribution(logits, Bucketizer(BORDERS, support))


def _grid(d: BarDistribution, n: int = 400_001) -> torch.Tensor:
    b = d.bucketizer.borders.double()
    pad = 12 * float(d.bucketizer.tail_scales.max()) if d.bucketizer.support == "unbounded" else 0
    return torch.linspace(float(b[0]) - pad, float(b[-1]) + pad, n, dtype=torch.float64)


@pytest.mark.parametrize("support", SUPPORTS)
def test_bar_distribution_gives_the_bucketizers_numbers(support: str) -> None:
    d = _dist(support)
    bz, logits = d.bucketizer, d.logits
    y = torch.tensor([[-3.5], [-1.9], [0.1], [2.9], [5.0]], dtype=torch.float64)
    if support == "bounded":
        y = y.clamp(-2.0, 3.0)
    assert isinstance(d, Distribution)
    assert d.batch_shape == (3,) and d.event_shape == ()
    assert torch.equal(d.log_prob(y), bz.log_prob(logits, y))
    assert torch.equal(d.cdf(y), bz.cdf(logits, y))
    p = torch.tensor([[0.01], [0.3], [0.999]], dtype=torch.float64)
    assert torch.equal(d.icdf(p), bz.icdf(logits, p))
    assert torch.equal(d.mean, bz.mean(logits))
    assert torch.equal(d.variance, bz.variance(logits))
    assert torch.allclose(d.stddev, bz.variance(logits).sqrt())
    assert torch.allclose(d.probs.sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("support", SUPPORTS)
def test_moments_cdf_and_entropy_match_numerical_integration(support: str) -> None:
    d = _dist(support)
    y = _grid(d)
    dens = d.log_prob(y.unsqueeze(-1)).exp().T  # [3, G]
    mass = torch.trapezoid(dens, y, dim=-1)
    assert torch.allclose(mass, torch.ones(3, dtype=torch.float64), atol=1e-4)
    mean = torch.trapezoid(dens * y, y, dim=-1)
    assert torch.allclose(d.mean, mean, atol=1e-4)
    var = torch.trapezoid(dens * (y - mean[:, None]) ** 2, y, dim=-1)
    assert torch.allclose(d.variance, var, rtol=1e-3)
    logd = torch.where(dens > 0, dens.log(), torch.zeros_like(dens))
    entropy = -torch.trapezoid(dens * logd, y, dim=-1)
    assert torch.allclose(d.entropy(), entropy, atol=1e-3)
    cum = torch.cumulative_trapezoid(dens, y, dim=-1)
    for j in (40_000, 200_000, 360_000):
        assert torch.allclose(d.cdf(y[j]), cum[:, j - 1], atol=1e-4)


@pytest.mark.parametrize("support", SUPPORTS)
def test_quantiles_intervals_and_icdf_invert_the_cdf(support: str) -> None:
    d = _dist(support)
    q = torch.tensor([0.001, 0.05, 0.5, 0.95, 0.999], dtype=torch.float64)
    quant = d.quantile(q)  # [Q, batch]
    assert quant.shape == (5, 3)
    assert torch.allclose(d.cdf(quant), q[:, None].expand(5, 3), atol=1e-9)
    assert d.quantile(0.5).shape == (3,)
    lo, hi = d.interval(0.9)
    assert torch.all(lo < hi)
    assert torch.allclose(d.cdf(hi) - d.cdf(lo), torch.full((3,), 0.9, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"interval level=1.5 is not valid.*\(0, 1\)"):
        d.interval(1.5)
    with pytest.raises(ValueError, match=r"quantile q=.*every level must lie in \[0, 1\]"):
        d.quantile([0.5, 2.0])


@pytest.mark.parametrize("support", SUPPORTS)
def test_samples_follow_the_cdf_and_rsample_carries_gradients(support: str) -> None:
    d = _dist(support, n=2)
    g = torch.Generator().manual_seed(1)
    draws = d.sample((4000,), generator=g)
    assert draws.shape == (4000, 2)
    again = d.sample((4000,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    for j in range(2):
        cdf = lambda v, j=j: d.cdf(torch.as_tensor(v).unsqueeze(-1))[..., j].numpy()  # noqa: E731
        assert scipy.stats.kstest(draws[:, j].numpy(), cdf).pvalue > 1e-3

    logits = d.logits.clone().requires_grad_(True)
    rd = BarDistribution(logits, d.bucketizer)
    assert rd.has_rsample
    torch.manual_seed(0)
    r = rd.rsample((20_000,))
    assert r.shape == (20_000, 2) and r.requires_grad
    cdf0 = lambda v: d.cdf(torch.as_tensor(v).unsqueeze(-1))[..., 0].numpy()  # noqa: E731
    assert scipy.stats.kstest(r[:, 0].detach().numpy(), cdf0).pvalue > 1e-3
    (grad_mc,) = torch.autograd.grad(r.mean(0).sum(), logits)
    exact = BarDistribution(d.logits.clone().requires_grad_(True), d.bucketizer)
    (grad_exact,) = torch.autograd.grad(exact.mean.sum(), exact.logits)
    assert torch.allclose(grad_mc, grad_exact, atol=0.05), (grad_mc, grad_exact)


def test_support_follows_the_bucketizer_and_bounded_values_outside_are_refused() -> None:
    unb = _dist("unbounded")
    assert unb.support.check(torch.tensor(1e6))
    assert torch.isfinite(unb.log_prob(torch.tensor(50.0))).all()
    b = _dist("bounded")
    assert bool(b.support.check(torch.tensor(0.0))) and not bool(b.support.check(torch.tensor(3.5)))
    with pytest.raises(ValueError, match="support"):
        b.log_prob(torch.tensor(3.5))
    quiet = BarDistribution(b.logits, b.bucketizer, validate_args=False)
    assert torch.isneginf(quiet.log_prob(torch.tensor(3.5))).all()
    ex = b.expand((4, 3))
    assert ex.batch_shape == (4, 3) and torch.equal(ex.mean[0], b.mean)


def test_bad_arguments_name_what_is_wrong() -> None:
    bz = Bucketizer(BORDERS, "unbounded")
    with pytest.raises(ValueError, match=r"last dimension must equal.*num_buckets=6"):
        BarDistribution(torch.zeros(2, 5), bz)
    with pytest.raises(TypeError, match="pass the model's Bucketizer"):
        BarDistribution(torch.zeros(2, 6), object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- model.predictive
def _regression(mask: str = "autoregressive-pfn") -> torch.nn.Module:
    cfg = RegressionConfig(
        d_model=32, n_layers=2, n_heads=4, input_dim=2, mask_type=mask,
        y_min=-3.0, y_max=3.0, d_vocab=24, init_range=0.2,
    )  # fmt: skip
    return PFN(cfg).eval()


@pytest.mark.parametrize("mask", ["autoregressive-pfn", "gpt2"])
def test_supervised_predictive_at_queries_is_the_predict_distribution(mask: str) -> None:
    model = _regression(mask)
    xc, yc, xq = torch.randn(3, 9, 2), torch.randn(3, 9), torch.randn(3, 5, 2)
    dist = model.predictive(xc, yc, xq)
    assert isinstance(dist, BarDistribution)
    assert dist.batch_shape == (3, 5)
    logits = model.predict(xc, yc, xq)
    ref = BarDistribution(logits, model.bucketizer)
    yq = torch.randn(3, 5)
    assert torch.allclose(dist.log_prob(yq), ref.log_prob(yq), atol=1e-5)
    assert torch.allclose(dist.mean, model.point_prediction(logits), atol=1e-5)
    lo, hi = dist.interval(0.9)
    assert lo.shape == hi.shape == (3, 5)
    assert torch.allclose(lo, model.bucketizer.quantile(logits, 0.05), atol=1e-4)


def test_teacher_forced_predictive_scores_like_log_predictive() -> None:
    model = _regression()
    x, y = torch.randn(2, 7, 2), torch.randn(2, 7)
    dist = model.predictive(x, y)
    assert dist.batch_shape == (2, 7)
    assert torch.allclose(dist.log_prob(y), model.log_predictive(x, y), atol=1e-6)


def test_unsupervised_predictive_aligned_and_next_element() -> None:
    cfg = UnsupervisedConfig(
        d_model=32, n_layers=2, n_heads=4, input_type="continuous", y_min=-3.0, y_max=3.0,
        init_range=0.2,
    )  # fmt: skip
    model = PFN(cfg).eval()
    y = torch.randn(2, 6)
    dist = model.predictive(y)
    assert dist.batch_shape == (2, 6)
    assert torch.allclose(dist.log_prob(y), model.log_predictive(y), atol=1e-6)
    nxt = model.predictive(y, next_element=True)
    assert nxt.batch_shape == (2, 1)
    with torch.no_grad():
        last = model(y)[:, -1:]
    assert torch.allclose(nxt.mean, model.point_prediction(last), atol=1e-6)

    tokens = UnsupervisedConfig(
        d_model=32, n_layers=1, n_heads=4, input_type="discrete", d_vocab=5, init_range=0.2
    )
    tmodel = PFN(tokens).eval()
    seq = torch.randint(0, 5, (2, 4))
    cat = tmodel.predictive(seq)
    assert isinstance(cat, Categorical) and cat.batch_shape == (2, 4)
    assert torch.allclose(cat.log_prob(seq), tmodel.log_predictive(seq), atol=1e-6)
    with pytest.raises(ValueError, match=r"unsupervised model takes predictive\(y\)"):
        tmodel.predictive(seq, seq)


def test_classification_predictive_is_categorical_and_point_heads_are_refused() -> None:
    cfg = ClassificationConfig(d_model=32, n_layers=2, n_heads=4, input_dim=2, num_classes=3)
    model = PFN(cfg).eval()
    xc, yc, xq = torch.randn(2, 6, 2), torch.randint(0, 3, (2, 6)), torch.randn(2, 4, 2)
    dist = model.predictive(xc, yc, xq)
    assert isinstance(dist, Categorical) and dist.batch_shape == (2, 4)
    assert torch.allclose(dist.probs, torch.softmax(model.predict(xc, yc, xq), -1), atol=1e-5)

    point = PFN(RegressionConfig(d_model=32, n_layers=1, n_heads=4, input_dim=2,
                                 prediction_type="point"))  # fmt: skip
    with pytest.raises(ValueError, match=r"prediction_type='point'.*not a predictive distribution"):
        point.predictive(xc, yc.float(), xq)
    with pytest.raises(ValueError, match=r"needs predictive\(x_context, y_context, x_query\)"):
        model.predictive(xc)
    with pytest.raises(ValueError, match="next_element=True is for unsupervised models"):
        model.predictive(xc, yc, xq, next_element=True)
