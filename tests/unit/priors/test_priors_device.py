"""Priors and spec generators draw their batches directly on the requested device.

The CPU-only test machine checks the device plumbing on the ``meta`` device: meta tensors
have shapes and dtypes but no data, and any CPU tensor mixed into a meta computation raises,
so a tensor created without ``device=`` is caught. Values are checked on the CPU
(``device="cpu"`` must give exactly the ``device=None`` draws) and, on a GPU machine, on CUDA
(the ``cuda``-marked tests: ``make test-cuda``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pfn_transformers import BayesianGenerator, DatasetGenerator, DeterministicGenerator
from pfn_transformers.bayes import Likelihood, Prior
from pfn_transformers.data.generators import UnsupervisedBayesian
from pfn_transformers.data.protocol import batch_source
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
)

B, S = 5, 7


def _csv(tmp_path: Path, sequential: bool = False) -> CSVDatasetPrior:
    path = tmp_path / "data.csv"
    path.write_text("a,b,y\n" + "".join(f"{i * 0.1},{i % 3},{i % 4}\n" for i in range(30)))
    return CSVDatasetPrior(str(path), sequential=sequential)


# (id, factory(tmp_path), x dtype or None when unsupervised, y dtype)
PRIORS = [
    ("linear", lambda _: LinearRegressionPrior(), torch.float32, torch.float32),
    (
        "linear-poly-features",
        lambda _: LinearRegressionPrior(input_dim=3, features="polynomial", degree=2),
        torch.float32,
        torch.float32,
    ),
    ("polynomial", lambda _: PolynomialPrior(), torch.float32, torch.float32),
    ("gp", lambda _: GPPrior(input_dim=2), torch.float32, torch.float32),
    ("mlp", lambda _: MLPPrior(input_dim=2), torch.float32, torch.float32),
    ("step-sine-1d", lambda _: StepSinePrior(), torch.float32, torch.float32),
    ("step-sine-3d", lambda _: StepSinePrior(input_dim=3), torch.float32, torch.float32),
    (
        "logistic",
        lambda _: LogisticClassificationPrior(num_mc_samples=64),
        torch.float32,
        torch.int64,
    ),
    ("coin", lambda _: CoinFlipPrior(), None, torch.int64),
    ("categorical", lambda _: CategoricalPrior(), None, torch.int64),
    ("markov", lambda _: MarkovChainPrior(), None, torch.int64),
    ("nig", lambda _: NormalInverseGammaPrior(), None, torch.float32),
    ("csv-rows", _csv, torch.float32, torch.float32),
    ("csv-windows", lambda p: _csv(p, sequential=True), torch.float32, torch.float32),
]


def _deterministic(_: Path) -> DeterministicGenerator:
    return DeterministicGenerator(
        torch.distributions.Normal(torch.zeros(3), torch.ones(3)),
        lambda x, w: torch.tanh(x @ w),
        input_dim=3,
        noise_std=0.1,
    )


def _deterministic_custom_x(_: Path) -> DeterministicGenerator:
    return DeterministicGenerator(
        torch.distributions.Normal(0.0, 1.0),
        lambda x, w: (w * x).sum(-1),
        input_dim=2,
        x_distribution=torch.distributions.Uniform(-1.0, 1.0),
    )


def _bayesian(_: Path) -> BayesianGenerator:
    prior = Prior(torch.distributions.Normal(torch.zeros(2), torch.ones(2)))
    lik = Likelihood(torch.distributions.Normal, lambda t, x: {"loc": x @ t, "scale": 0.1}, 2)
    return BayesianGenerator(prior, lik)


def _bayesian_bernoulli(_: Path) -> BayesianGenerator:
    prior = Prior(torch.distributions.Normal(torch.zeros(2), torch.ones(2)))
    lik = Likelihood(torch.distributions.Bernoulli, lambda t, x: {"logits": x @ t}, 2)
    return BayesianGenerator(prior, lik)


def _unsupervised(_: Path) -> UnsupervisedBayesian:
    lik = Likelihood(torch.distributions.Bernoulli, lambda t, x: {"probs": t}, 1)
    return UnsupervisedBayesian(Prior(torch.distributions.Beta(2.0, 2.0)), lik)


def _dataset(_: Path) -> DatasetGenerator:
    gen = torch.Generator().manual_seed(1)
    return DatasetGenerator(torch.randn(40, 2, generator=gen), torch.arange(40) % 3)


SPEC_GENERATORS = [
    ("deterministic", _deterministic, torch.float32, torch.float32),
    ("deterministic-x-distribution", _deterministic_custom_x, torch.float32, torch.float32),
    ("bayesian-normal", _bayesian, torch.float32, torch.float32),
    ("bayesian-bernoulli", _bayesian_bernoulli, torch.float32, torch.int64),
    ("unsupervised-bayesian", _unsupervised, None, torch.int64),
    ("dataset", _dataset, torch.float32, torch.int64),
]

ALL = PRIORS + SPEC_GENERATORS
IDS = [case[0] for case in ALL]


@pytest.fixture(scope="module")
def meta_dirichlet():
    """Give ``aten::_sample_dirichlet`` a meta (shape-only) kernel for this module's tests.

    torch has none, so Beta and Dirichlet draws (CoinFlip, Categorical, MarkovChain, and the
    Beta prior of the unsupervised generator) cannot run on meta at all. The kernel only
    states the output shape (that of the concentration), which is what every device kernel
    returns, so everything around the draw still runs on meta and a CPU tensor mixed in
    still raises. The real draw on the CPU is checked by the ``device="cpu"`` tests below.
    """
    op = "aten::_sample_dirichlet"
    if torch._C._dispatch_has_kernel_for_dispatch_key(op, "Meta"):
        yield
        return
    lib = torch.library.Library("aten", "IMPL")
    lib.impl("_sample_dirichlet", lambda alpha, generator=None: torch.empty_like(alpha), "Meta")
    yield
    lib._destroy()


@pytest.fixture
def no_distribution_validation():
    """Turn off torch.distributions' argument checks for a test on meta.

    The checks read values (``bool(valid.all())``), which meta tensors do not have, so the
    user's likelihood (constructed with default validation) could not be built there. The
    built-in priors pass ``validate_args=False`` themselves and need no such switch.
    """
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    yield
    torch.distributions.Distribution.set_default_validate_args(previous)


def _check(out, device_type: str, x_dtype, y_dtype, input_dim: int | None = None) -> None:
    x, y = out
    assert y.device.type == device_type
    assert tuple(y.shape) == (B, S) and y.dtype == y_dtype
    if x_dtype is None:
        assert x is None
    else:
        assert x.device.type == device_type
        assert x.dtype == x_dtype and tuple(x.shape[:2]) == (B, S) and x.ndim == 3
        if input_dim is not None:
            assert x.shape[-1] == input_dim


@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), ALL, ids=IDS)
def test_generate_batch_on_meta_creates_every_tensor_there(
    name, factory, x_dtype, y_dtype, tmp_path, meta_dirichlet, no_distribution_validation
):
    gen = factory(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CPU fallback warning would hide a plumbing bug
        out = gen.generate_batch(B, S, device="meta")
    _check(out, "meta", x_dtype, y_dtype, getattr(gen, "input_dim", None))
    fallback = getattr(gen, "_device", None)
    assert fallback is None or not fallback.cpu_only


@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), PRIORS, ids=IDS[: len(PRIORS)])
def test_builtin_priors_need_no_validation_switch_on_meta(
    name, factory, x_dtype, y_dtype, tmp_path, meta_dirichlet
):
    _check(factory(tmp_path).generate_batch(B, S, device="meta"), "meta", x_dtype, y_dtype)


@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), ALL, ids=IDS)
def test_explicit_cpu_device_gives_exactly_the_default_draws(
    name, factory, x_dtype, y_dtype, tmp_path
):
    gen = factory(tmp_path)
    torch.manual_seed(7)
    default = gen.generate_batch(B, S)
    torch.manual_seed(7)
    on_cpu = gen.generate_batch(B, S, device="cpu")
    torch.manual_seed(7)
    on_cpu_device = gen.generate_batch(B, S, device=torch.device("cpu"))
    _check(on_cpu, "cpu", x_dtype, y_dtype)
    for a, b, c in zip(default, on_cpu, on_cpu_device, strict=True):
        if a is None:
            assert b is None and c is None
        else:
            assert torch.equal(a, b) and torch.equal(a, c)
            assert a.dtype == b.dtype == c.dtype


@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), ALL, ids=IDS)
def test_same_seed_same_device_same_batch(name, factory, x_dtype, y_dtype, tmp_path):
    gen = factory(tmp_path)
    torch.manual_seed(11)
    first = gen.generate_batch(B, S, device="cpu")
    torch.manual_seed(11)
    second = gen.generate_batch(B, S, device="cpu")
    for a, b in zip(first, second, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


class _CPUOutputs(TorchDispatchMode):
    """Records every op that produces a CPU tensor while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = tree_flatten(out)[0]
        if any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in leaves):
            self.ops.append(str(func))
        return out


