"""Token layouts and attention masks (True = may attend).

Every sequence starts with a learned start token that all tokens see, so even the first
prediction has something to attend to and a query can tell how much context it has.

Supervised, ``autoregressive-pfn``: ``[start, pair_0..pair_{P-1}, query_0..query_{Q-1}]``.
Pairs attend causally to pairs; query i sees pairs j < i (training) or every context pair
(inference), and itself, never another query.

Supervised, ``gpt2``: ``[start, q_0, p_0, q_1, p_1, ..., extra queries]``, plain causal over
the interleaved tokens; extra inference queries see the whole prefix and themselves.

Every one of these masks, and the KV cache's, is an ``AttentionLayout``: a causal prefix
followed by queries that see (all or a causal part of) the prefix and themselves. The
attention kernels work from that structure (two causal attentions instead of one arbitrary
mask, so flash kernels apply); ``dense_mask`` gives the boolean mask for the explicit path
and for whoever hooks the full pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

QUERY_VISIBILITY = ("all", "causal")


@dataclass(frozen=True)
class AttentionLayout:
    """Which keys each new token may attend to.

    Keys are ``n_past`` cached tokens followed by the new tokens: ``n_prefix`` tokens that
    attend causally (to every cached token and to the prefix up to themselves), then
    ``n_queries`` tokens that attend to themselves and to the cached + prefix keys:
    all of them (``queries_see="all"``) or, for query i, keys ``0..i`` (``"causal"``:
    ``[start, pair_0..pair_{i-1}]`` in the training layout). Nothing attends to a query.
    """

    n_prefix: int
    n_queries: int = 0
    queries_see: str = "all"
    n_past: int = 0

    def __post_init__(self) -> None:
        if self.queries_see not in QUERY_VISIBILITY:
            raise ValueError(
                f"queries_see={self.queries_see!r} is not valid; choose one of {QUERY_VISIBILITY}."
            )
        if self.queries_see == "causal" and self.n_queries and self.n_past:
            raise ValueError("causal queries are defined for sequences without cached tokens.")

    @property
    def n_new(self) -> int:
        """Tokens in this pass (rows of the mask)."""
        return self.n_prefix + self.n_queries

    @property
    def n_keys(self) -> int:
        """Keys the queries of this pass see besides themselves (cached + prefix)."""
        return self.n_past + self.n_prefix

    def dense_mask(self, device) -> Tensor | None:
        """The boolean mask ``[n_new, n_past + n_new]`` (None when every token sees every
        key: one new token after a cache)."""
        if self.n_new == 1 and (self.n_queries == 0 or self.queries_see == "all"):
            return None
        return self.full_mask(device)

    def full_mask(self, device) -> Tensor:
        """The boolean mask ``[n_new, n_past + n_new]``, always as a tensor."""
        return _cached(_dense_mask, self, str(device))

    def blocked_mask(self, device, *, full: bool = False) -> Tensor | None:
        """``~dense_mask`` (``~full_mask`` with ``full``): True where a key is hidden, the
        argument ``masked_fill`` takes, built once rather than inverted in every layer."""
        if not full and self.dense_mask(device) is None:
            return None
        if torch.compiler.is_compiling():  # a constant of the graph (see _cached)
            return ~_dense_mask.__wrapped__(self, str(device))
        return _blocked_mask(self, str(device), torch.is_inference_mode_enabled())


@lru_cache(maxsize=128)
def _dense_mask(layout: AttentionLayout, device: str) -> Tensor:
    c, p, q = layout.n_past, layout.n_prefix, layout.n_queries
    mask = torch.zeros(p + q, c + p + q, dtype=torch.bool)
    mask[:p, : c + p] = torch.ones(p, c + p, dtype=torch.bool).tril(c)
    if q:
        if layout.queries_see == "all":
            mask[p:, : c + p] = True
        else:  # query i sees keys 0..i of the prefix
            mask[p:, :p] = torch.ones(q, p, dtype=torch.bool).tril()
        own = torch.arange(q)
        mask[p + own, c + p + own] = True
    return mask.to(device)


@lru_cache(maxsize=128)
def _blocked_mask(layout: AttentionLayout, device: str, inference: bool) -> Tensor:
    # ``inference`` keys the cache: a mask made under inference_mode cannot be saved for a
    # later backward (masked_fill saves it)
    return ~_dense_mask.__wrapped__(layout, device)


def _cached(fn, *args):
    """The lru-cached mask eagerly; under torch.compile the builder itself (traced once
    into the graph as a constant, which dynamo cannot do through the cache wrapper)."""
    return fn.__wrapped__(*args) if torch.compiler.is_compiling() else fn(*args)


def pfn_layout(n_pairs: int, n_queries: int, *, queries_see_all: bool) -> AttentionLayout:
    """The ``autoregressive-pfn`` layout ``[start, pairs, queries]``."""
    return AttentionLayout(1 + n_pairs, n_queries, "all" if queries_see_all else "causal")


def interleaved_layout(n_pairs: int, n_extra_queries: int) -> AttentionLayout:
    """The ``gpt2`` supervised layout: causal over ``[start, q_0, p_0, ...]``, then extra
    queries that see that whole prefix and themselves."""
    return AttentionLayout(1 + 2 * n_pairs, n_extra_queries, "all")


def causal_layout(t: int) -> AttentionLayout:
    """Plain causal attention (unsupervised sequences)."""
    return AttentionLayout(t)


def pfn_mask(n_pairs: int, n_queries: int, *, queries_see_all: bool, device) -> Tensor:
    """Mask for the ``autoregressive-pfn`` layout."""
    return pfn_layout(n_pairs, n_queries, queries_see_all=queries_see_all).full_mask(device)


def interleaved_mask(n_pairs: int, n_extra_queries: int, *, device) -> Tensor:
    """Mask for the ``gpt2`` supervised layout (interleaved query/pair tokens)."""
    return interleaved_layout(n_pairs, n_extra_queries).full_mask(device)


def causal_mask(t: int, *, device) -> Tensor:
    """Plain causal mask (unsupervised sequences)."""
    return causal_layout(t).full_mask(device)
