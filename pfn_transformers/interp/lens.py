"""Logit lens: decode the residual stream after every block as if it were the last.

Where in depth does the prediction become Bayes-optimal? Each layer's residual stream at the
prediction positions goes through the model's own final LayerNorm and unembedding
(``decode_resid``) and is scored on held-out datasets against the exact posterior predictive
(``scoring``), per layer and per context size n. The last layer's lens is the model's output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pfn_transformers.evaluation.metrics import summarize
from pfn_transformers.interp.hooks import cache_at_predictions, residual_points
from pfn_transformers.interp.scoring import HeldOut, score


def logit_lens(
    model: Any, x_or_y: Tensor, y: Tensor | None = None, *, include_embed: bool = True
) -> dict[str, Tensor]:
    """``{label: logits [B, S, out]}`` decoded from each residual point (``residual_points``),
    position n predicting y_n; called like ``model.predictive_logits``."""
    inputs = (x_or_y,) if y is None else (x_or_y, y)
    points = residual_points(model, include_embed)
    resid = cache_at_predictions(model, inputs, [name for _, name in points])
    return {label: model.decode_resid(resid[name]) for label, name in points}


def _paired_not_worse(diff: Tensor) -> bool:
    """Is a layer's paired score difference to the output within 2 stderr of zero (or below)?"""
    stat = summarize(diff)
    mean, se = stat["mean"], stat["stderr"] or 0.0
    return mean is not None and mean <= 2 * se


@torch.inference_mode()
def lens_scores(
    model: Any, heldout: HeldOut, *, batch_size: int = 256, include_embed: bool = True
) -> dict[str, Any]:
    """Score every layer's lens on the held-out datasets.

    Returns ``{"metric", "description", "layers", "per_layer": {label: summary},
    "matches_output_from"}``; a summary is ``evaluate``'s ``{"mean", "stderr", "per_n",
    "per_n_stderr"}`` (stderr over datasets). ``matches_output_from`` is the first layer whose
    paired score is not worse than the model output's by more than 2 stderr.
    """
    parts: dict[str, list[Tensor]] = {}
    for rows in heldout.chunks(batch_size):
        for label, logits in logit_lens(
            model, *heldout.inputs(rows), include_embed=include_embed
        ).items():
            parts.setdefault(label, []).append(score(model, heldout, logits, rows))
    scores = {label: torch.cat(p, 0) for label, p in parts.items()}
    labels = list(scores)
    final = scores[labels[-1]]
    matches = next(lab for lab in labels if _paired_not_worse(scores[lab] - final))
    return {
        "metric": heldout.metric,
        "description": heldout.description,
        "layers": labels,
        "per_layer": {label: summarize(s) for label, s in scores.items()},
        "matches_output_from": matches,
    }
