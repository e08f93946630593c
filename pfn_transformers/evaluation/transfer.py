"""What fine-tuning gained and what it forgot, scored like every other evaluation.

``transfer_report(source, tuned, new_prior, source_prior=...)`` evaluates the source model
and the fine-tuned one on the new prior (the gain) and, when the source's prior is known,
on that prior before and after (``forgetting`` = after - before, in nats: how much of the
old task was lost). The score is the paired excess NLL against the exact posterior where the
prior has one, else the NLL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .metrics import evaluate


def _score(results: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(metric name, {"mean", "stderr"}) of an evaluate() result."""
    for name in ("excess_nll", "nll"):
        stat = results.get(name)
        if isinstance(stat, Mapping) and stat.get("mean") is not None:
            return name, {"mean": stat["mean"], "stderr": stat.get("stderr")}
    return "nll", None


def _before_after(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    metric, b = _score(before)
    _, a = _score(after)
    change = None if a is None or b is None else a["mean"] - b["mean"]
    return {"metric": metric, "before": b, "after": a, "change": change}


def transfer_report(
    source: Any,
    tuned: Any,
    new_prior: Any,
    *,
    source_prior: Any = None,
    tuned_on_new: Mapping[str, Any] | None = None,
    seq_len: int,
    source_seq_len: int | None = None,
    **evaluate_kwargs: Any,
) -> dict[str, Any]:
    """Before/after scores on the new prior and (when given) on the source's prior.

    ``tuned_on_new``: an evaluate() result of ``tuned`` on ``new_prior`` already computed
    (reused, not recomputed). ``evaluate_kwargs`` go to every ``evaluate`` call
    (num_datasets, batch_size, seed).
    """
    if tuned_on_new is None:
        tuned_on_new = evaluate(tuned, new_prior, seq_len=seq_len, **evaluate_kwargs)
    source_on_new = evaluate(source, new_prior, seq_len=seq_len, **evaluate_kwargs)
    report: dict[str, Any] = {
        "new_prior": {
            "prior": type(new_prior).__name__,
            **_before_after(source_on_new, tuned_on_new),
        },
        "source_prior": None,
    }
    if source_prior is not None:
        n = source_seq_len or seq_len
        before = evaluate(source, source_prior, seq_len=n, **evaluate_kwargs)
        after = evaluate(tuned, source_prior, seq_len=n, **evaluate_kwargs)
        entry = _before_after(before, after)
        report["source_prior"] = {"prior": type(source_prior).__name__, "seq_len": n, **entry}
        report["forgetting"] = entry["change"]
    return report


__all__ = ["transfer_report"]
