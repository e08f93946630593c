"""Bar distribution: the density, its tails and everything derived from it must agree.

Each quantity (log density, cdf, icdf, moments, samples) is checked against an independent
computation (numerical integration, Monte Carlo, a KS test), because a head whose loss and
sampler disagree trains fine and then predicts the wrong thing.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import scipy.stats
import torch

from pfn_transformers.model.bucketizer import Bucketizer, estimate_riemann_borders

# "unbounded-wide": tails at least half the inner range (tail_scale=0.5: the left tail takes
# that floor, the right keeps its edge-width scale), so each check also covers the floor
SUPPORTS = ["bounded", "unbounded", "unbounded-wide"]
BORDERS = [-2.0, -1.0, -0.25, 0.0, 0.5, 1.5, 3.0]  # uneven widths on purpose


def _make(support: str) -> Bucketizer:
    if support == "unbounded-wide":
        return Bucketizer(BORDERS, support="unbounded", tail_scale=0.5)
    return Bucketizer(BORDERS, support=support)


def _logits(k: int, n: int = 3, seed: int = 0, tail_boost: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    logits[:, [0, -1]] += tail_boost
    return logits


def _grid(bz: Bucketizer, n: int = 400_001) -> torch.Tensor:
    """y grid wide enough that the unbounded tails have < 1e-12 mass beyond it."""
    b = bz.borders.double()
    pad = 12 * float(bz.tail_scales.max()) if bz.support == "unbounded" else 0.0
    return torch.linspace(float(b[0]) - pad, float(b[-1]) + pad, n, dtype=torch.float64)


# ---------------------------------------------------------------------------- geometry
def test_uniform_borders_widths_and_buffer() -> None:
    bz = Bucketizer.uniform(-1.0, 1.0, 4, support="bounded")
    assert bz.borders.dtype == torch.float32
    assert torch.equal(bz.borders, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert bz.num_buckets == 4
    assert torch.allclose(bz.widths, torch.full((4,), 0.5))
    assert torch.allclose(bz.centers, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert "borders" in bz.state_dict()
    other = Bucketizer.uniform(0.0, 1.0, 4, support="bounded")
    other.load_state_dict(bz.state_dict())
    assert torch.equal(other.borders, bz.borders)
    idx = torch.tensor([0, 3, 1])
    assert torch.equal(bz.get_y_values(idx), bz.centers[idx])


def test_bucketize_borders_inside_outside() -> None:
    bz = Bucketizer.uniform(-1.0, 1.0, 4, support="bounded")
    y = torch.tensor([-1.0, -0.5, 0.0, 1.0, -0.7, 0.3, 0.99, -5.0, 7.0])
    assert bz.bucketize(y).tolist() == [0, 1, 2, 3, 0, 2, 3, 0, 3]
    assert bz.bucketize(y).dtype == torch.long
    assert bz.bucketize(torch.tensor(0.25, dtype=torch.float64)).item() == 2


def test_unbounded_tail_construction() -> None:
    """Tails follow FullSupportBarDistribution: half of each edge mass beyond the border."""
    bz = Bucketizer(BORDERS)
    b = bz.borders.double()
    w = bz.widths.double()
    scales = w[[0, -1]] / torch.distributions.HalfNormal(1.0).icdf(torch.tensor(0.5)).item()
    assert torch.allclose(bz.tail_scales.double(), scales, rtol=1e-6)
    # tail centers are the half-normal means and lie beyond the outer borders
    c = bz.centers.double()
    assert c[0] == pytest.approx(float(b[1] - scales[0] * math.sqrt(2 / math.pi)), rel=1e-6)
    assert c[-1] == pytest.approx(float(b[-2] + scales[1] * math.sqrt(2 / math.pi)), rel=1e-6)
    assert c[0] < b[0] and c[-1] > b[-1]
    assert torch.allclose(c[1:-1], (b[1:-2] + b[2:-1]) / 2)

    logits = _logits(bz.num_buckets, n=1)[0]
    p = logits.softmax(-1)
    assert bz.cdf(logits, b[0]).item() == pytest.approx(p[0].item() / 2, rel=1e-6)
    assert 1 - bz.cdf(logits, b[-1]).item() == pytest.approx(p[-1].item() / 2, rel=1e-6)
    y = torch.tensor([-9.0, -1.5, 2.0, 11.0], dtype=torch.float64)
    hn_left = torch.distributions.HalfNormal(scales[0])
    hn_right = torch.distributions.HalfNormal(scales[1])
    expected = torch.stack(
        [
            p[0].log() + hn_left.log_prob(b[1] - y[0]),
            p[0].log() + hn_left.log_prob(b[1] - y[1]),
            p[-1].log() + hn_right.log_prob(y[2] - b[-2]),
            p[-1].log() + hn_right.log_prob(y[3] - b[-2]),
        ]
    )
    assert torch.allclose(bz.log_prob(logits, y), expected, rtol=1e-6)


def test_tail_scale_floors_the_tails_at_a_share_of_the_inner_range() -> None:
    """Many narrow buckets give a narrow edge, so without the floor a target just past the
    range costs tens of nats; with it the tail scale is tail_scale * inner range."""
    narrow = Bucketizer.uniform(-1.0, 1.0, 256)
    wide = Bucketizer.uniform(-1.0, 1.0, 256, tail_scale=0.05)
    inner = float(narrow.borders[-2] - narrow.borders[1])
    assert torch.allclose(wide.tail_scales, torch.full((2,), 0.05 * inner))
    assert float(narrow.tail_scales.max()) < 0.02 * inner
    logits = torch.zeros(256)
    past = torch.tensor(1.25)  # an eighth of the range beyond the right border
    assert float(narrow.log_prob(logits, past)) < -60
    assert float(wide.log_prob(logits, past)) > -10
    # the floor only widens: a wide edge bucket keeps its own scale
    coarse = Bucketizer.uniform(-1.0, 1.0, 4, tail_scale=0.05)
    assert torch.equal(coarse.tail_scales, Bucketizer.uniform(-1.0, 1.0, 4).tail_scales)


@pytest.mark.parametrize("support", SUPPORTS)
def test_density_integrates_to_one(support: str) -> None:
    bz = _make(support)
    logits = _logits(bz.num_buckets, tail_boost=1.0)
    y = _grid(bz)
    density = bz.log_prob(logits[:, None], y).exp()
    assert torch.allclose(
        torch.trapezoid(density, y, dim=-1), torch.ones(3, dtype=torch.float64), atol=1e-3
    )


def test_bounded_outside_support() -> None:
    bz = Bucketizer(BORDERS, support="bounded")
    logits = _logits(bz.num_buckets, n=1)[0]
    y = torch.tensor([-2.5, -2.0, 3.0, 3.5], dtype=torch.float64)
    lp = bz.log_prob(logits, y)
    assert lp[0] == -math.inf and lp[3] == -math.inf
    assert torch.isfinite(lp[1:3]).all()
    assert bz.cdf(logits, y).tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0], abs=1e-12)
    assert bz.icdf(logits, torch.tensor([0.0, 1.0])).tolist() == pytest.approx([-2.0, 3.0])


@pytest.mark.parametrize("support", SUPPORTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_bucket_densities_equal_log_prob_at_centers(support: str, dtype: torch.dtype) -> None:
    bz = _make(support)
    logits = _logits(bz.num_buckets, n=4).to(dtype)
    lbd = bz.log_bucket_densities(logits)
    assert lbd.shape == (4, bz.num_buckets)
    assert torch.equal(lbd, bz.log_prob(logits[:, None, :], bz.centers))
    # inner buckets are mass / width; unbounded tails are not (the old bug ignored them)
    inner = logits.log_softmax(-1) - bz.widths.to(dtype).log()
    assert torch.allclose(lbd[:, 1:-1], inner[:, 1:-1])
    if support != "bounded":
        assert not torch.allclose(lbd[:, [0, -1]], inner[:, [0, -1]])


# ---------------------------------------------------------------------------- cdf family
@pytest.mark.parametrize("support", SUPPORTS)
def test_cdf_icdf_quantile(support: str) -> None:
    bz = _make(support)
    logits = _logits(bz.num_buckets, tail_boost=1.0)
    y = _grid(bz, 200_001)
    density = bz.log_prob(logits[:, None], y).exp()
    integral = torch.cumulative_trapezoid(density, y, dim=-1)
    cdf = bz.cdf(logits[:, None], y)
    assert (cdf[:, 1:] - integral).abs().max() < 1e-3
    assert cdf[:, 0].max() < 1e-9 and (cdf[:, -1] - 1).abs().max() < 1e-9
    assert (cdf.diff(dim=-1) >= 0).all()

    p = torch.linspace(0.001, 0.999, 101, dtype=torch.float64)
    y_p = bz.icdf(logits[:, None], p)
    assert torch.allclose(bz.cdf(logits[:, None], y_p), p.expand(3, -1), atol=1e-9)
    y_in = torch.linspace(-1.9, 2.9, 50, dtype=torch.float64)
    assert torch.allclose(bz.icdf(logits[:, None], bz.cdf(logits[:, None], y_in)), y_in, atol=1e-6)

    median = bz.quantile(logits, 0.5)
    assert median.shape == (3,)
    assert torch.allclose(bz.cdf(logits, median), torch.full((3,), 0.5, dtype=torch.float64))
    assert torch.allclose(bz.quantile(logits, torch.tensor(0.5)), median)
    assert torch.isnan(bz.icdf(logits, torch.tensor(1.5))).all()
    if support != "bounded":
        ends = bz.icdf(logits[:, None], torch.tensor([0.0, 1.0], dtype=torch.float64))
        assert (ends[:, 0] == -math.inf).all() and (ends[:, 1] == math.inf).all()
        far = bz.icdf(logits[:1], torch.tensor(1e-9, dtype=torch.float64))
        assert torch.isfinite(far).all() and far.item() < -2.0


def test_float32_icdf_far_tail_is_finite() -> None:
    bz = Bucketizer(BORDERS)
    logits = _logits(bz.num_buckets, n=1)[0].float()
    far = bz.icdf(logits, torch.tensor([1e-9, 1 - 1e-7]))
    assert far.dtype == torch.float32 and torch.isfinite(far).all()
    assert far[0] < -2.0 and far[1] > 3.0


@pytest.mark.parametrize("support", SUPPORTS)
def test_mean_variance_match_integral_and_samples(support: str) -> None:
    bz = _make(support)
    logits = _logits(bz.num_buckets, tail_boost=1.0)
    y = _grid(bz)
    density = bz.log_prob(logits[:, None], y).exp()
    mean = bz.mean(logits)
    var = bz.variance(logits)
    assert torch.allclose(mean, torch.trapezoid(density * y, y, dim=-1), atol=2e-3)
    num_var = torch.trapezoid(density * (y - mean[:, None]) ** 2, y, dim=-1)
    assert torch.allclose(var, num_var, rtol=2e-3)

    g = torch.Generator().manual_seed(1)
    samples = bz.sample(logits, (100_000,), generator=g)
    assert samples.shape == (100_000, 3)
    se = (var / samples.shape[0]).sqrt()
    assert ((samples.mean(0) - mean).abs() < 5 * se).all()
    assert torch.allclose(samples.var(0), var, rtol=0.05)


# ---------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("support", SUPPORTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_samples_match_cdf_ks(support: str, seed: int) -> None:
    bz = _make(support)
    logits = _logits(bz.num_buckets, n=1, seed=seed, tail_boost=1.5)[0]
    if support != "bounded":
        assert logits.softmax(-1)[[0, -1]].sum() > 0.3  # the tails matter in this test
    g = torch.Generator().manual_seed(100 + seed)
    samples = bz.sample(logits, (5000,), generator=g)
    if support != "bounded":  # tails really produce values beyond the borders
        assert (samples < bz.borders[0]).any() and (samples > bz.borders[-1]).any()
    else:
        assert samples.min() >= bz.borders[0] and samples.max() <= bz.borders[-1]

    def model_cdf(x):
        return bz.cdf(logits, torch.from_numpy(x)).numpy()

    assert scipy.stats.kstest(samples.numpy(), model_cdf).pvalue > 1e-3


def test_temperature_concentrates_on_argmax() -> None:
    bz = Bucketizer(BORDERS)
    logits = torch.tensor([[0.0, 0.5, 1.0, 0.9, 0.2, 0.1], [2.0, 0.0, 0.0, 0.0, 0.0, 1.9]])
    g = torch.Generator().manual_seed(0)
    cold = bz.bucketize(bz.sample(logits, (2000,), temperature=1e-3, generator=g))
    assert (cold == logits.argmax(-1)).all()
    greedy = bz.bucketize(bz.sample(logits, (10,), temperature=0.0, generator=g))
    assert (greedy == logits.argmax(-1)).all()
    warm = bz.bucketize(bz.sample(logits, (2000,), temperature=1.0, generator=g))
    assert (warm != logits.argmax(-1)).float().mean() > 0.3
    hot = bz.bucketize(bz.sample(logits, (4000,), temperature=100.0, generator=g))
    freq = torch.bincount(hot[:, 0], minlength=bz.num_buckets).float() / 4000
    assert torch.allclose(freq, torch.full((bz.num_buckets,), 1 / 6), atol=0.04)


# ---------------------------------------------------------------------------- API details
def test_broadcasting_dtypes_and_nll() -> None:
    bz = Bucketizer(BORDERS)
    k = bz.num_buckets
    logits = torch.randn(2, 5, k)
    y = torch.linspace(-4, 6, 5)
    for fn in (bz.log_prob, bz.cdf, bz.nll):
        assert fn(logits, y).shape == (2, 5)
    assert bz.icdf(logits, torch.full((5,), 0.3)).shape == (2, 5)
    assert bz.quantile(logits, 0.9).shape == (2, 5)
    assert bz.mean(logits).shape == bz.variance(logits).shape == (2, 5)
    assert bz.sample(logits, (7,)).shape == (7, 2, 5)
    assert torch.equal(bz.nll(logits, y), -bz.log_prob(logits, y))
    assert torch.equal(bz(logits, y), bz.nll(logits, y))
    # bf16 logits under autocast are computed in float32
    assert bz.log_prob(logits.bfloat16(), y).dtype == torch.float32
    assert torch.isnan(bz.log_prob(logits[0, 0], torch.tensor(math.nan)))


def test_nll_gradient_finite_far_outside() -> None:
    bz = Bucketizer(BORDERS)
    logits = torch.randn(4, bz.num_buckets, requires_grad=True)
    y = torch.tensor([-1e3, -1.5, 0.7, 1e3])
    loss = bz.nll(logits, y)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_from_config() -> None:
    cfg = SimpleNamespace(
        bucket_type="uniform", bucket_support="bounded", d_vocab=10, y_min=-3.0, y_max=2.0
    )
    bz = Bucketizer.from_config(cfg)
    assert bz.support == "bounded" and bz.num_buckets == 10
    assert bz.borders[0].item() == -3.0 and bz.borders[-1].item() == 2.0
    borders = estimate_riemann_borders(torch.randn(1000), 8)
    cfg = SimpleNamespace(
        bucket_type="riemann",
        bucket_support="unbounded",
        d_vocab=8,
        y_min=-5.0,
        y_max=5.0,
        riemann_borders=borders.tolist(),
    )
    bz = Bucketizer.from_config(cfg)
    assert bz.support == "unbounded" and torch.equal(bz.borders, borders)
    with pytest.raises(ValueError, match="bucket_type='quantile'"):
        Bucketizer.from_config(SimpleNamespace(bucket_type="quantile"))


# ---------------------------------------------------------------------------- Riemann
def test_riemann_borders_equal_mass_on_normal_samples() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(10_000, generator=g)
    borders = estimate_riemann_borders(data, 20)
    assert borders.shape == (21,) and borders.dtype == torch.float32
    assert (borders.diff() > 0).all()
    assert borders[0] <= data.min() and borders[-1] >= data.max()
    counts = torch.histogram(data, bins=borders.double().float()).hist
    assert (counts - 500).abs().max() <= 2
    # fresh samples from the same distribution land roughly evenly too
    fresh = torch.randn(20_000, generator=g)
    fresh_counts = torch.bincount(Bucketizer(borders).bucketize(fresh), minlength=20)
    assert (fresh_counts.float() / 20_000 - 0.05).abs().max() < 0.015
    assert torch.equal(estimate_riemann_borders(sample_data=data, num_buckets=20), borders)


@pytest.mark.parametrize(
    "data",
    [
        torch.cat(
            [torch.zeros(5000), torch.randn(5000, generator=torch.Generator().manual_seed(0))]
        ),
        torch.randint(0, 3, (1000,), generator=torch.Generator().manual_seed(0)).float(),
        torch.full((100,), 3.0),
        torch.tensor([1e6, 1e6 + 1.0, 1e6 + 2.0]),
    ],
    ids=["half-zeros", "three-values", "constant", "large-offset"],
)
def test_riemann_borders_heavy_ties(data: torch.Tensor) -> None:
    borders = estimate_riemann_borders(data, 50)
    assert borders.shape == (51,) and borders.dtype == torch.float32
    assert (borders.diff() > 0).all()
    assert borders.unique().numel() == 51
    assert borders[0] <= data.min() and borders[-1] >= data.max()
    Bucketizer(borders)  # usable as is


def test_riemann_borders_ignore_non_finite_and_reject_bad_input() -> None:
    data = torch.cat([torch.randn(500), torch.tensor([math.nan, math.inf])])
    assert torch.isfinite(estimate_riemann_borders(data, 10)).all()
    with pytest.raises(ValueError, match="num_buckets=0"):
        estimate_riemann_borders(torch.randn(10), 0)
    with pytest.raises(ValueError, match="sample_data"):
        estimate_riemann_borders(torch.tensor([math.nan]), 4)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"borders": [0.0, 1.0, 1.0, 2.0]}, r"borders=\[0.0, 1.0, 1.0, 2.0\].*borders\[2\]=1.0"),
        ({"borders": [0.0, 2.0, 1.0, 3.0]}, r"borders.*borders\[2\]=1.0 is not above"),
        ({"borders": [[0.0, 1.0]]}, r"borders \(shape \(1, 2\)\).*1-D"),
        ({"borders": [0.0, math.inf, 5.0, 6.0]}, r"borders=\[0.0, inf"),
        (
            {"borders": [0.0, 1.0, 2.0], "support": "unbounded"},
            r"borders=\[0.0, 1.0, 2.0\].*2 bucket",
        ),
        ({"borders": [0.0, 1.0, 2.0, 3.0], "tail_scale": -0.1}, r"tail_scale=-0.1.*>= 0"),
        (
            {"borders": [0.0, 1.0, 2.0], "support": "half"},
            r"support='half'.*'bounded', 'unbounded'",
        ),
    ],
)
def test_bad_input_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        Bucketizer(**kwargs)


def test_bad_input_errors_elsewhere() -> None:
    assert Bucketizer([0.0, 1.0, 2.0], support="bounded").num_buckets == 2
    with pytest.raises(ValueError, match="num_buckets=2.*unbounded"):
        Bucketizer.uniform(0.0, 1.0, 2)
    with pytest.raises(ValueError, match="y_min=1.0, y_max=0.0"):
        Bucketizer.uniform(1.0, 0.0, 10)
    bz = Bucketizer(BORDERS)
    with pytest.raises(ValueError, match=r"shape \(2, 5\).*num_buckets=6"):
        bz.log_prob(torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="temperature=-1"):
        bz.sample(torch.zeros(6), temperature=-1.0)
    with pytest.raises(ValueError, match="q=1.5"):
        bz.quantile(torch.zeros(6), 1.5)
