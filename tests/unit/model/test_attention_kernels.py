"""Long-context attention: the split kernels compute the dense mask's function, keep memory
linear in the sequence, and are chosen by device and length; hooks still see full patterns."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pfn_transformers import PFN, RegressionConfig
from pfn_transformers.context import CachedContext
from pfn_transformers.model import attention
from pfn_transformers.model.attention import attention_kernel, split_attention
from pfn_transformers.model.masks import AttentionLayout
from tests.unit.model.test_model import (
    SMALL,
    D,
    batch_for,
    supervised_configs,
    unsupervised_configs,
)

LAYOUTS = [
    AttentionLayout(6, 6, "causal"),  # training, autoregressive-pfn: [start, 5 pairs], 6 queries
    AttentionLayout(4, 7, "causal"),  # more queries than prefix keys
    AttentionLayout(6, 3, "all"),  # predict: queries see the whole context
    AttentionLayout(9),  # plain causal (gpt2 training, unsupervised)
    AttentionLayout(3, n_past=4),  # new tokens after a KV cache
    AttentionLayout(1, n_past=4),  # one decoding step
    AttentionLayout(0, 3, "all", n_past=4),  # CachedContext queries
    AttentionLayout(1, 4, "causal"),  # no pairs yet: queries see the start token
]


def dense_reference(q, k, v, layout):
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    mask = layout.full_mask("cpu")
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v


@pytest.mark.parametrize("layout", LAYOUTS, ids=repr)
@pytest.mark.parametrize("matmul", [False, True], ids=["sdpa", "matmul"])
@pytest.mark.parametrize("d_head", [8, 5])
def test_split_attention_is_the_dense_masks_function_with_its_gradients(layout, matmul, d_head):
    torch.manual_seed(0)
    t, keys = layout.n_new, layout.n_past + layout.n_new
    q = (2 * torch.randn(2, 3, t, d_head, dtype=torch.float64)).requires_grad_()
    k = (2 * torch.randn(2, 3, keys, d_head, dtype=torch.float64)).requires_grad_()
    v = torch.randn(2, 3, keys, d_head, dtype=torch.float64, requires_grad=True)
    ref = dense_reference(q, k, v, layout)
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad((ref * grad).sum(), (q, k, v))
    qf, kf, vf = (z.detach().float().requires_grad_() for z in (q, k, v))
    out = split_attention(qf, kf, vf, layout, matmul=matmul)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad((out * grad.float()).sum(), (qf, kf, vf))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)


def _configs():
    return [*supervised_configs(), *unsupervised_configs()]


@pytest.mark.parametrize("path", ["split", "split-matmul"])
@pytest.mark.parametrize(
    "cfg", _configs(), ids=lambda c: f"{c.kind}-{getattr(c, 'mask_type', '')}-{c.prediction_type}"
)
def test_every_kernel_gives_the_explicit_paths_logits_in_fp32(cfg, path):
    torch.manual_seed(0)
    model = PFN(cfg).eval()
    x, y = batch_for(cfg)
    args = (y,) if x is None else (x, y)
    model.set_attention_path("explicit")
    dense = model(*args)
    dense_predict = model.predict(x[:, :5], y[:, :5], x[:, 5:]) if x is not None else None
    model.set_attention_path(path)
    torch.testing.assert_close(model(*args), dense, rtol=1e-5, atol=1e-5)
    if x is not None:
        split_predict = model.predict(x[:, :5], y[:, :5], x[:, 5:])
        torch.testing.assert_close(split_predict, dense_predict, rtol=1e-5, atol=1e-5)


class _LargestTensor(TorchDispatchMode):
    """The largest tensor any operator returns (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("path,quadratic", [("split", False), ("explicit", True)])
def test_the_split_kernel_allocates_nothing_quadratic_in_the_context(path, quadratic):
    """At S=512 a [heads, 2S+1, 2S+1] score tensor has 4.2M entries; the activations of the
    split path stay at [batch, tokens, d_mlp] (131k)."""
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, input_dim=1))
    model.set_attention_path(path)
    s = 512
    x, y = torch.rand(1, s, 1), torch.randn(1, s)
    with _LargestTensor() as probe:
        model(x, y, return_type="loss").backward()
    squares = SMALL["n_heads"] * (2 * s + 1) ** 2
    assert (probe.largest >= squares) is quadratic, probe.largest


