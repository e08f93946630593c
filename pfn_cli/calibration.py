"""The ``calibration`` section of ``pfn eval``: PIT of the run's predictive on its prior.

``pfn_transformers.evaluation.calibration`` does the work; this adds the section to the
results, draws its figure and says in one line what it found. Point heads have no predictive
distribution: the section records why it was skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger("pfn.eval")


def add_calibration(
    results: dict[str, Any],
    model: Any,
    prior: Any,
    cfg: DictConfig,
    *,
    seq_len: int,
    fig_dir: Path | None,
) -> tuple[list[str], str | None]:
    """Put ``results["calibration"]`` in place; return (figure paths, a summary line)."""
    if not cfg.get("calibration", True):
        return [], None
    from pfn_transformers.evaluation import calibration, plot_calibration

    if model.task.head == "point":
        results["calibration"] = {"skipped": "prediction_type='point' has no predictive"}
        return [], None
    section = calibration(
        model,
        prior,
        num_datasets=int(cfg.num_datasets),
        seq_len=seq_len,
        batch_size=int(cfg.batch_size),
        seed=int(cfg.seed),
    )
    results["calibration"] = section
    ks = section["ks"]
    verdict = "[green]calibrated[/]" if section["calibrated"] else "[red]not calibrated[/]"
    line = (
        f"PIT calibration: {verdict} (KS distance {ks['distance']:.4f}, null band "
        f"{ks['critical']:.4f}); {section['reading']}"
    )
    figures: list[str] = []
    if fig_dir is not None:
        try:
            figures = [str(p) for p in plot_calibration(section, fig_dir)]
        except Exception as exc:  # figures are a bonus; the numbers are in the results
            log.warning("Could not draw the calibration figure: %s", exc)
    return figures, line
