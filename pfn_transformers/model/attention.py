"""Attention kernels for ``AttentionLayout``s: a causal prefix, then queries that see the
prefix (all of it, or causally) and themselves.

One boolean mask over the whole layout rules out the flash kernels and costs memory that
grows with the square of the sequence. Split in two, each part is an attention the fast
kernels support: the prefix is plain causal attention, and the queries attend to the
prefix's keys with ``is_causal`` (top-left aligned) or no mask at all. A query's attention
to *itself* is the one piece no shared key set expresses; it enters as one extra "self" key
whose score each query sets through one extra feature (its own scaled dot product) and
whose extra value feature returns its weight, so the softmax normalises over exactly the
keys the dense mask allows and the result is the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .masks import AttentionLayout

ATTENTION_PATHS = ("dense", "split", "split-matmul")

# Below these many keys a CPU pass uses matmul + softmax (AMX or AVX matmuls) rather than the
# CPU flash kernel, whose fixed cost dominates short sequences. Measured with
# `benchmarks/bench_scaling.py --points 64 128 256 384 512 --paths split split-matmul`
# (and `--precision fp32`) on a 2-core Xeon with AMX: under bf16 autocast matmul wins at 513
# keys (0.68 s against 0.73 s per step) and loses at 769 (0.87 against 0.81); in fp32 the
# two tie at 129 keys and SDPA wins from 257 on.
CPU_BF16_MATMUL_BELOW = 640
CPU_FP32_MATMUL_BELOW = 192
# Shorter still, under bf16 autocast, one matmul over the dense mask beats the split's two
# (fewer, larger operators): d64/2 layers/batch 64 at S=20 (41 tokens) 28.9 ms against
# 33.4 ms per step, even at S=40 (81), behind at S=100 (201: 174 against 140); up to S=64
# (129 tokens) the CPU keeps the path it took before the split.
CPU_BF16_DENSE_BELOW = 130


def attention_kernel(device: torch.device, n_tokens: int) -> str:
    """``"dense"``, ``"split-matmul"`` or ``"split"`` (SDPA) for a pass over ``n_tokens``
    keys."""
    if device.type != "cpu":
        return "split"
    if torch.is_autocast_enabled("cpu"):
        if n_tokens < CPU_BF16_DENSE_BELOW:
            return "dense"
        return "split-matmul" if n_tokens < CPU_BF16_MATMUL_BELOW else "split"
    return "split-matmul" if n_tokens < CPU_FP32_MATMUL_BELOW else "split"


def split_attention(
    q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, *, matmul: bool = False
) -> Tensor:
    """Attention output ``[b, h, n_new, d_head]`` for ``layout``.

    ``q`` is ``[b, h, n_new, d_head]``; ``k``/``v`` are ``[b, h, n_past + n_new, d_head]``
    (cached keys first). ``matmul`` picks matmul + softmax over SDPA for both parts.
    """
    p, n_keys = layout.n_prefix, layout.n_keys
    parts = []
    if p:
        attend = _prefix_matmul if matmul else _prefix_sdpa
        parts.append(attend(q[:, :, :p], k[:, :, :n_keys], v[:, :, :n_keys], layout))
    if layout.n_queries:
        attend = _queries_matmul if matmul else _queries_sdpa
        qq = q[:, :, p:]
        own_k, own_v = k[:, :, n_keys:], v[:, :, n_keys:]
        parts.append(attend(qq, k[:, :, :n_keys], v[:, :, :n_keys], own_k, own_v, layout))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _prefix_mask(layout: AttentionLayout, device: torch.device) -> Tensor | None:
    """Causal mask of the prefix rows over cached + prefix keys (None: plain/no mask)."""
    return AttentionLayout(layout.n_prefix, n_past=layout.n_past).dense_mask(device)


def _prefix_sdpa(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout) -> Tensor:
    if layout.n_past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=layout.n_prefix > 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_prefix_mask(layout, q.device))


def _prefix_matmul(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout) -> Tensor:
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = _prefix_mask(layout, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).to(v.dtype) @ v


def _queries_matmul(
    q: Tensor, k: Tensor, v: Tensor, own_k: Tensor, own_v: Tensor, layout: AttentionLayout
) -> Tensor:
    """Queries over the shared keys plus each one's own key, as one softmax."""
    scale = 1 / math.sqrt(q.shape[-1])
    shared = (q @ k.transpose(-1, -2)) * scale
    if layout.queries_see == "causal":
        mask = layout.full_mask(q.device)[layout.n_prefix :, : layout.n_prefix]
        shared = shared.masked_fill(~mask, float("-inf"))
    own = (q * own_k).sum(-1, keepdim=True) * scale
    pattern = torch.softmax(torch.cat([shared, own.to(shared.dtype)], dim=-1), dim=-1)
    pattern = pattern.to(v.dtype)
    return pattern[..., :-1] @ v + pattern[..., -1:] * own_v


def _queries_sdpa(
    q: Tensor, k: Tensor, v: Tensor, own_k: Tensor, own_v: Tensor, layout: AttentionLayout
) -> Tensor:
    """Queries over the shared keys plus each one's own key, in one SDPA call.

    Every vector gets ``extra`` features (at least one; padded to a multiple of 8, which
    the CUDA flash kernels want). A "self" key, first in the key sequence, is zero but for
    a 1 in the first extra feature; each query carries its own unscaled dot product
    ``q_i . k_i`` there, so the self key's score for query i is query i's score with itself.
    The self key's value is zero but for a 1 in the same feature, so that output feature is
    the self key's weight ``w_i``, and ``sum_j p_ij v_j + w_i v_i`` is the attention over
    the shared keys and the query itself. For causal queries a zero query row goes first,
    so that query i (row i + 1) sees the self key and shared keys ``0..i`` under
    ``is_causal``'s top-left alignment.
    """
    b, h, m, dh = q.shape
    causal = layout.queries_see == "causal"
    if causal and k.shape[2] > m:  # keys past m-1 no query sees: drop them, so the causal
        k, v = k[:, :, :m], v[:, :, :m]  # attention is square (flash kernels refuse others)
    extra = 8 - dh % 8 if dh % 8 else 8
    own = (q * own_k).sum(-1, keepdim=True)
    q_ext = F.pad(torch.cat([q, own.to(q.dtype)], dim=-1), (0, extra - 1))
    self_kv = q.new_zeros(b, h, 1, dh + extra)
    self_kv[..., dh] = 1
    k_ext = torch.cat([self_kv.to(k.dtype), F.pad(k, (0, extra))], dim=2)
    v_ext = torch.cat([self_kv.to(v.dtype), F.pad(v, (0, extra))], dim=2)
    if causal:
        q_ext = F.pad(q_ext, (0, 0, 1, 0))
    out = F.scaled_dot_product_attention(
        q_ext, k_ext, v_ext, is_causal=causal, scale=1 / math.sqrt(dh)
    )
    if causal:
        out = out[:, :, 1:]
    return out[..., :dh] + out[..., dh : dh + 1] * own_v


__all__ = ["ATTENTION_PATHS", "attention_kernel", "split_attention"]
