"""Token layouts and attention masks (True = may attend).

Every sequence starts with a learned start token that all tokens see, so even the first
prediction has something to attend to and a query can tell how much context it has.

Supervised, ``autoregressive-pfn``: ``[start, pair_0..pair_{P-1}, query_0..query_{Q-1}]``.
Pairs attend causally to pairs; query i sees pairs j < i (training) or every context pair
(inference), and itself, never another query.

Supervised, ``gpt2``: ``[start, q_0, p_0, q_1, p_1, ..., extra queries]``, plain causal over
the interleaved tokens; extra inference queries see the whole prefix and themselves.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=128)
def _pfn_mask(n_pairs: int, n_queries: int, queries_see_all: bool, device: str) -> Tensor:
    t = 1 + n_pairs + n_queries
    mask = torch.zeros(t, t, dtype=torch.bool)
    mask[:, 0] = True
    pairs = slice(1, 1 + n_pairs)
    mask[pairs, pairs] = torch.ones(n_pairs, n_pairs, dtype=torch.bool).tril()
    queries = torch.arange(1 + n_pairs, t)
    if queries_see_all:
        mask[1 + n_pairs :, pairs] = True
    else:  # query i sees pairs 0..i-1
        mask[1 + n_pairs :, pairs] = torch.ones(n_queries, n_pairs, dtype=torch.bool).tril(-1)
    mask[queries, queries] = True
    return mask.to(device)


@lru_cache(maxsize=64)
def _interleaved_mask(n_pairs: int, n_extra_queries: int, device: str) -> Tensor:
    prefix = 1 + 2 * n_pairs
    t = prefix + n_extra_queries
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    if n_extra_queries:
        mask[prefix:, prefix:] = torch.eye(n_extra_queries, dtype=torch.bool)
    return mask.to(device)


@lru_cache(maxsize=64)
def _causal_mask(t: int, device: str) -> Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril().to(device)


def _cached(fn, *args):
    """The lru-cached mask eagerly; under torch.compile the builder itself (traced once
    into the graph as a constant, which dynamo cannot do through the cache wrapper)."""
    return fn.__wrapped__(*args) if torch.compiler.is_compiling() else fn(*args)


def pfn_mask(n_pairs: int, n_queries: int, *, queries_see_all: bool, device) -> Tensor:
    """Mask for the ``autoregressive-pfn`` layout."""
    return _cached(_pfn_mask, n_pairs, n_queries, queries_see_all, str(device))


def interleaved_mask(n_pairs: int, n_extra_queries: int, *, device) -> Tensor:
    """Mask for the ``gpt2`` supervised layout (interleaved query/pair tokens)."""
    return _cached(_interleaved_mask, n_pairs, n_extra_queries, str(device))


def causal_mask(t: int, *, device) -> Tensor:
    """Plain causal mask (unsupervised sequences)."""
    return _cached(_causal_mask, t, str(device))