def test_kernel_choice_follows_device_precision_and_length(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert attention_kernel(cuda, 10) == "split"
    assert attention_kernel(cpu, attention.CPU_FP32_MATMUL_BELOW - 1) == "split-matmul"
    assert attention_kernel(cpu, attention.CPU_FP32_MATMUL_BELOW) == "split"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention_kernel(cpu, attention.CPU_BF16_DENSE_BELOW - 1) == "dense"
        assert attention_kernel(cpu, attention.CPU_BF16_DENSE_BELOW) == "split-matmul"
        assert attention_kernel(cpu, attention.CPU_BF16_MATMUL_BELOW - 1) == "split-matmul"
        assert attention_kernel(cpu, attention.CPU_BF16_MATMUL_BELOW) == "split"
    model = PFN(RegressionConfig(**SMALL, input_dim=D))
    attn = model.blocks[0].attn
    x = torch.randn(1, 3, SMALL["d_model"])
    short, long = AttentionLayout(9, 8, "causal"), AttentionLayout(2049, 2048, "causal")
    assert attn.path(x, short) == "split-matmul" and attn.path(x, long) == "split"
    attn.hook_pattern.add_hook(lambda pattern, hook: None)
    assert attn.path(x, long) == "dense"  # the full pattern for whoever hooks it
    attn.hook_pattern.remove_hooks()
    model.set_attention_path("split")
    assert attn.path(x, short) == "split"
    with pytest.raises(ValueError, match="'flash'.*auto"):
        model.set_attention_path("flash")


def test_run_with_cache_gives_the_full_pattern_and_the_same_logits_at_long_context():
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, input_dim=1)).eval()
    s = 300  # 601 tokens: the split SDPA kernel without hooks
    x, y = torch.rand(1, s, 1), torch.randn(1, s)
    fast = model(x, y)
    logits, cache = model.run_with_cache(x, y, names_filter=lambda n: n.endswith("hook_pattern"))
    torch.testing.assert_close(logits, fast, rtol=1e-5, atol=1e-5)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (1, SMALL["n_heads"], 2 * s + 1, 2 * s + 1)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, SMALL["n_heads"], 2 * s + 1))


def test_ten_thousand_context_points_predict_through_the_cached_context():
    torch.manual_seed(0)
    model = PFN(RegressionConfig(**SMALL, input_dim=1)).eval()
    n = 10_000
    x, y, xq = torch.rand(1, n, 1), torch.randn(1, n), torch.rand(1, 300, 1)
    with _LargestTensor() as probe:
        cached = CachedContext(model, x, y).logits(xq)
    assert probe.largest < n * n  # never a [context, context] score matrix
    torch.testing.assert_close(cached, model.predict(x, y, xq), rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("s", [40, 700])
@pytest.mark.parametrize("mask_type", ["autoregressive-pfn", "gpt2"])
def test_cuda_kernels_give_the_explicit_paths_logits_and_training_gradients(s, mask_type):
    """On CUDA the split path runs the flash / memory-efficient kernels (causal queries are
    non-square, which flash refuses): same logits and gradients as the dense path."""
    torch.manual_seed(0)
    cfg = RegressionConfig(**SMALL, input_dim=1, mask_type=mask_type)
    model = PFN(cfg).cuda()
    x, y = torch.rand(2, s, 1, device="cuda"), torch.randn(2, s, device="cuda")
    results = {}
    for path in ("explicit", "split"):
        model.set_attention_path(path)
        model.zero_grad()
        logits = model(x, y)
        model(x, y, return_type="loss").backward()
        grad = model.blocks[0].attn.W_Q.grad.clone()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(x, y)
        results[path] = (logits, grad, bf16)
    (dense, dense_grad, dense_bf16), (split, split_grad, split_bf16) = results.values()
    torch.testing.assert_close(split, dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(split_grad, dense_grad, rtol=1e-3, atol=1e-5)
    assert (split_bf16 - dense_bf16).abs().max() < 0.1  # bf16 rounding, not a different function
    predicted = model.predict(x[:, :30], y[:, :30], x[:, 30:])
    model.set_attention_path("explicit")
    torch.testing.assert_close(
        predicted, model.predict(x[:, :30], y[:, :30], x[:, 30:]), rtol=1e-4, atol=1e-4
    )
