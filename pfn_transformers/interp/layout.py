"""What each token of a PFN's input stands for, so attention and caches can be labelled.

The layouts are those of ``model(x, y)`` / ``model(y)`` (see ``model/masks.py``) for S data
points:

- supervised ``autoregressive-pfn``: ``[start, p0..p{S-1}, q0..q{S-1}]`` (pairs, then queries);
- supervised ``gpt2``: ``[start, q0, p0, q1, p1, ...]``;
- unsupervised: ``[start, y0, ..., y{S-1}]``.

The prediction of y_n is read at ``model.predictive_positions(S)[n]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pfn_transformers.model.masks import causal_mask, interleaved_mask, pfn_mask

#: what a prediction row attends to, in the order the summaries report them
ATTENTION_ROLES = ("start", "earlier_data", "self", "other")


def _is_interleaved(model: Any) -> bool:
    return model.supervised and model.config.mask_type == "gpt2"


def num_tokens(model: Any, seq_len: int) -> int:
    """Tokens the model sees for ``seq_len`` data points."""
    return 1 + (2 * seq_len if model.supervised else seq_len)


def token_roles(model: Any, seq_len: int) -> list[str]:
    """A short label per token: ``start``, ``p{j}`` (pair), ``q{i}`` (query), ``y{t}``."""
    s = seq_len
    if not model.supervised:
        return ["start", *(f"y{t}" for t in range(s))]
    if _is_interleaved(model):
        return ["start", *(f"{kind}{i}" for i in range(s) for kind in ("q", "p"))]
    return ["start", *(f"p{j}" for j in range(s)), *(f"q{i}" for i in range(s))]


def layout_mask(model: Any, seq_len: int) -> Tensor:
    """The boolean attention mask ``[T, T]`` (True = may attend) of ``model(x, y)``/``model(y)``."""
    if not model.supervised:
        return causal_mask(seq_len + 1, device="cpu")
    if _is_interleaved(model):
        return interleaved_mask(seq_len, 0, device="cpu")
    return pfn_mask(seq_len, seq_len, queries_see_all=False, device="cpu")


def prediction_role_masks(model: Any, seq_len: int) -> dict[str, Tensor]:
    """For each prediction n (row n, at ``predictive_positions[n]``) which tokens are:

    - ``start``: the start token (unless it is the row itself: unsupervised n = 0);
    - ``earlier_data``: observed data before the prediction other than the row itself
      (pairs j < n supervised; y_0..y_{n-2} unsupervised, whose row token is y_{n-1});
    - ``self``: the row's own token;
    - ``other``: everything else (e.g. earlier query tokens in the ``gpt2`` layout).

    Each is a ``[S, T]`` bool tensor; the four partition every row.
    """
    s, t = seq_len, num_tokens(model, seq_len)
    pos = model.predictive_positions(s).cpu()
    rows = torch.arange(s)
    own = torch.zeros(s, t, dtype=torch.bool)
    own[rows, pos] = True
    start = torch.zeros(s, t, dtype=torch.bool)
    start[:, 0] = True
    start &= ~own
    data = torch.zeros(s, t, dtype=torch.bool)
    j = torch.arange(s)
    before = j.unsqueeze(0) < rows.unsqueeze(1)  # [n, j]: j < n
    if not model.supervised:
        data[:, 1:] = j.unsqueeze(0) < (rows.unsqueeze(1) - 1)  # y_j with j < n - 1
    elif _is_interleaved(model):
        data[:, 2 + 2 * j] = before
    else:
        data[:, 1 + j] = before
    other = ~(start | data | own)
    return {"start": start, "earlier_data": data, "self": own, "other": other}
