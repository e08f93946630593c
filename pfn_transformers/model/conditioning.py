"""Hyperparameter conditioning: known values of a prior's hyperparameters as model input.

A ``RegressionConfig(condition_on=["lengthscale", ...])`` model reads, per dataset, the
values of the named hyperparameters that are known (the "style" input of automl/PFNs, which
BoTorch's PFN model uses the same way). Each enters as two features, ``symlog(value)`` and a
known flag (value 0, flag 0 when unknown), and an MLP of the 2k features is added to the start
token that every token attends to, so the context cache and the token count are unchanged.

Users give ``hyperparameters`` as a dict name -> float or ``Tensor[B]``; a missing name or a
NaN entry means "unknown". Training drops each value with ``condition_drop_prob`` (sets it to
NaN), so one model learns the conditional and the marginal predictive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

Hyperparameters = Mapping[str, Any]


def check_condition_fields(cls_name: str, names: Any, drop_prob: Any) -> list[str]:
    """Validate ``condition_on`` / ``condition_drop_prob``; returns the names as a list."""
    if names is None:
        names = []
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise ValueError(
            f"{cls_name}.condition_on={names!r} is not valid; give a list of hyperparameter "
            "names, e.g. ['lengthscale', 'noise_var'] (or [] for none)."
        )
    names = list(names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"{cls_name}.condition_on={names!r} is not valid; it must list distinct, non-empty "
            "hyperparameter names (strings) as the prior's draw() reports them."
        )
    ok = isinstance(drop_prob, int | float) and not isinstance(drop_prob, bool)
    if not ok or not 0.0 <= float(drop_prob) <= 1.0:
        raise ValueError(
            f"{cls_name}.condition_drop_prob={drop_prob!r} is not valid; it must be a number in "
            "[0, 1] (the chance that training hides each hyperparameter from the model)."
        )
    return names


def symlog(v: Tensor) -> Tensor:
    """sign(v) log(1 + |v|): keeps scales from 1e-3 to 1e3 within a few units."""
    return torch.sign(v) * torch.log1p(v.abs())


def _column(name: str, value: Any, batch: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 0:
        return t.expand(batch)
    t = t.reshape(-1) if t.ndim == 2 and t.shape[-1] == 1 else t
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"hyperparameters[{name!r}] has shape {tuple(t.shape)}; give a float or a tensor of "
            f"shape [batch={batch}] (NaN marks a dataset whose value is unknown)."
        )
    return t


def condition_features(
    names: list[str],
    hyperparameters: Hyperparameters | None,
    batch: int,
    device: torch.device,
) -> Tensor:
    """``[B, 2k]`` float32: symlog of each known value (0 when unknown), then k known flags.

    A name not in ``names`` is an error (a typo would otherwise silently condition on
    nothing); missing names and NaN entries are unknown. No host synchronisation.
    """
    given = dict(hyperparameters or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(
            f"hyperparameters {unknown} are not ones this model conditions on; it was trained "
            f"with condition_on={names} (leave a name out, or pass NaN, for an unknown value)."
        )
    if not names:
        return torch.zeros(batch, 0, device=device)
    values, known = [], []
    for name in names:
        if name not in given or given[name] is None:
            col = torch.full((batch,), math.nan, device=device)
        else:
            col = _column(name, given[name], batch, device)
        ok = ~torch.isnan(col)
        values.append(torch.where(ok, symlog(torch.nan_to_num(col)), torch.zeros_like(col)))
        known.append(ok.to(col.dtype))
    return torch.stack(values + known, dim=-1)


def drop_hyperparameters(
    params: Mapping[str, Tensor], names: list[str], drop_prob: float
) -> dict[str, Tensor]:
    """The listed ``params`` with each dataset's value hidden (NaN) with probability
    ``drop_prob``, independently per name and dataset (torch's global RNG on the values'
    device, so checkpoints resume the same drops)."""
    out = {}
    for name in names:
        v = params[name].to(torch.float32)
        if drop_prob > 0:
            hide = torch.rand(v.shape, device=v.device) < drop_prob
            v = v.masked_fill(hide, math.nan)
        out[name] = v
    return out


def check_prior_exposes(prior: Any, names: list[str], params: Mapping[str, Any] | None) -> None:
    """Refuse a prior that cannot report every name in ``condition_on`` (checked on one draw)."""
    pname = type(prior).__name__
    if params is None:
        raise ValueError(
            f"condition_on={names} needs a prior that reports the hyperparameters it drew for "
            f"each dataset: a draw(batch_size, seq_len, device=None) method returning "
            f"PriorDraw(x, y, params), which {pname} does not have."
        )
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(
            f"condition_on={names} lists {missing}, which the prior {pname} does not report; "
            f"its draw() exposes {sorted(params)}."
        )


def logits_given(
    model: Any, x_or_y: Tensor, y: Tensor | None, hyperparameters: Hyperparameters | None
) -> Tensor:
    """``model.predictive_logits``, passing ``hyperparameters`` only when there are some (a
    subclass may override ``predictive_logits(x_or_y, y)`` without them)."""
    if hyperparameters is None:
        return model.predictive_logits(x_or_y, y)
    return model.predictive_logits(x_or_y, y, hyperparameters=hyperparameters)


__all__ = [
    "Hyperparameters",
    "check_condition_fields",
    "check_prior_exposes",
    "condition_features",
    "drop_hyperparameters",
    "logits_given",
    "symlog",
]
