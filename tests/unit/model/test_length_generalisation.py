"""A model knows the context length it was trained on and says so when asked beyond it."""

from __future__ import annotations

import warnings

import pytest
import torch

from pfn_transformers import (
    PFN,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedConfig,
    train,
)
from pfn_transformers.context import CachedContext
from pfn_transformers.evaluation import evaluate
from pfn_transformers.model.length import ContextLengthWarning
from pfn_transformers.priors import CoinFlipPrior, LinearRegressionPrior

SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2}


def _train(prior, config, seq_len, tmp_path):
    tc = TrainingConfig(batch_size=8, seq_len=seq_len, num_steps=3, log_every=3,
                        save_checkpoint=False, progress_bar=False, checkpoint_dir=str(tmp_path))  # fmt: skip
    return train(prior, config, tc).eval()


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    prior = LinearRegressionPrior(input_dim=1)
    config = RegressionConfig(**SMALL, input_dim=1, y_min=-4.0, y_max=4.0)
    return _train(prior, config, 8, tmp_path_factory.mktemp("len")), prior


def _warned(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, ContextLengthWarning)]


def test_train_records_the_length_and_the_user_config_is_left_alone(regression):
    model, _ = regression
    assert model.config.trained_seq_len == 8
    assert RegressionConfig(**SMALL).trained_seq_len is None
    with pytest.raises(Exception, match="trained_seq_len=0"):
        RegressionConfig(**SMALL, trained_seq_len=0)


def test_forward_predict_and_cached_context_warn_only_past_the_trained_length(regression):
    model, _ = regression
    x, y = torch.rand(2, 12, 1), torch.randn(2, 12)
    assert _warned(lambda: model(x[:, :8], y[:, :8])) == []
    msgs = _warned(lambda: model(x, y))
    assert (
        len(msgs) == 1
        and "needs 12 positions" in msgs[0]
        and "trained on sequences of 8" in msgs[0]
    )
    xq = torch.rand(2, 3, 1)
    assert _warned(lambda: model.predict(x[:, :7], y[:, :7], xq)) == []
    assert "context of 9 points" in _warned(lambda: model.predict(x[:, :9], y[:, :9], xq))[0]
    assert _warned(lambda: CachedContext(model, x[:, :7], y[:, :7])) == []
    assert len(_warned(lambda: CachedContext(model, x[:, :9], y[:, :9]))) == 1


def test_the_length_survives_save_and_load(regression, tmp_path):
    model, _ = regression
    model.save_pretrained(tmp_path / "m")
    assert PFN.from_pretrained(tmp_path / "m").config.trained_seq_len == 8


def test_rollouts_past_the_trained_length_warn(tmp_path):
    config = UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=2)
    model = _train(CoinFlipPrior(), config, 10, tmp_path)
    assert _warned(lambda: model.generate(2, 10)) == []
    assert "seq_len=15" in _warned(lambda: model.generate(2, 15))[0]


def test_evaluate_reports_positions_beyond_the_trained_length_apart(regression):
    model, prior = regression
    assert evaluate(model, prior, num_datasets=16, seq_len=8)["length"] is None
    with pytest.warns(ContextLengthWarning):
        res = evaluate(model, prior, num_datasets=16, seq_len=12, batch_size=16)
    length = res["length"]
    assert length["trained_seq_len"] == 8
    excess = torch.tensor(res["excess_nll"]["per_n"])
    beyond = length["beyond"]["excess_nll"]
    assert beyond["per_n"] == pytest.approx(excess[8:].tolist())
    assert length["within"]["excess_nll"]["mean"] == pytest.approx(excess[:8].mean().item())
    assert beyond["mean"] == pytest.approx(excess[8:].mean().item())
