"""Transformer building blocks with TransformerLens names, weight layouts and hook points.

Weights follow TransformerLens (``W_Q`` is ``[n_heads, d_model, d_head]``, ``W_O`` is
``[n_heads, d_head, d_model]``), so TL's analysis code reads them unchanged. Attention runs
through the split kernels of ``attention.py`` unless something hooks the explicit scores or
pattern; every path computes the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from .attention import attention_kernel, split_attention
from .configs import BaseModelConfig
from .kv_cache import KVCacheEntry
from .masks import AttentionLayout

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}


class LayerNorm(nn.Module):
    """Pre-norm LayerNorm (TL names ``w``, ``b``, ``hook_normalized``)."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_normalized = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_normalized(F.layer_norm(x, self.w.shape, self.w, self.b, self.eps))


class Attention(nn.Module):
    """Multi-head attention over an ``AttentionLayout`` (see ``masks.py``).

    Three paths compute the same function:

    - ``"split"``: the causal prefix and the queries as two attentions, each through
      ``scaled_dot_product_attention`` with ``is_causal`` or no mask, so flash kernels apply
      and memory grows linearly with the sequence. A query's attention to itself enters as
      one extra key (see ``_attend_queries``).
    - ``"split-matmul"``: the same two attentions as matmul + softmax; cheaper for short
      sequences under bf16 autocast on CPU (AMX matmuls against the CPU flash kernel).
    - ``"dense"``: one explicit scores/pattern over the full boolean mask, the layout
      TransformerLens hooks see (``hook_attn_scores``, ``hook_pattern``); taken whenever those
      are hooked or ``force_explicit`` is set.
    """

    def __init__(self, cfg: BaseModelConfig) -> None:
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.n_heads, self.d_head = h, dh
        self.W_Q = nn.Parameter(torch.empty(h, d, dh))
        self.W_K = nn.Parameter(torch.empty(h, d, dh))
        self.W_V = nn.Parameter(torch.empty(h, d, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))
        self.b_Q = nn.Parameter(torch.zeros(h, dh))
        self.b_K = nn.Parameter(torch.zeros(h, dh))
        self.b_V = nn.Parameter(torch.zeros(h, dh))
        self.b_O = nn.Parameter(torch.zeros(d))
        for w in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(w, std=cfg.init_range)
        # Shapes as in TransformerLens: q/k/v/z [batch, pos, head, d_head],
        # scores/pattern [batch, head, query_pos, key_pos].
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_z = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.forced_path: str | None = None  # attention.ATTENTION_PATHS, or None: chosen per input

    @property
    def force_explicit(self) -> bool:
        """True while the dense explicit path is forced (hooks then see every pattern)."""
        return self.forced_path == "dense"

    def needs_explicit_path(self, x: Tensor) -> bool:
        """The dense scores/pattern path: when the scores or pattern are hooked, or forced."""
        return (
            self.force_explicit
            or self.hook_attn_scores.has_hooks()
            or self.hook_pattern.has_hooks()
        )

    def path(self, x: Tensor, layout: AttentionLayout) -> str:
        """``"dense"``, ``"split-matmul"`` or ``"split"`` for this input (see the class)."""
        if self.needs_explicit_path(x):
            return "dense"
        return self.forced_path or attention_kernel(x.device, layout.n_new + layout.n_past)

    def forward(
        self,
        x: Tensor,
        layout: AttentionLayout,
        cache: KVCacheEntry | None = None,
        append: bool = True,
    ) -> Tensor:
        """Attention of x's tokens as ``layout`` allows; with a ``cache`` the keys are the
        cached tokens followed by x's, and x's keys/values are stored when ``append``."""
        b, t, d = x.shape
        h, dh = self.n_heads, self.d_head
        # One fused projection: [d, 3*h*dh] built from the TL-layout weights (the cat of the
        # [d, h, dh] views writes it contiguous: no copy for the reshape).
        w = [w.permute(1, 0, 2) for w in (self.W_Q, self.W_K, self.W_V)]
        w_qkv = torch.cat(w, dim=1).view(d, -1)
        b_qkv = torch.cat([self.b_Q, self.b_K, self.b_V], dim=0).reshape(-1)
        qkv = torch.addmm(b_qkv, x.reshape(b * t, d), w_qkv).view(b, t, 3, h, dh)
        # one copy to [3, b, h, t, dh]: q, k, v come out contiguous, so the attention
        # matmuls below need no copies (and backward gathers their gradients in one stack)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)
        # hooks see TransformerLens' [b, t, h, dh]
        q = self.hook_q(q.transpose(1, 2)).transpose(1, 2)
        k = self.hook_k(k.transpose(1, 2)).transpose(1, 2)
        v = self.hook_v(v.transpose(1, 2)).transpose(1, 2)  # [b, h, t, dh]
        if cache is not None:
            k, v = cache.extend(k, v, append=append)
        path = self.path(x, layout)
        if path == "dense":
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            blocked = layout.blocked_mask(x.device)
            if blocked is not None:
                scores = scores.masked_fill(blocked, float("-inf"))
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
            z = pattern.to(v.dtype) @ v
        else:
            z = split_attention(q, k, v, layout, matmul=path == "split-matmul")
        z = self.hook_z(z.transpose(1, 2))  # [b, t, h, dh]
        w_o = self.W_O.reshape(h * dh, d)
        # contiguous() + view: one copy operator where reshape dispatches two
        return torch.addmm(self.b_O, z.contiguous().view(b * t, h * dh), w_o).view(b, t, d)


class MLP(nn.Module):
    """Two-layer MLP (TL names ``W_in``, ``W_out``, ``hook_pre``, ``hook_post``)."""

    def __init__(self, cfg: BaseModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        nn.init.normal_(self.W_in, std=cfg.init_range)
        nn.init.normal_(self.W_out, std=cfg.init_range)
        self.act = _ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        pre = torch.addmm(self.b_in, x.contiguous().view(-1, x.shape[-1]), self.W_in)
        post = self.hook_post(self.act(self.hook_pre(pre.view(*lead, -1))))
        return torch.addmm(self.b_out, post.reshape(-1, post.shape[-1]), self.W_out).view_as(x)


class TransformerBlock(nn.Module):
    """Pre-LN block with TL's residual-stream hook points."""

    def __init__(self, cfg: BaseModelConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self,
        resid: Tensor,
        layout: AttentionLayout,
        cache: KVCacheEntry | None = None,
        append: bool = True,
    ) -> Tensor:
        resid = self.hook_resid_pre(resid)
        attn_out = self.attn(self.ln1(resid), layout, cache, append)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(attn_out))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(self.ln2(resid))))
