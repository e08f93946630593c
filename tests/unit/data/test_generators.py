"""Data generators: vectorised paths, the loop fallback, bad input, and sample_batch."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import (
    BayesianGenerator,
    DatasetGenerator,
    DeterministicGenerator,
    UnsupervisedBayesian,
    sample_batch,
)
from pfn_transformers.bayes import Likelihood, Prior
from pfn_transformers.data.base import DataGenerator, PriorShapeError


def test_vmap_path_matches_a_per_sequence_loop():
    torch.manual_seed(0)
    gen = DeterministicGenerator(
        prior=torch.distributions.Normal(torch.zeros(3), torch.ones(3)),
        function=lambda x, w: torch.tanh(x @ w),
        input_dim=3,
    )
    torch.manual_seed(1)
    x, y = gen.generate_batch(16, 8)
    torch.manual_seed(1)
    w = gen.prior.sample((16,))
    x_again = torch.randn(16, 8, 3)
    assert torch.equal(x, x_again)
    expected = torch.stack([torch.tanh(x[i] @ w[i]) for i in range(16)])
    torch.testing.assert_close(y, expected)
    assert gen._call.use_vmap


def test_function_vmap_cannot_trace_falls_back_to_a_loop_with_a_warning():
    def data_dependent(x, w):
        if w.item() > 0:  # .item() cannot run under vmap
            return x.sum(-1)
        return -x.sum(-1)

    gen = DeterministicGenerator(torch.distributions.Normal(0.0, 1.0), data_dependent, input_dim=2)
    with pytest.warns(RuntimeWarning, match="falling back to a per-sequence loop"):
        x, y = gen.generate_batch(8, 5)
    assert y.shape == (8, 5)
    assert not gen._call.use_vmap
    x, y = gen.generate_batch(4, 5)  # no second warning; still correct shapes
    assert torch.allclose(y.abs(), x.sum(-1).abs())


def test_bayesian_generator_discrete_likelihood_gives_long_targets():
    prior = Prior(torch.distributions.Normal(torch.zeros(2), torch.ones(2)))

    def logits(theta, x):
        return {"logits": x @ theta}

    gen = BayesianGenerator(prior, Likelihood(torch.distributions.Bernoulli, logits, input_dim=2))
    x, y = gen.generate_batch(4, 6)
    assert y.dtype == torch.long and set(y.unique().tolist()) <= {0, 1}
    assert gen.target_type == "discrete"


def test_likelihood_accepts_positional_and_base_distribution_forms():
    fn = lambda t, x: {"loc": t.expand(x.shape[0]), "scale": 1.0}  # noqa: E731
    a = Likelihood(torch.distributions.Normal, fn, 1)
    b = Likelihood(base_distribution=torch.distributions.Normal, parameterizer=fn, input_dim=1)
    assert a.distribution_class is b.distribution_class is torch.distributions.Normal
    with pytest.raises(TypeError, match="distribution_class=None"):
        Likelihood(parameterizer=fn)
    with pytest.raises(TypeError, match="parameterizer=None"):
        Likelihood(torch.distributions.Normal)
    with pytest.raises(ValueError, match="input_dim=0"):
        Likelihood(torch.distributions.Normal, fn, 0)


def test_parameterizer_must_return_a_dict():
    gen = UnsupervisedBayesian(
        Prior(torch.distributions.Normal(0.0, 1.0)),
        Likelihood(torch.distributions.Normal, lambda t, x: t, 1),
    )
    with pytest.raises(TypeError, match="must return a dict"):
        gen.generate_batch(2, 3)


def test_dataset_generator_errors_and_classes():
    with pytest.raises(ValueError, match=r"y_data has shape \(9,\); expected \[N\] with N=10"):
        DatasetGenerator(torch.randn(10, 2), torch.randn(9))
    with pytest.raises(ValueError, match="empty dataset"):
        DatasetGenerator(torch.randn(0, 2), torch.randn(0))
    seq = DatasetGenerator(torch.randn(5, 2), torch.randn(5), sequential=True)
    with pytest.raises(PriorShapeError, match="seq_len=6 from 5 rows"):
        seq.generate_batch(2, 6)
    cls = DatasetGenerator(torch.randn(20, 2), torch.tensor([0, 1, 2, 1] * 5))
    assert cls.target_type == "discrete" and cls.num_classes == 3


def test_sample_batch_validates_arguments_and_shapes():
    class WrongShape(DataGenerator):
        input_dim = 2

        def generate_batch(self, batch_size, seq_len):
            return torch.zeros(batch_size, seq_len, 3), torch.zeros(batch_size, seq_len)

    with pytest.raises(
        PriorShapeError, match=r"WrongShape has input_dim=2 but produced x of shape"
    ):
        sample_batch(WrongShape(), 2, 4)
    gen = DeterministicGenerator(torch.distributions.Normal(0.0, 1.0), lambda x, w: x.sum(-1), 1)
    with pytest.raises(ValueError, match="batch_size=0"):
        sample_batch(gen, 0, 4)
    with pytest.raises(
        TypeError, match=r"object is not a data generator: it needs generate\(seq_len\)"
    ):
        sample_batch(object(), 2, 4)


def test_custom_x_distribution():
    gen = DeterministicGenerator(
        torch.distributions.Normal(0.0, 1.0),
        lambda x, w: (w * x).sum(-1),
        input_dim=2,
        x_distribution=torch.distributions.Uniform(-1.0, 1.0),
    )
    x, _ = gen.generate_batch(64, 16)
    assert x.min() >= -1 and x.max() <= 1
