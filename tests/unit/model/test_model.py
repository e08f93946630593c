"""The PFN transformer: causality, attention paths, TransformerLens hooks, predict, sampling."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import PFN, ClassificationConfig, RegressionConfig, UnsupervisedConfig
from pfn_transformers.model.configs import ConfigError

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 4}
B, S, D = 3, 9, 2


def supervised_configs():
    for mask in ("autoregressive-pfn", "gpt2"):
        yield RegressionConfig(**SMALL, input_dim=D, mask_type=mask)
        yield RegressionConfig(**SMALL, input_dim=D, mask_type=mask, prediction_type="point")
        yield RegressionConfig(**SMALL, input_dim=D, mask_type=mask, bucket_support="bounded")
        yield ClassificationConfig(**SMALL, input_dim=D, num_classes=4, mask_type=mask)
        yield ClassificationConfig(
            **SMALL, input_dim=D, num_classes=4, mask_type=mask, pair_encoder="joint"
        )
        yield RegressionConfig(**SMALL, input_dim=D, mask_type=mask, x_encoder="linear")
        # the architecture of models saved before the joint pair encoder and the MLP decoder
        yield RegressionConfig(
            **SMALL, input_dim=D, mask_type=mask, pair_encoder="sum", decoder="linear"
        )


def unsupervised_configs():
    yield UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=5)
    yield UnsupervisedConfig(**SMALL, input_type="continuous", prediction_type="point")
    yield UnsupervisedConfig(**SMALL, input_type="continuous", d_vocab=20)


def batch_for(cfg):
    x = torch.randn(B, S, D)
    if isinstance(cfg, ClassificationConfig):
        return x, torch.randint(0, cfg.num_classes, (B, S))
    if isinstance(cfg, UnsupervisedConfig):
        y = (
            torch.randint(0, cfg.d_vocab, (B, S))
            if cfg.input_type == "discrete"
            else torch.randn(B, S)
        )
        return None, y
    return x, torch.randn(B, S)


def perturb(y):
    return (y + 1) % 4 if not y.is_floating_point() else y + 1.5


@pytest.mark.parametrize(
    "cfg", list(supervised_configs()), ids=lambda c: f"{c.kind}-{c.mask_type}-{c.prediction_type}"
)
def test_supervised_prediction_i_never_sees_y_i_or_later(cfg):
    torch.manual_seed(0)
    model = PFN(cfg).eval()
    x, y = batch_for(cfg)
    base = model(x, y)
    assert base.shape == (B, S, 1 if cfg.prediction_type == "point" else cfg.d_vocab)
    for i in range(S - 1):
        x2, y2 = x.clone(), y.clone()
        y2[:, i] = perturb(y2[:, i])
        x2[:, i + 1] += 3.0
        out = model(x2, y2)
        assert torch.equal(out[:, : i + 1], base[:, : i + 1]), f"prediction <= {i} moved"
        assert not torch.allclose(out[:, i + 1 :], base[:, i + 1 :]), (
            "later predictions must depend on y_i"
        )


@pytest.mark.parametrize(
    "cfg", list(unsupervised_configs()), ids=lambda c: f"{c.input_type}-{c.prediction_type}"
)
def test_unsupervised_logits_t_predict_the_next_element_from_y_up_to_t(cfg):
    """Next-token convention: logits[:, t] sees y_0..y_t and predicts y_{t+1}."""
    torch.manual_seed(0)
    model = PFN(cfg).eval()
    _, y = batch_for(cfg)
    base = model(y)
    aligned = model.predictive_logits(y)
    assert base.shape[:2] == aligned.shape[:2] == y.shape
    assert torch.equal(aligned[:, 1:], base[:, :-1])  # aligned position t predicts y_t
    for i in range(S):
        y2 = y.clone()
        y2[:, i] = perturb(y2[:, i]) if cfg.input_type == "discrete" else y2[:, i] + 1.5
        out = model(y2)
        assert torch.equal(out[:, :i], base[:, :i]), f"a prediction of y_<={i} moved"
        assert not torch.allclose(out[:, i:], base[:, i:]), "later predictions must see y_i"
        assert torch.equal(model.predictive_logits(y2)[:, : i + 1], aligned[:, : i + 1])


def test_unsupervised_first_position_is_the_same_prior_predictive_for_every_sequence():
    cfg = next(iter(unsupervised_configs()))
    model = PFN(cfg).eval()
    _, y = batch_for(cfg)
    first = model.predictive_logits(y)[:, 0]
    assert torch.allclose(first, first[:1].expand_as(first))
    assert model.log_predictive(y).shape == y.shape


@pytest.mark.parametrize(
    "cfg", [*supervised_configs(), *unsupervised_configs()], ids=lambda c: c.kind
)
def test_sdpa_and_explicit_paths_agree(cfg):
    model = PFN(cfg).eval()
    x, y = batch_for(cfg)
    args = (y,) if x is None else (x, y)
    fast = model(*args)
    model.set_attention_path("explicit")
    slow = model(*args)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_hooking_the_pattern_switches_to_explicit_path_with_same_logits():
    model = PFN(RegressionConfig(**SMALL, input_dim=D)).eval()
    x, y = batch_for(model.config)
    fast = model(x, y)
    seen = {}

    def save(pattern, hook):
        seen[hook.name] = pattern.detach()

    hooked = model.run_with_hooks(x, y, fwd_hooks=[("blocks.1.attn.hook_pattern", save)])
    torch.testing.assert_close(hooked, fast, rtol=1e-5, atol=1e-5)
    pattern = seen["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (B, 4, 2 * S + 1, 2 * S + 1)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(B, 4, 2 * S + 1))


def test_run_with_cache_has_transformer_lens_names_and_shapes():
    cfg = RegressionConfig(**SMALL, input_dim=D)
    model = PFN(cfg).eval()
    x, y = batch_for(cfg)
    logits, cache = model.run_with_cache(x, y)
    t, h, dh = 2 * S + 1, cfg.n_heads, cfg.d_head
    expected = {
        "hook_embed": (B, t, cfg.d_model),
        "blocks.0.hook_resid_pre": (B, t, cfg.d_model),
        "blocks.0.attn.hook_q": (B, t, h, dh),
        "blocks.0.attn.hook_k": (B, t, h, dh),
        "blocks.0.attn.hook_v": (B, t, h, dh),
        "blocks.0.attn.hook_attn_scores": (B, h, t, t),
        "blocks.0.attn.hook_pattern": (B, h, t, t),
        "blocks.0.attn.hook_z": (B, t, h, dh),
        "blocks.0.hook_attn_out": (B, t, cfg.d_model),
        "blocks.0.mlp.hook_post": (B, t, cfg.d_mlp),
        "blocks.1.hook_mlp_out": (B, t, cfg.d_model),
        "blocks.1.hook_resid_post": (B, t, cfg.d_model),
        "ln_final.hook_normalized": (B, t, cfg.d_model),
    }
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    # weight layouts follow TransformerLens
    attn = model.blocks[0].attn
    assert attn.W_Q.shape == (h, cfg.d_model, dh) and attn.W_O.shape == (h, dh, cfg.d_model)

    # activation patching: zeroing a head's z changes the output
    def zero_head(z, hook):
        z[:, :, 0] = 0
        return z

    patched = model.run_with_hooks(x, y, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)])
    assert not torch.allclose(patched, logits)


@pytest.mark.parametrize("mask", ["autoregressive-pfn", "gpt2"])
def test_predict_queries_do_not_see_each_other_and_match_forward(mask):
    torch.manual_seed(1)
    model = PFN(RegressionConfig(**SMALL, input_dim=D, mask_type=mask)).eval()
    x, y = torch.randn(2, 6, D), torch.randn(2, 6)
    xq = torch.randn(2, 5, D)
    out = model.predict(x, y, xq)
    assert out.shape == (2, 5, 100)
    alone = torch.cat([model.predict(x, y, xq[:, j : j + 1]) for j in range(5)], dim=1)
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)
    # a query after n context points equals the forward prediction at position n
    full_x = torch.cat([x, xq[:, :1]], dim=1)
    full_y = torch.cat([y, torch.zeros(2, 1)], dim=1)
    torch.testing.assert_close(model(full_x, full_y)[:, -1], out[:, 0], rtol=1e-5, atol=1e-5)


def test_generate_unsupervised_rollouts_and_temperature():
    torch.manual_seed(0)
    model = PFN(UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=3)).eval()
    rolls = model.generate(num_samples=8, seq_len=12, temperature=0.7)
    assert rolls.shape == (8, 12) and rolls.dtype == torch.long
    assert int(rolls.min()) >= 0 and int(rolls.max()) < 3
    prefix = torch.tensor([2, 1, 0])
    with_prefix = model.generate(num_samples=4, seq_len=6, prefix=prefix)
    assert torch.equal(with_prefix[:, :3], prefix.expand(4, 3))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(num_samples=2, seq_len=3, temperature=0.0)
    cont = PFN(UnsupervisedConfig(**SMALL, input_type="continuous", d_vocab=20)).eval()
    assert cont.generate(num_samples=5, seq_len=4).shape == (5, 4)


def test_supervised_posterior_predictive_samples():
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, input_dim=D)).eval()
    x, y, xq = torch.randn(2, 4, D), torch.randn(2, 4), torch.randn(2, 3, D)
    joint = model.generate(x, y, xq, num_samples=6, temperature=1.0)
    marginal = model.sample_posterior_predictive(x, y, xq, num_samples=6, autoregressive=False)
    assert joint.shape == marginal.shape == (6, 2, 3)
    assert joint.std(0).min() > 0  # samples differ


def test_forward_shape_errors_name_the_problem():
    model = PFN(RegressionConfig(**SMALL, input_dim=D))
    with pytest.raises(ValueError, match=r"x has shape \(3, 9, 5\).*input_dim=2"):
        model(torch.randn(3, 9, 5), torch.randn(3, 9))
    with pytest.raises(ValueError, match="y has shape"):
        model(torch.randn(3, 9, D), torch.randn(3, 8))
    cls = PFN(ClassificationConfig(**SMALL, input_dim=D, num_classes=3))
    with pytest.raises(ValueError, match="integer class"):
        cls(torch.randn(3, 9, D), torch.randn(3, 9))


def test_positional_embedding_and_n_ctx_error():
    cfg = RegressionConfig(**SMALL, input_dim=D, positional_embedding=True, n_ctx=9)
    model = PFN(cfg)
    assert model(torch.randn(1, 4, D), torch.randn(1, 4)).shape == (1, 4, 100)  # 9 tokens
    with pytest.raises(ValueError, match="n_ctx=9"):
        model(torch.randn(1, 5, D), torch.randn(1, 5))  # 11 tokens


def test_device_property_follows_to():
    # the meta device stands in for a GPU: .to() really moves the model, so a device read
    # once at construction (the earlier implementation's stale cfg.device) would show
    model = PFN(RegressionConfig(**SMALL, input_dim=D))
    assert model.device == torch.device("cpu")
    model.to("meta")
    assert model.device == torch.device("meta")
    assert {p.device for p in model.parameters()} == {torch.device("meta")}
    assert model.bucketizer.borders.device == torch.device("meta")  # buffers move along


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prediction_type": "bogus"}, "prediction_type='bogus'"),
        ({"bucket_type": "weird"}, "bucket_type='weird'"),
        ({"bucket_support": "half"}, "bucket_support='half'"),
        ({"tail_scale": -0.1}, r"RegressionConfig\.tail_scale=-0\.1 is not valid.*>= 0"),
        ({"tail_scale": float("inf")}, r"tail_scale=inf is not valid"),
        ({"mask_type": "bert"}, "mask_type='bert'"),
        ({"bucket_type": "riemann"}, "riemann_borders=None"),
        ({"n_heads": 3}, "not divisible"),
        ({"y_min": 2.0, "y_max": 1.0}, "y_min"),
        ({"input_dim": 0}, "input_dim=0"),
    ],
)
def test_config_validation_messages(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RegressionConfig(**{"d_model": 32, **kwargs})


def test_config_dict_round_trip():
    from pfn_transformers.model.configs import config_from_dict

    borders = torch.linspace(-3, 3, 11)
    for cfg in (
        RegressionConfig(**SMALL, input_dim=3, bucket_type="riemann", riemann_borders=borders),
        ClassificationConfig(**SMALL, num_classes=7),
        UnsupervisedConfig(**SMALL, d_vocab=9),
    ):
        back = config_from_dict(cfg.to_dict())
        assert back.to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="unknown fields"):
        config_from_dict({"kind": "regression", "n_layer": 2})


def test_logits_stay_float32_under_bf16_autocast():
    model = PFN(RegressionConfig(**SMALL, input_dim=D, x_encoder="mlp"))
    x, y = batch_for(model.config)
    reference = model(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, y)
    assert logits.dtype == torch.float32
    # bf16 trunk, fp32 head: close to the fp32 model, not bit-equal
    assert (logits - reference).abs().max() < 0.05


def test_mlp_x_encoder_adds_its_own_weights():
    linear = PFN(RegressionConfig(**SMALL, input_dim=D, x_encoder="linear"))
    mlp = PFN(RegressionConfig(**SMALL, input_dim=D))  # the default
    extra = set(mlp.state_dict()) - set(linear.state_dict())
    assert extra == {"W_x2", "b_x2"}
    with pytest.raises(ConfigError, match="x_encoder='deep'"):
        RegressionConfig(x_encoder="deep")


def test_pair_encoder_and_decoder_weights_and_standardised_y():
    legacy = PFN(RegressionConfig(**SMALL, input_dim=D, pair_encoder="sum", decoder="linear"))
    model = PFN(RegressionConfig(**SMALL, input_dim=D, y_min=-40.0, y_max=40.0))  # defaults
    assert model.config.pair_encoder == "joint" and model.config.decoder == "mlp"
    new = set(model.state_dict()) - set(legacy.state_dict())
    assert {"W_xy", "b_xy", "W_xy2", "b_xy2"} <= new
    assert {k.split(".")[0] for k in new} == {"W_xy", "b_xy", "W_xy2", "b_xy2", "decoder_mlp"}
    assert set(legacy.state_dict()) - set(model.state_dict()) == {"W_y", "b_y"}
    # y in the user's units reaches the pair encoder on a fixed scale: [-40, 40] -> about [-4, 4]
    borders = model.bucketizer.borders
    y = torch.stack([borders[1], (borders[1] + borders[-2]) / 2, borders[-2]])
    torch.testing.assert_close(model._standardize_y(y), torch.tensor([-4.0, 0.0, 4.0]))
    # the class of an observed pair changes its token (one-hot features of the joint encoder)
    cls = PFN(ClassificationConfig(**SMALL, input_dim=D, num_classes=3, pair_encoder="joint"))
    x = torch.randn(1, 1, D).expand(1, 3, D)  # the same x at every position
    tok = cls._pair_tokens(x, torch.tensor([[0, 1, 2]]))
    assert not torch.allclose(tok[0, 0], tok[0, 1]) and not torch.allclose(tok[0, 1], tok[0, 2])
    with pytest.raises(ConfigError, match="pair_encoder='concat'"):
        RegressionConfig(pair_encoder="concat")
    with pytest.raises(ConfigError, match="decoder='deep'"):
        RegressionConfig(decoder="deep")


def test_auto_precision_follows_the_cpu():
    """(The attention kernel chosen under it: tests/unit/model/test_attention_kernels.py.)"""
    from pfn_transformers.training.step import autocast
    from pfn_transformers.utils import has_fast_bf16

    cpu = torch.device("cpu")
    for precision, expected in (("fp32", False), ("bf16", True), ("auto", has_fast_bf16(cpu))):
        with autocast(cpu, precision):
            assert torch.is_autocast_enabled("cpu") is expected, precision


@pytest.mark.parametrize(
    "cfg", [*supervised_configs(), *unsupervised_configs()], ids=lambda c: c.kind
)
def test_last_residual_decoded_at_the_predictive_positions_is_the_output(cfg):
    model = PFN(cfg).eval()
    x, y = batch_for(cfg)
    args = (y,) if x is None else (x, y)
    _, cache = model.run_with_cache(*args)
    last = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    lens = model.decode_resid(last[:, model.predictive_positions(y.shape[1])])
    torch.testing.assert_close(lens, model.predictive_logits(*args), atol=1e-5, rtol=1e-5)