@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), PRIORS, ids=IDS[: len(PRIORS)])
def test_builtin_priors_make_no_cpu_tensor_during_a_device_draw(
    name, factory, x_dtype, y_dtype, tmp_path, meta_dirichlet
):
    """Stricter than meta alone: torch lets CPU index tensors index device tensors (a hidden
    host-to-device copy each batch), which only shows up as a CPU tensor being made."""
    prior = factory(tmp_path)
    prior.generate_batch(B, S, device="meta")  # file-backed priors copy their data once
    with _CPUOutputs() as seen:
        prior.generate_batch(B, S, device="meta")
    assert seen.ops == []


def test_batch_source_passes_the_device_to_builtin_priors(tmp_path, meta_dirichlet):
    for _, factory, x_dtype, y_dtype in PRIORS:
        gen = factory(tmp_path)
        source = batch_source(gen)
        assert source.batch_takes_device
        _check(source.sample(B, S, device="meta"), "meta", x_dtype, y_dtype)


# --------------------------------------------------------------------------- CPU fallback
def _offset_function(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    offset = torch.arange(x.shape[0], dtype=x.dtype)  # made on the CPU whatever x's device
    return (x * w).sum(-1) + offset


def _offset_parameterizer(theta: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loc": x @ theta + torch.zeros(x.shape[0]), "scale": 0.1}


def _cpu_only_generators():
    det = DeterministicGenerator(torch.distributions.Normal(0.0, 1.0), _offset_function, 2)
    lik = Likelihood(torch.distributions.Normal, _offset_parameterizer, 2)
    bayes = BayesianGenerator(Prior(torch.distributions.Normal(torch.zeros(2), 1.0)), lik)
    return [det, bayes]


@pytest.mark.parametrize("index", [0, 1], ids=["deterministic", "bayesian"])
def test_user_code_making_cpu_tensors_falls_back_to_cpu_draws_moved_to_the_device(
    index, no_distribution_validation
):
    gen = _cpu_only_generators()[index]
    with pytest.warns(RuntimeWarning, match="could not run on meta.*drawing on the CPU"):
        x, y = gen.generate_batch(B, S, device="meta")
    assert x.device.type == "meta" and y.device.type == "meta"
    assert tuple(x.shape) == (B, S, 2) and tuple(y.shape) == (B, S)
    assert gen._device.cpu_only
    vectorised = gen._call if index == 0 else gen._params
    assert vectorised.use_vmap  # a device error is no reason to give up vmap
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # remembered: no second attempt, no second warning
        x, y = gen.generate_batch(B, S, device="meta")
    assert x.device.type == "meta" and tuple(y.shape) == (B, S)


def test_fallback_rewinds_the_random_state_so_the_batch_is_the_cpu_one():
    """The failed device attempt drew theta on the CPU; that draw is undone, so the CPU batch
    (and everything drawn after it) is what the same seed gives without a device."""
    torch.manual_seed(3)
    reference = _cpu_only_generators()[0].generate_batch(B, S)
    after_reference = torch.get_rng_state()
    gen = _cpu_only_generators()[0]
    for _ in range(2):  # first call (attempt, then fallback) and a remembered fallback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            torch.manual_seed(3)
            gen.generate_batch(B, S, device="meta")
            assert torch.equal(torch.get_rng_state(), after_reference)
            torch.manual_seed(3)
            x, y = gen.generate_batch(B, S, device="cpu")
        assert torch.equal(x, reference[0]) and torch.equal(y, reference[1])


def test_code_failing_everywhere_raises_its_own_error_and_keeps_drawing_on_device():
    def broken(x, w):
        raise RuntimeError("user bug")

    gen = DeterministicGenerator(torch.distributions.Normal(0.0, 1.0), broken, 2)
    with pytest.raises(RuntimeError, match="user bug"):
        gen.generate_batch(B, S, device="meta")
    assert not gen._device.cpu_only


def test_broken_parameterizer_contract_is_not_mistaken_for_a_device_problem():
    gen = UnsupervisedBayesian(
        Prior(torch.distributions.Normal(0.0, 1.0)),
        Likelihood(torch.distributions.Normal, lambda t, x: t, 1),
    )
    with pytest.raises(TypeError, match="must return a dict"):
        gen.generate_batch(2, 3, device="meta")
    assert not gen._device.cpu_only


# --------------------------------------------------------------------------- dataset cache
def test_dataset_is_copied_to_a_device_once_and_again_after_reassignment():
    gen = DatasetGenerator(torch.randn(12, 2), torch.randn(12))
    x1, y1 = gen._data_on("meta")
    x2, y2 = gen._data_on(torch.device("meta"))
    assert x1.device.type == "meta" and x1 is x2 and y1 is y2
    assert gen._data_on(None)[0] is gen.x_data  # no device: the CPU tensors themselves
    gen.x_data = torch.randn(12, 2)
    x3, _ = gen._data_on("meta")
    assert x3 is not x1 and x3.device.type == "meta"


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize(("name", "factory", "x_dtype", "y_dtype"), ALL, ids=IDS)
def test_generate_batch_on_cuda(name, factory, x_dtype, y_dtype, tmp_path):
    gen = factory(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.manual_seed(5)
        first = gen.generate_batch(B, S, device="cuda")
        torch.manual_seed(5)
        second = gen.generate_batch(B, S, device="cuda")
    _check(first, "cuda", x_dtype, y_dtype)
    for a, b in zip(first, second, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    if y_dtype == torch.int64 and getattr(gen, "num_classes", None):
        assert int(first[1].min()) >= 0 and int(first[1].max()) < gen.num_classes


@pytest.mark.cuda
def test_cpu_fallback_lands_on_cuda():
    gen = _cpu_only_generators()[0]
    torch.manual_seed(3)
    reference = gen.generate_batch(B, S)
    with pytest.warns(RuntimeWarning, match="drawing on the CPU"):
        torch.manual_seed(3)
        x, y = gen.generate_batch(B, S, device="cuda")
    assert x.device.type == "cuda" and y.device.type == "cuda"
    assert torch.equal(x.cpu(), reference[0]) and torch.equal(y.cpu(), reference[1])
