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


@dataclass
class KVCacheEntry:
    """One layer's cached keys and values (None until the first tokens arrive)."""

    keys: Tensor | None = None
    values: Tensor | None = None

    def extend(self, k: Tensor, v: Tensor, *, append: bool) -> tuple[Tensor, Tensor]:
        """Cached + new keys and values; stored when ``append``."""
        if self.keys is not None:
            k = torch.cat([self.keys, k], dim=2)
            v = torch.cat([self.values, v], dim=2)
        if append:
            self.keys, self.values = k, v
        return k, v


@dataclass
class KVCache:
    """Per-layer ``KVCacheEntry``s plus the number of cached tokens (positions)."""

    entries: list[KVCacheEntry] = field(default_factory=list)
    length: int = 0

    @classmethod
    def for_model(cls, n_layers: int) -> KVCache:
        return cls([KVCacheEntry() for _ in range(n_layers)])

    def mask(self, new: int, device: torch.device) -> Tensor:
        """Boolean mask [new, length + new]: every cached token, causal among the new ones."""
        past = torch.ones(new, self.length, dtype=torch.bool, device=device)
        causal = torch.ones(new, new, dtype=torch.bool, device=device).tril()
        return torch.cat([past, causal], dim=1)


__all__ = ["KVCache", "KVCacheEntry"]
