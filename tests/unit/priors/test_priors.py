"""The prior catalogue: shapes, dtypes, moments against each prior's definition, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn_transformers import describe_generator, sample_batch
from pfn_transformers.data.base import DataGenerator, has_exact_posterior
from pfn_transformers.priors import (
    CategoricalPrior,
    CoinFlipPrior,
    CSVDatasetPrior,
    GPPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
    MarkovChainPrior,
    MLPPrior,
    NormalInverseGammaPrior,
    PolynomialPrior,
    StepSinePrior,
    load_dataset_generator,
    read_table,
)

ALL_PRIORS = [
    (LinearRegressionPrior, {}, True),
    (LinearRegressionPrior, {"input_dim": 3, "features": "polynomial", "degree": 2}, True),
    (PolynomialPrior, {}, True),
    (GPPrior, {"input_dim": 2}, True),
    (MLPPrior, {"input_dim": 2}, False),
    (StepSinePrior, {"input_dim": 3}, False),
    (LogisticClassificationPrior, {"num_mc_samples": 64}, True),
    (CoinFlipPrior, {}, True),
    (CategoricalPrior, {}, True),
    (MarkovChainPrior, {}, True),
    (NormalInverseGammaPrior, {}, True),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(("cls", "kwargs", "exact"), ALL_PRIORS)
def test_shapes_dtypes_and_contract(cls, kwargs, exact):
    prior = cls(**kwargs)
    assert isinstance(prior, DataGenerator)
    assert has_exact_posterior(prior) == exact
    x, y = prior.generate_batch(5, 7)
    assert sample_batch(prior, 5, 7)[1].shape == (5, 7)
    spec = describe_generator(prior)  # attributes and one sample agree
    assert (spec.supervised, spec.input_dim) == (prior.input_dim is not None, prior.input_dim)
    assert (spec.target_type, spec.num_classes) == (prior.target_type, prior.num_classes)
    if prior.input_dim is None:
        assert x is None
    else:
        assert x.dtype == torch.float32 and x.shape == (5, 7, prior.input_dim)
    if prior.target_type == "discrete":
        assert y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < prior.num_classes
    else:
        assert prior.num_classes is None
        assert y.dtype == torch.float32 and torch.isfinite(y).all()
        lo, hi = prior.suggested_y_range
        assert lo < hi
    # one-sequence path keeps the spec's shapes
    one = prior.generate(4)
    if prior.input_dim is None:
        assert one.shape == (4,)
    else:
        assert one[0].shape == (4, prior.input_dim) and one[1].shape == (4,)
    t = prior.sample_targets(11)
    assert t.shape == (11,) and t.dtype == y.dtype
    if exact:
        lp = prior.exact_log_predictive(x, y)
        assert lp.shape == (5, 7) and torch.isfinite(lp).all()
    assert type(prior).__name__ in repr(prior)


def test_suggested_y_range_is_deterministic_and_keeps_rng():
    prior = LinearRegressionPrior()
    state = torch.get_rng_state()
    r1 = prior.suggested_y_range
    assert torch.equal(state, torch.get_rng_state())
    r2 = LinearRegressionPrior().suggested_y_range
    assert r1 == r2
    # y ~ w x + b + eps with |x| <= 1: the 99.9% range of N(0, ~1.34)-like mass is about +-3.5..4.5
    assert -5.5 < r1[0] < -3.0 and 3.0 < r1[1] < 5.5


def test_linear_moments():
    prior = LinearRegressionPrior(input_dim=2, weight_std=1.5, bias_std=0.5, noise_std=0.2)
    x, y = prior.generate_batch(20000, 2)
    # Var y = w_std^2 * D * E[x^2] + b_std^2 + s^2, E[x^2] = 1/3 on U[-1, 1]
    var = 1.5**2 * 2 / 3 + 0.25 + 0.04
    assert abs(y.var().item() / var - 1) < 0.04
    assert abs(y.mean().item()) < 0.03
    # E[y_1 y_2] = b_std^2 (x independent with zero mean)
    assert abs((y[:, 0] * y[:, 1]).mean().item() - 0.25) < 0.04
    # E[y x_d] = 0, E[y_1 y_2 | x] = w_std^2 x_1.x_2 + b_std^2
    resid = y[:, 0] * y[:, 1] - (1.5**2 * (x[:, 0] * x[:, 1]).sum(-1) + 0.25)
    assert abs(resid.mean().item()) < 0.05
    assert x.min() >= -1 and x.max() <= 1


def test_linear_no_bias_and_polynomial_moments():
    y = LinearRegressionPrior(bias=False, noise_std=0.1).generate_batch(20000, 1)[1]
    assert abs(y.var().item() / (1 / 3 + 0.01) - 1) < 0.05
    y = PolynomialPrior(degree=3, coef_std=1.0, noise_std=0.1).generate_batch(20000, 1)[1]
    var = 1 + 1 / 3 + 1 / 5 + 1 / 7 + 0.01  # sum_k E[x^(2k)] + noise
    assert abs(y.var().item() / var - 1) < 0.05


def test_gp_moments_follow_the_kernel():
    prior = GPPrior(lengthscale=0.3, outputscale=2.0, noise_var=0.05)
    x, y = prior.generate_batch(20000, 2)
    assert abs(y.var().item() / (2.0 + 0.05) - 1) < 0.04
    k12 = 2.0 * torch.exp(-0.5 * (x[:, 0, 0] - x[:, 1, 0]) ** 2 / 0.3**2)
    assert abs((y[:, 0] * y[:, 1] - k12).mean().item()) < 0.05
    assert x.min() >= 0 and x.max() <= 1


def test_mlp_prior_moments(monkeypatch):
    prior = MLPPrior(input_dim=1, hidden=8, layers=2, noise_std=0.1, activation="relu")
    x, y = prior.generate_batch(5000, 4)
    assert abs(y.mean().item()) < 0.1  # weights are symmetric around 0
    assert y.var().item() > 0.1
    # noise-free functions are deterministic in x: a repeated x gives the same y. The
    # prior draws its own x; make the second half of each sequence repeat the first.
    import pfn_transformers.priors.regression as regression

    draw = regression.uniform

    def repeated(shape, low, high, device=None):
        half = draw((shape[0], shape[1] // 2, *shape[2:]), low, high, device)
        return torch.cat([half, half], dim=1)

    monkeypatch.setattr(regression, "uniform", repeated)
    torch.manual_seed(1)
    x, y = MLPPrior(noise_std=0.0).generate_batch(3, 6)
    assert torch.equal(x[:, :3], x[:, 3:])
    torch.testing.assert_close(y[:, :3], y[:, 3:], atol=1e-6, rtol=0)
    assert (y[0] - y[1]).abs().max() > 0.1  # a different function per dataset
    _, noisy = MLPPrior(noise_std=0.1).generate_batch(3, 6)
    assert (noisy[:, :3] - noisy[:, 3:]).abs().max() > 0.05  # the control: noise breaks it


def test_step_sine_components():
    torch.manual_seed(2)
    sine = StepSinePrior(mixture=[1, 0, 0], noise_std=0.0, amplitude=0.7)
    _, y = sine.generate_batch(200, 16)
    assert y.abs().max() <= 0.7 + 1e-5
    steps = StepSinePrior(mixture=[0, 1, 0], noise_std=0.0, num_steps=2)
    x, y = steps.generate_batch(50, 40)
    for b in range(50):
        assert torch.unique(y[b]).numel() <= 3  # piecewise constant: at most 3 levels
    with pytest.raises(ValueError, match="mixture"):
        StepSinePrior(mixture=[1, 1])


def test_logistic_labels_depend_on_x():
    prior = LogisticClassificationPrior(input_dim=2, num_classes=3, weight_std=3.0)
    x, y = prior.generate_batch(4000, 2)
    freq = torch.bincount(y.flatten(), minlength=3).double() / y.numel()
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03)
    # within a dataset labels share the weights: nearby x -> same class more often than 1/3
    assert (y[:, 0] == y[:, 1]).double().mean().item() > 0.4


def test_coin_moments():
    prior = CoinFlipPrior(1.0, 1.0)
    _, y = prior.generate_batch(20000, 2)
    assert abs(y.double().mean().item() - 0.5) < 0.01
    # P(y1 = y2) = E[theta^2 + (1 - theta)^2] = 2/3 under Beta(1, 1)
    assert abs((y[:, 0] == y[:, 1]).double().mean().item() - 2 / 3) < 0.015
    _, y = CoinFlipPrior(3.0, 1.0).generate_batch(20000, 1)
    assert abs(y.double().mean().item() - 0.75) < 0.015


def test_categorical_moments():
    prior = CategoricalPrior(num_categories=5, concentration=0.5)
    _, y = prior.generate_batch(20000, 2)
    freq = torch.bincount(y.flatten(), minlength=5).double() / y.numel()
    assert torch.allclose(freq, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015)
    # P(y1 = y2) = (alpha + 1) / (K alpha + 1)
    assert abs((y[:, 0] == y[:, 1]).double().mean().item() - 1.5 / 3.5) < 0.015
    prior = CategoricalPrior(num_categories=3, concentration=[4.0, 1.0, 1.0])
    _, y = prior.generate_batch(10000, 1)
    assert abs((y == 0).double().mean().item() - 4 / 6) < 0.02
    with pytest.raises(ValueError, match="concentration"):
        CategoricalPrior(num_categories=3, concentration=[1.0, 2.0])


def test_markov_moments():
    prior = MarkovChainPrior(num_states=4, concentration=1.0)
    _, y = prior.generate_batch(20000, 3)
    freq = torch.bincount(y[:, 0], minlength=4).double() / y.shape[0]
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.015)
    # after one i->i transition, another is (alpha + 1) / (K alpha + 1) = 2/5 likely
    stay1 = y[:, 1] == y[:, 0]
    p = (y[stay1, 2] == y[stay1, 1]).double().mean().item()
    assert abs(p - 0.4) < 0.025


def test_nig_marginal_is_student_t():
    from scipy import stats

    prior = NormalInverseGammaPrior(mu0=0.5, kappa0=2.0, alpha0=3.0, beta0=2.0)
    _, y = prior.generate_batch(40000, 1)
    scale = math.sqrt(2.0 * (2.0 + 1) / (3.0 * 2.0))
    qs = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    emp = np.quantile(y.numpy().ravel(), qs)
    ref = stats.t.ppf(qs, df=6.0, loc=0.5, scale=scale)
    assert np.allclose(emp, ref, atol=0.04)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (LinearRegressionPrior, {"features": "cubic"}, "features"),
        (LinearRegressionPrior, {"noise_std": 0.0}, "noise_std"),
        (LinearRegressionPrior, {"x_low": 1.0, "x_high": 0.0}, "x_low"),
        (GPPrior, {"lengthscale": -1.0}, "lengthscale"),
        (MLPPrior, {"activation": "swish"}, "activation"),
        (CoinFlipPrior, {"alpha": 0.0}, "alpha"),
        (MarkovChainPrior, {"num_states": 1}, "num_states"),
        (NormalInverseGammaPrior, {"kappa0": 0.0}, "kappa0"),
        (LogisticClassificationPrior, {"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_hyperparameters_are_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --------------------------------------------------------------------------- datasets
def test_csv_dataset(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,target\n1,2,0.5\n3,4,1.5\n5,6,2.5\n")
    x, y, names = read_table(path, target_column="target")
    assert names == ["a", "b"] and x.shape == (3, 2) and y.tolist() == [0.5, 1.5, 2.5]
    x, y, names = read_table(path, target_column="a", feature_columns=["b"])
    assert x[:, 0].tolist() == [2, 4, 6] and y.dtype == torch.float32
    gen = load_dataset_generator(path, target_column="target")
    xb, yb = gen.generate_batch(4, 5)
    assert xb.shape == (4, 5, 2) and yb.shape == (4, 5)
    wrapped = CSVDatasetPrior(str(path), target_column="target", sequential=True)
    xb, yb = wrapped.generate_batch(2, 3)
    assert wrapped.input_dim == 2 and xb.shape == (2, 3, 2)
    assert torch.equal(xb[:, 1:, 0] - xb[:, :-1, 0], torch.full((2, 2), 2.0))  # windows
    assert wrapped.sample_targets(6).shape == (6,)
    with pytest.raises(ValueError, match=r"'nope'.*available columns.*\['a', 'b', 'target'\]"):
        read_table(path, target_column="nope")
    with pytest.raises(ValueError, match="feature_columns"):
        read_table(path, target_column="target", feature_columns=["a", "zzz"])
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_dataset_generator(missing, target_column="y")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        CSVDatasetPrior(str(missing))


def test_npz_dataset(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(10, 3)), y=rng.integers(0, 4, size=10), w=np.arange(10.0))
    x, y, names = read_table(path)  # target defaults to "y"
    assert x.shape == (10, 4) and names == ["x", "w"] and y.dtype == torch.int64
    x, y, _ = read_table(path, target_column="y", feature_columns=["x"])
    assert x.shape == (10, 3)
    gen = load_dataset_generator(path, feature_columns=["x"])
    assert gen.target_type == "discrete"
    with pytest.raises(ValueError, match=r"available columns: \['x', 'y', 'w'\]"):
        read_table(path, target_column="label")
    bad = tmp_path / "data.txt"
    bad.write_text("1,2\n")
    with pytest.raises(ValueError, match=r"\.csv"):
        read_table(bad)
