"""Judge a PFN against the exact posterior predictive (DESIGN.md, "Inference quality").

``evaluate(model, prior, seq_len=...)`` returns a JSON-ready dict (paired excess NLL with
standard errors, bucket floor, prior-predictive baseline, MSE, coverage, accuracy, KL);
``plot_evaluation`` and ``plot_predictive_bands`` draw it; ``transfer_report`` scores a
fine-tuned model against its source (gain on the new prior, forgetting on the old one).
``calibration(model, prior)`` checks the PIT of the model's predictive on data from the
prior (no exact posterior needed), ``exact_calibration(prior)`` the prior's own posterior
formula, and ``plot_calibration`` draws either. ``predictive_draws`` locates the model's
sampled draws under the exact predictive (the tails a user sees in ``pfn sample``).
"""

from pfn_transformers.evaluation.calibration import (
    calibration,
    exact_calibration,
    pit_report,
    plot_calibration,
)
from pfn_transformers.evaluation.draws import predictive_draws
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
    "calibration",
    "evaluate",
    "exact_calibration",
    "head_kind",
    "pit_report",
    "plot_calibration",
    "plot_evaluation",
    "plot_predictive_bands",
    "predictive_draws",
    "summarize",
    "transfer_report",
]
