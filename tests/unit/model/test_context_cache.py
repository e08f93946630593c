"""Cached contexts: the context encoded once, queried in chunks, equal to the full forward."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import (
    PFN,
    CachedContext,
    ClassificationConfig,
    RegressionConfig,
    UnsupervisedConfig,
)
from pfn_transformers.context import default_chunk


def _model(mask: str, positional: bool, n_layers: int = 3) -> torch.nn.Module:
    cfg = RegressionConfig(
        d_model=32, n_layers=n_layers, n_heads=4, input_dim=3, mask_type=mask,
        positional_embedding=positional, y_min=-3.0, y_max=3.0, d_vocab=20, init_range=0.2,
    )  # fmt: skip
    return PFN(cfg).eval()


@pytest.mark.parametrize("mask", ["autoregressive-pfn", "gpt2"])
@pytest.mark.parametrize("positional", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_cached_context_equals_the_full_forward(mask: str, positional: bool, chunk: int) -> None:
    model = _model(mask, positional)
    xc, yc, xq = torch.randn(2, 13, 3), torch.randn(2, 13), torch.randn(2, 21, 3)
    ctx = CachedContext(model, xc, yc, chunk_size=chunk)
    full = model.predict(xc, yc, xq)
    cached = ctx.logits(xq)
    assert cached.shape == full.shape == (2, 21, 20)
    assert torch.allclose(cached, full, atol=1e-5, rtol=0), (cached - full).abs().max()


def test_the_cache_is_reused_unchanged_for_any_number_of_query_batches() -> None:
    model = _model("autoregressive-pfn", False)
    xc, yc = torch.randn(1, 10, 3), torch.randn(1, 10)
    ctx = CachedContext(model, xc, yc, chunk_size=8)
    size, tokens = ctx.nbytes, ctx.num_tokens
    assert tokens == 11 and size > 0  # start token + 10 pairs
    for seed in range(3):
        xq = torch.randn(1, 17, 3, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(ctx.logits(xq), model.predict(xc, yc, xq), atol=1e-5)
        assert ctx.nbytes == size and ctx.num_tokens == tokens
    # [num_queries, input_dim] is accepted for a single context, and zero queries work
    xq = torch.randn(5, 3)
    assert torch.allclose(ctx.logits(xq), model.predict(xc, yc, xq[None]), atol=1e-5)
    assert ctx.logits(torch.zeros(1, 0, 3)).shape == (1, 0, 20)
    dist = ctx.predictive(xq)
    assert dist.batch_shape == (1, 5)


def test_queries_run_in_chunks_of_bounded_size() -> None:
    """Every attention pass sees at most chunk_size queries against context + chunk keys."""
    model = _model("autoregressive-pfn", False, n_layers=1)
    model.set_attention_path("explicit")
    shapes: list[tuple[int, ...]] = []
    hook = model.blocks[0].attn.hook_attn_scores
    handle = hook.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    try:
        ctx = CachedContext(model, torch.randn(1, 30, 3), torch.randn(1, 30), chunk_size=7)
        shapes.clear()
        ctx.logits(torch.randn(1, 50, 3))
    finally:
        handle.remove()
    assert len(shapes) == 8  # ceil(50 / 7) passes
    assert max(s[2] for s in shapes) == 7
    assert max(s[3] for s in shapes) == 31 + 7  # start + 30 pairs + the chunk's own keys
    # by default a chunk is about the context's size, within [128, 1024]
    assert CachedContext(model, torch.randn(1, 30, 3), torch.randn(1, 30)).chunk_size == 128
    assert CachedContext(model, torch.randn(1, 299, 3), torch.randn(1, 299)).chunk_size == 300
    assert default_chunk(5000) == 1024


def test_classification_context_and_errors() -> None:
    cfg = ClassificationConfig(d_model=32, n_layers=2, n_heads=4, input_dim=2, num_classes=3)
    model = PFN(cfg).eval()
    xc, yc, xq = torch.randn(2, 6, 2), torch.randint(0, 3, (2, 6)), torch.randn(2, 9, 2)
    ctx = CachedContext(model, xc, yc, chunk_size=2)
    assert torch.allclose(ctx.logits(xq), model.predict(xc, yc, xq), atol=1e-5)
    with pytest.raises(ValueError, match=r"x_query has shape \(2, 9, 3\).*input_dim=2"):
        ctx.logits(torch.randn(2, 9, 3))
    with pytest.raises(ValueError, match=r"chunk_size=0 is not valid"):
        CachedContext(model, xc, yc, chunk_size=0)
    with pytest.raises(ValueError, match="y has dtype"):
        CachedContext(model, xc, yc.float())
    unsup = PFN(UnsupervisedConfig(d_model=32, n_layers=1, n_heads=4, input_type="continuous"))
    with pytest.raises(ValueError, match="CachedContext is for supervised models"):
        CachedContext(unsup, xc, yc)
