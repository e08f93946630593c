"""TrainingConfig.context_split="random": automl/PFNs' one-split-per-step recipe."""

from __future__ import annotations

import random

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig, TrainingConfig, UnsupervisedConfig, train
from pfn_transformers.training.distributed import DistributedContext
from pfn_transformers.training.state import build_state
from pfn_transformers.training.step import TrainStep
from tests.unit.training.test_training import linear_gen

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 2}


def test_split_loss_is_the_mean_loss_of_the_query_points_given_the_context():
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, input_dim=1))
    x, y = torch.rand(3, 10, 1), torch.randn(3, 10)
    for n in (0, 4, 9):
        with torch.no_grad():
            logits = model.predict(x[:, :n], y[:, :n], x[:, n:])
        expected = -model.log_prob(logits, y[:, n:]).mean()
        got = model(x, y, return_type="loss", n_context=n)
        torch.testing.assert_close(got, expected)
        assert got.requires_grad
    loss = model(x, y, return_type="loss", n_context=4)
    loss.backward()
    assert model.blocks[0].attn.W_Q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n_context=10 is not valid"):
        model(x, y, return_type="loss", n_context=10)
    with pytest.raises(ValueError, match="n_context is for the mean split loss"):
        model(x, y, n_context=3)
    unsup = PFN(UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=2))
    with pytest.raises(ValueError, match="supervised models"):
        unsup.split_loss(torch.zeros(2, 4, dtype=torch.long), None, 1)


def test_each_step_draws_its_context_size_from_the_seeded_python_rng():
    tc = TrainingConfig(batch_size=4, seq_len=12, context_split="random", progress_bar=False)
    state = build_state(
        RegressionConfig(**SMALL, input_dim=1), tc, DistributedContext.from_env(torch.device("cpu"))
    )
    step = TrainStep(state)
    x, y = torch.rand(4, 12, 1), torch.randn(4, 12)
    random.seed(5)
    sizes = [step.context_size(x, y) for _ in range(200)]
    random.seed(5)
    assert sizes == [step.context_size(x, y) for _ in range(200)]
    assert min(sizes) == 0 and max(sizes) == 11 and len(set(sizes)) == 12
    assert step.context_size(None, y) is None  # unsupervised data: every position scored
    default = TrainStep(build_state(RegressionConfig(**SMALL, input_dim=1),
                                    TrainingConfig(batch_size=4, seq_len=12, progress_bar=False),
                                    DistributedContext.from_env(torch.device("cpu"))))  # fmt: skip
    assert default.context_size(x, y) is None


def test_bad_context_split_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"context_split='half'.*\['auto', 'all', 'random'\]"):
        TrainingConfig(context_split="half")


def test_auto_splits_from_1024_points_on_and_old_runs_keep_scoring_every_position():
    from pfn_transformers.training.state import resumed_training_config

    assert not TrainingConfig(seq_len=1023).splits_context
    assert TrainingConfig(seq_len=1024).splits_context
    assert TrainingConfig(seq_len=64, context_split="random").splits_context
    assert not TrainingConfig(seq_len=4096, context_split="all").splits_context
    tc = TrainingConfig(seq_len=2048)
    old = resumed_training_config(tc, {"optimizer": "muon", "muon_scope": "attention"})
    assert old.context_split == "all" and not old.splits_context
    new = resumed_training_config(tc, {"optimizer": "muon", "muon_scope": "attention",
                                       "context_split": "auto"})  # fmt: skip
    assert new.splits_context
    chosen = TrainingConfig(seq_len=2048, context_split="random")
    assert resumed_training_config(chosen, {"optimizer": "muon"}).splits_context


def test_a_random_split_run_learns_linear_regression():
    torch.manual_seed(0)
    cfg = RegressionConfig(d_model=64, n_layers=2, n_heads=4, input_dim=1, d_vocab=50,
                           y_min=-4, y_max=4)  # fmt: skip
    tc = TrainingConfig(batch_size=64, seq_len=20, num_steps=250, learning_rate=3e-3,
                        warmup_steps=25, log_every=50, save_checkpoint=False, progress_bar=False,
                        context_split="random")  # fmt: skip
    model = train(linear_gen(), cfg, tc)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        x, y = linear_gen().generate_batch(1024, 20)
    with torch.no_grad():
        nll = -model.log_prob(model(x, y), y)
    prior_nll = -torch.distributions.Normal(0.0, (x[..., 0] ** 2 + 0.01).sqrt()).log_prob(y)
    late, prior = nll[:, 10:].mean().item(), prior_nll[:, 10:].mean().item()
    assert late < prior - 0.5, (late, prior)
