"""A supervised context encoded once and queried any number of times.

``PFNModel.predict`` runs the context and the queries in one pass, so every batch of queries
re-encodes the context and memory grows with the number of queries. ``CachedContext`` runs
the context tokens once into the model's KV cache (``model/kv_cache.py``, the one
``generate`` uses) and then feeds the queries in chunks through ``PFNModel._run`` with
``append=False``: each query sees the cached context and itself, never another query, which
is exactly ``predict``'s mask, so the logits equal ``predict``'s (to float rounding) while
memory stays bounded by the chunk size::

    ctx = CachedContext(model, x_context, y_context)     # [B, N, D], [B, N]
    dist = ctx.predictive(x_query)                       # [B, M, D] -> batch shape [B, M]
    logits = ctx.logits(x_query_2)                       # any number of further batches

A model trained with ``condition_on`` takes known hyperparameters once, with the context
(``CachedContext(model, x, y, hyperparameters={"noise_var": 0.01})``): they live in the
start token, which the cache holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .distributions import distribution_from_logits
from .model.kv_cache import KVCache
from .model.length import warn_past_trained
from .model.masks import AttentionLayout

MIN_CHUNK, MAX_CHUNK = 128, 1024  # bounds of the default queries per pass


def default_chunk(num_tokens: int) -> int:
    """Queries per pass: about the context's token count, within [128, 1024].

    A pass's attention costs chunk x (context + chunk), since the chunk's own keys sit
    beside the context's (each query uses only its own); a chunk near the context size keeps
    that waste under 2x while passes stay large enough to use the hardware, and memory is
    bounded by MAX_CHUNK x (context + MAX_CHUNK) scores per head.
    """
    return max(MIN_CHUNK, min(MAX_CHUNK, int(num_tokens)))


@dataclass
class _ContextKVCache(KVCache):
    """KV cache of a fixed context whose later tokens are independent queries.

    Once ``queries`` is set, ``layout`` lets each new token see every cached token and itself
    only (``predict``'s query mask, where the plain cache would let new tokens see each other
    causally).
    ``length`` is the position the next token takes, as in ``KVCache``; ``CachedContext``
    moves it per chunk so queries sit at the positions ``predict`` gives them (this matters
    only with positional embeddings). The number of cached tokens is the entries' length.
    """

    queries: bool = False  # False while the context itself is encoded (causal, as usual)

    def layout(self, new: int) -> AttentionLayout:
        if not self.queries:
            return super().layout(new)
        return AttentionLayout(0, n_queries=new, queries_see="all", n_past=self.cached)


class CachedContext:
    """Keys and values of a context ``(x_context [B, N, D], y_context [B, N])`` per layer,
    given the known ``hyperparameters`` of a model with ``condition_on`` (dict name -> float
    or Tensor[B]; missing or NaN: unknown).

    Built once (one forward pass over the N context tokens); ``logits``/``predictive`` then
    cost one pass over the queries each, in chunks of ``chunk_size`` queries per row
    (default: ``default_chunk`` of the context's token count).
    """

    def __init__(
        self,
        model: Any,
        x_context: Tensor,
        y_context: Tensor,
        *,
        chunk_size: int | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
    ) -> None:
        if not getattr(model, "supervised", False):
            raise ValueError(
                "CachedContext is for supervised models (x, y pairs); an unsupervised model "
                "continues a sequence with model.generate(prefix=...) on its own KV cache."
            )
        self.model = model
        if chunk_size is not None:
            _check_chunk(chunk_size)
        x_context = model._home(x_context)
        y_context = model._check_inputs(x_context, model._home(y_context))
        self.batch_size, self.num_context = y_context.shape
        warn_past_trained(model, f"a context of {self.num_context} points and a query",
                          self.num_context + 1)  # fmt: skip
        self.input_dim = model.config.input_dim
        self._cache = _ContextKVCache.for_model(len(model.blocks))
        cond = model._condition(hyperparameters, self.batch_size)
        with torch.no_grad():
            ex = model._embed_x(x_context)
            tokens = model._pair_tokens(x_context, y_context, ex)
            if model.config.mask_type == "gpt2":  # [start, q_0, p_0, q_1, p_1, ...]
                queries = model._query_tokens(x_context, ex)
                b, n, d = tokens.shape
                tokens = torch.stack([queries, tokens], dim=2).reshape(b, 2 * n, d)
            model._run(
                torch.cat([model._start(self.batch_size, cond), tokens], dim=1), cache=self._cache
            )
        self.num_tokens = self._cache.length
        self._cache.queries = True
        self.chunk_size = default_chunk(self.num_tokens) if chunk_size is None else chunk_size

    # ------------------------------------------------------------------ queries
    @property
    def nbytes(self) -> int:
        """Memory held by the cached keys and values."""
        total = 0
        for entry in self._cache.entries:
            for t in (entry.keys, entry.values):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    def _check_queries(self, x_query: Tensor) -> Tensor:
        x_query = self.model._home(torch.as_tensor(x_query))
        if x_query.ndim == 2 and self.batch_size == 1:
            x_query = x_query.unsqueeze(0)
        if (
            x_query.ndim != 3
            or x_query.shape[0] != self.batch_size
            or (x_query.shape[-1] != self.input_dim)
        ):
            raise ValueError(
                f"x_query has shape {tuple(x_query.shape)}; expected [batch={self.batch_size}, "
                f"num_queries, input_dim={self.input_dim}] to match the cached context"
                + (
                    " (or [num_queries, input_dim] for a single context)."
                    if self.batch_size == 1
                    else "."
                )
            )
        return x_query

    @torch.no_grad()
    def logits(self, x_query: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Logits ``[B, M, out]`` at M query points, each seeing the whole context and itself
        (equal to ``model.predict(x_context, y_context, x_query)``)."""
        x_query = self._check_queries(x_query)
        chunk = self.chunk_size if chunk_size is None else _check_chunk(chunk_size)
        model, cache = self.model, self._cache
        m = x_query.shape[1]
        parts = []
        try:
            for start in range(0, m, chunk):
                x_chunk = x_query[:, start : start + chunk]
                cache.length = self.num_tokens + start  # predict's positions for these queries
                resid = model._run(model._query_tokens(x_chunk), cache=cache, append=False)
                parts.append(model._unembed(resid))
        finally:
            cache.length = self.num_tokens
        if not parts:
            width = model.W_U.shape[-1]
            return x_query.new_zeros(self.batch_size, 0, width, dtype=torch.float32)
        return torch.cat(parts, dim=1)

    def predictive(
        self,
        x_query: Tensor,
        *,
        chunk_size: int | None = None,
        validate_args: bool | None = None,
    ) -> Distribution:
        """The predictive distribution at the query points (batch shape ``[B, M]``)."""
        logits = self.logits(x_query, chunk_size=chunk_size)
        return distribution_from_logits(self.model, logits, validate_args=validate_args)

    def __repr__(self) -> str:
        return (
            f"CachedContext(batch={self.batch_size}, context={self.num_context}, "
            f"tokens={self.num_tokens}, layers={len(self._cache.entries)}, "
            f"{self.nbytes / 2**20:.2f} MiB)"
        )


def _check_chunk(chunk_size: Any) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"chunk_size={chunk_size!r} is not valid; it must be a positive int (queries per "
            "pass; memory grows with it)."
        )
    return chunk_size


__all__ = ["CachedContext", "default_chunk"]
