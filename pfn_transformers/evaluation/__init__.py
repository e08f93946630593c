"""Judge a PFN against the exact posterior predictive (DESIGN.md, "Inference quality").

``evaluate(model, prior, seq_len=...)`` returns a JSON-ready dict (paired excess NLL with
standard errors, bucket floor, prior-predictive baseline, MSE, coverage, accuracy, KL);
``plot_evaluation`` and ``plot_predictive_bands`` draw it; ``transfer_report`` scores a
fine-tuned model against its source (gain on the new prior, forgetting on the old one).
"""

from pfn_transformers.evaluation.metrics import (
    COVERAGE_LEVELS,
    bucket_logits_from_cdf,
    evaluate,
    head_kind,
    summarize,
)
from pfn_transformers.evaluation.plots import plot_evaluation, plot_predictive_bands
from pfn_transformers.evaluation.transfer import transfer_report

__all__ = [
    "COVERAGE_LEVELS",
    "bucket_logits_from_cdf",
    "evaluate",
    "head_kind",
    "plot_evaluation",
    "plot_predictive_bands",
    "summarize",
    "transfer_report",
]
