"""KV-cached generation: the same logits and draws as recomputing the whole sequence."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import PFN, ClassificationConfig, RegressionConfig, UnsupervisedConfig

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 4}


def record_logits(model, monkeypatch) -> list[torch.Tensor]:
    """Every logits tensor generation samples from, in order."""
    seen: list[torch.Tensor] = []
    original = model.sample_from_logits

    def spy(logits, temperature=1.0):
        seen.append(logits.detach().clone())
        return original(logits, temperature)

    monkeypatch.setattr(model, "sample_from_logits", spy)
    return seen


def both_paths(model, monkeypatch, *args, **kwargs):
    out, logits = {}, {}
    for cached in (True, False):
        with monkeypatch.context() as m:
            seen = record_logits(model, m)
            torch.manual_seed(7)
            out[cached] = model.generate(*args, use_past_kv_cache=cached, **kwargs)
            logits[cached] = seen
    return out, logits


def assert_same_logits(logits):
    cached, full = logits[True], logits[False]
    assert len(cached) == len(full) > 1
    for a, b in zip(cached, full, strict=True):
        torch.testing.assert_close(a.reshape(b.shape), b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "cfg",
    [
        UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=5),
        UnsupervisedConfig(**SMALL, input_type="continuous", d_vocab=20),
        UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=5, positional_embedding=False),
    ],
    ids=["discrete", "continuous", "no-positions"],
)
@pytest.mark.parametrize("prefix_len", [0, 3])
def test_cached_rollouts_match_recomputed_ones(cfg, prefix_len, monkeypatch):
    torch.manual_seed(0)
    model = PFN(cfg).eval()
    prefix = None
    if prefix_len:
        prefix = (
            torch.randint(0, 5, (prefix_len,))
            if cfg.input_type == "discrete"
            else torch.randn(prefix_len)
        )
    out, logits = both_paths(model, monkeypatch, 6, 12, prefix=prefix)
    assert out[True].shape == (6, 12)
    assert_same_logits(logits)
    if cfg.input_type == "discrete":
        assert torch.equal(out[True], out[False])
    else:
        torch.testing.assert_close(out[True], out[False], atol=1e-4, rtol=0)
    if prefix is not None:
        assert torch.equal(out[True][:, :prefix_len], prefix.expand(6, -1).to(out[True].dtype))


@pytest.mark.parametrize("mask_type", ["autoregressive-pfn", "gpt2"])
@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_cached_joint_posterior_samples_match_recomputed_ones(mask_type, kind, monkeypatch):
    torch.manual_seed(0)
    if kind == "regression":
        cfg = RegressionConfig(**SMALL, input_dim=2, d_vocab=30, mask_type=mask_type)
        yc = torch.randn(3, 5)
    else:
        cfg = ClassificationConfig(**SMALL, input_dim=2, num_classes=3, mask_type=mask_type)
        yc = torch.randint(0, 3, (3, 5))
    model = PFN(cfg).eval()
    xc, xq = torch.randn(3, 5, 2), torch.randn(3, 7, 2)
    out, logits = both_paths(model, monkeypatch, xc, yc, xq, num_samples=4)
    assert out[True].shape == (4, 3, 7)
    assert_same_logits(logits)
    if kind == "classification":
        assert torch.equal(out[True], out[False])
    else:
        torch.testing.assert_close(out[True], out[False], atol=1e-4, rtol=0)


def test_empty_context_joint_samples_start_from_the_prior():
    model = PFN(RegressionConfig(**SMALL, input_dim=1, d_vocab=20)).eval()
    xq = torch.randn(2, 4, 1)
    draws = model.generate(torch.zeros(2, 0, 1), torch.zeros(2, 0), xq, num_samples=3)
    assert draws.shape == (3, 2, 4) and torch.isfinite(draws).all()


def test_hooks_fire_with_transformerlens_names_during_cached_generation():
    model = PFN(UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=4)).eval()
    shapes = []

    def keep(pattern, hook):
        assert hook.name == "blocks.1.attn.hook_pattern"
        assert torch.allclose(pattern.sum(-1), torch.ones(()))
        shapes.append(tuple(pattern.shape))

    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", keep)]):
        model.generate(2, 5)
    # one pass over [start], then one new token per step, each seeing everything before it
    assert shapes == [(2, 4, 1, 1), (2, 4, 1, 2), (2, 4, 1, 3), (2, 4, 1, 4), (2, 4, 1, 5)]


def test_positions_beyond_n_ctx_are_refused_when_cached():
    model = PFN(UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=4, n_ctx=6)).eval()
    with pytest.raises(ValueError, match="n_ctx=6"):
        model.generate(1, 8)


def test_generation_leaves_the_thread_count_as_it_was():
    model = PFN(UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=4)).eval()
    before = torch.get_num_threads()
    model.generate(4, 6)
    reg = PFN(RegressionConfig(**SMALL, input_dim=1, d_vocab=10)).eval()
    reg.generate(torch.randn(1, 3, 1), torch.randn(1, 3), torch.randn(1, 2, 1), num_samples=2)
    assert torch.get_num_threads() == before
