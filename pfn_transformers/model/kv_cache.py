"""Keys and values of the tokens seen so far, so generation costs one token's pass per token.

The counterpart of TransformerLens' ``HookedTransformerKeyValueCache``: one entry per layer
holding ``[batch, head, pos, d_head]`` keys and values. New tokens attend to every cached
token and causally among themselves; ``append=False`` runs tokens that nothing later may
see (a PFN's query tokens) without storing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .masks import AttentionLayout


@dataclass
class KVCacheEntry:
    """One layer's cached keys and values.

    Stored in buffers ``[batch, head, capacity, d_head]`` that double when full, so adding
    a token copies one token, not the whole cache (concatenating each step made a 256-token
    rollout spend a third of its time in copies).
    """

    buffer_k: Tensor | None = None
    buffer_v: Tensor | None = None
    length: int = 0

    @property
    def keys(self) -> Tensor | None:
        return None if self.buffer_k is None else self.buffer_k[:, :, : self.length]

    @property
    def values(self) -> Tensor | None:
        return None if self.buffer_v is None else self.buffer_v[:, :, : self.length]

    def _reserve(self, like: Tensor, needed: int) -> None:
        capacity = 0 if self.buffer_k is None else self.buffer_k.shape[2]
        if needed <= capacity:
            return
        b, h, _, dh = like.shape
        capacity = max(needed, 2 * capacity, 16)
        new_k = like.new_empty(b, h, capacity, dh)
        new_v = like.new_empty(b, h, capacity, dh)
        if self.length:
            new_k[:, :, : self.length] = self.keys
            new_v[:, :, : self.length] = self.values
        self.buffer_k, self.buffer_v = new_k, new_v

    def extend(self, k: Tensor, v: Tensor, *, append: bool) -> tuple[Tensor, Tensor]:
        """Cached + new keys and values; the new ones are stored when ``append``."""
        if not append:
            if self.length == 0:
                return k, v
            return torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        end = self.length + k.shape[2]
        self._reserve(k, end)
        self.buffer_k[:, :, self.length : end] = k
        self.buffer_v[:, :, self.length : end] = v
        self.length = end
        return self.keys, self.values


@dataclass
class KVCache:
    """Per-layer ``KVCacheEntry``s plus the number of cached tokens (positions)."""

    entries: list[KVCacheEntry] = field(default_factory=list)
    length: int = 0

    @classmethod
    def for_model(cls, n_layers: int) -> KVCache:
        return cls([KVCacheEntry() for _ in range(n_layers)])

    @property
    def cached(self) -> int:
        """Tokens whose keys and values are stored (the keys before a pass's own)."""
        return self.entries[0].length if self.entries else 0

    def layout(self, new: int) -> AttentionLayout:
        """What ``new`` tokens after the cache may attend to: every cached token, and each
        other causally."""
        return AttentionLayout(new, n_past=self.cached)


__all__ = ["KVCache", "KVCacheEntry"]
