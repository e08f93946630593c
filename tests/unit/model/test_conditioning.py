"""Hyperparameter conditioning in the model (issue 24, item 4): the config fields, the
``hyperparameters`` argument of every prediction path, and models without it unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig
from pfn_transformers.context import CachedContext
from pfn_transformers.model.conditioning import condition_features, symlog
from pfn_transformers.model.configs import ConfigError, config_from_dict

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_vocab": 40}
NAMES = ["lengthscale", "noise_var"]


def conditioned(names=NAMES, **kw) -> torch.nn.Module:
    """A conditioned model whose condition MLP is not at its (inert) zero init."""
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, condition_on=list(names), **kw)).eval()
    with torch.no_grad():
        model.W_cond.normal_()
        model.W_cond2.mul_(20.0)  # a strong effect, as a trained model's may be
        model.W_U.mul_(50.0)  # and sharp predictives, so that draws differ too
    return model


def batch(b=3, s=10):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, s, 1, generator=g), torch.randn(b, s, generator=g)


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"condition_on": ["a", "a"]}, "condition_on=['a', 'a']"),
        ({"condition_on": ["a", ""]}, "condition_on=['a', '']"),
        ({"condition_on": "lengthscale"}, "condition_on='lengthscale'"),
        ({"condition_on": [1]}, "condition_on=[1]"),
        ({"condition_drop_prob": 1.5}, "condition_drop_prob=1.5"),
        ({"condition_drop_prob": -0.1}, "condition_drop_prob=-0.1"),
    ],
)
def test_bad_condition_fields_name_the_field_the_value_and_what_is_valid(kw, needle):
    with pytest.raises(ConfigError) as err:
        RegressionConfig(**SMALL, **kw)
    assert needle in str(err.value) and "RegressionConfig." in str(err.value)
    assert "[0, 1]" in str(err.value) or "names" in str(err.value)


def test_config_round_trips_and_dicts_from_before_the_field_load_unconditioned():
    cfg = RegressionConfig(**SMALL, condition_on=NAMES, condition_drop_prob=0.25)
    back = config_from_dict(cfg.to_dict())
    assert back.condition_on == NAMES and back.condition_drop_prob == 0.25
    old = cfg.to_dict()
    del old["condition_on"], old["condition_drop_prob"]
    assert config_from_dict(old).condition_on == []
    assert RegressionConfig().condition_on == [] and RegressionConfig().condition_drop_prob == 0.5


def test_unconditioned_models_have_no_new_parameters_and_refuse_hyperparameters():
    torch.manual_seed(0)
    plain = PFN(RegressionConfig(**SMALL))
    torch.manual_seed(0)
    cond = PFN(RegressionConfig(**SMALL, condition_on=NAMES))
    extra = set(cond.state_dict()) - set(plain.state_dict())
    assert extra == {"W_cond", "b_cond", "W_cond2", "b_cond2"}
    assert (
        not any("cond" in k for k in plain.state_dict()) and "hook_condition" not in plain.hook_dict
    )
    # the shared weights are initialised alike: the condition MLP is created last
    for k, v in plain.state_dict().items():
        assert torch.equal(v, cond.state_dict()[k]), k
    x, y = batch()
    with pytest.raises(ValueError, match="no condition_on"):
        plain(x, y, hyperparameters={"lengthscale": 1.0})
    with pytest.raises(ValueError, match="no condition_on"):
        plain.predict(x, y, x, hyperparameters={"lengthscale": 1.0})


# ------------------------------------------------------------------------------ features
def test_features_are_symlog_values_and_known_flags_with_nan_and_missing_unknown():
    feats = condition_features(
        NAMES, {"lengthscale": torch.tensor([0.5, math.nan, -3.0])}, 3, torch.device("cpu")
    )
    expected = torch.tensor(
        [
            [math.log1p(0.5), 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [-math.log1p(3.0), 0.0, 1.0, 0.0],
        ]
    )
    torch.testing.assert_close(feats, expected)
    assert torch.equal(
        symlog(torch.tensor([-1.0, 0.0, 1.0])),
        torch.log1p(torch.ones(3)) * torch.tensor([-1.0, 0.0, 1.0]),
    )
    with pytest.raises(ValueError, match=r"not ones this model conditions on.*lengthscale"):
        condition_features(NAMES, {"length_scale": 1.0}, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"hyperparameters\['noise_var'\] has shape \(2,\)"):
        condition_features(NAMES, {"noise_var": torch.ones(2)}, 3, torch.device("cpu"))


# ------------------------------------------------------------------------------ predictions
def test_known_values_change_the_prediction_and_unknown_ones_are_the_marginal():
    model = conditioned()
    x, y = batch()
    with torch.no_grad():
        marginal = model(x, y)
        assert torch.equal(marginal, model(x, y, hyperparameters={}))
        nan = {"lengthscale": math.nan, "noise_var": torch.full((3,), math.nan)}
        assert torch.equal(marginal, model(x, y, hyperparameters=nan))
        given = model(x, y, hyperparameters={"lengthscale": torch.tensor([0.1, math.nan, 2.0])})
    moved = (given - marginal).abs().amax(dim=(1, 2))
    assert moved[0] > 1e-3 and moved[2] > 1e-3 and moved[1] == 0  # row 1's value is unknown
    # a float is the same value for every dataset
    with torch.no_grad():
        a = model(x, y, hyperparameters={"noise_var": 0.3})
        b = model(x, y, hyperparameters={"noise_var": torch.full((3,), 0.3)})
    assert torch.equal(a, b)


def test_an_untrained_condition_input_is_inert():
    """Zero-initialised input weights: values the model never learnt to read change nothing
    (a model trained with condition_drop_prob=1 ignores given values)."""
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, condition_on=NAMES)).eval()
    x, y = batch()
    with torch.no_grad():
        assert torch.equal(model(x, y), model(x, y, hyperparameters={"lengthscale": 5.0}))


def test_cached_context_and_predictive_equal_predict_with_the_same_hyperparameters():
    model = conditioned()
    x, y = batch(b=3, s=12)
    hp = {"lengthscale": torch.tensor([0.2, 1.0, 3.0]), "noise_var": 0.05}
    xc, yc, xq = x[:, :8], y[:, :8], x[:, 8:]
    ref = model.predict(xc, yc, xq, hyperparameters=hp)
    ctx = CachedContext(model, xc, yc, hyperparameters=hp, chunk_size=2)
    torch.testing.assert_close(ctx.logits(xq), ref, rtol=1e-5, atol=1e-5)
    assert (ref - model.predict(xc, yc, xq)).abs().max() > 1e-3  # the values mattered
    dist = model.predictive(xc, yc, xq, hyperparameters=hp)
    torch.testing.assert_close(dist.log_prob(y[:, 8:]), model.log_prob(ref, y[:, 8:]))
    # the training path and the query path agree too: position i given the first i points
    full = model.log_predictive(x, y, hyperparameters=hp)
    one = model.predict(x[:, :5], y[:, :5], x[:, 5:6], hyperparameters=hp)
    torch.testing.assert_close(
        full[:, 5], model.log_prob(one, y[:, 5:6])[:, 0], rtol=1e-4, atol=1e-4
    )


def test_sampling_uses_the_hyperparameters_and_the_hook_sees_the_embedding():
    model = conditioned()
    x, y = batch(b=2, s=6)
    hp = {"lengthscale": torch.tensor([0.3, 4.0])}
    torch.manual_seed(3)
    a = model.sample_posterior_predictive(x[:, :4], y[:, :4], x[:, 4:], 5, hyperparameters=hp)
    torch.manual_seed(3)
    b = model.sample_posterior_predictive(
        x[:, :4], y[:, :4], x[:, 4:], 5, use_past_kv_cache=False, hyperparameters=hp
    )
    torch.manual_seed(3)
    c = model.sample_posterior_predictive(x[:, :4], y[:, :4], x[:, 4:], 5)
    assert a.shape == (5, 2, 2) and torch.allclose(a, b, atol=1e-4) and not torch.equal(a, c)
    _, cache = model.run_with_cache(x, y, hyperparameters=hp)
    emb = cache["hook_condition"]
    assert emb.shape == (2, SMALL["d_model"])
    start = model.start_token + emb
    torch.testing.assert_close(cache["hook_embed"][:, 0], start)


def test_save_and_load_keep_the_conditioning(tmp_path):
    model = conditioned(condition_drop_prob=0.3)
    model.save_pretrained(tmp_path / "m")
    loaded = PFN.from_pretrained(tmp_path / "m")
    assert loaded.config.condition_on == NAMES and loaded.config.condition_drop_prob == 0.3
    x, y = batch()
    hp = {"noise_var": torch.tensor([0.01, 0.1, 1.0])}
    with torch.no_grad():
        assert torch.equal(model(x, y, hyperparameters=hp), loaded(x, y, hyperparameters=hp))
