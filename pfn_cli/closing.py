"""The closing evaluation of ``pfn train``: the model ``train()`` returned, scored on its
prior (eval.json), the fine-tuning report, and the objective a sweeper minimises.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from pfn_cli.errors import CliError
from pfn_cli.experiment import Experiment, source_prior
from pfn_cli.runs import last_metrics
from pfn_transformers.runs import RunLifecycle

log = logging.getLogger("pfn.train")


OBJECTIVES = ("excess_nll", "nll", "loss")


def objective(
    wanted: str, results: dict[str, Any] | None, run_dir: Path
) -> tuple[str, float | None]:
    """What a sweeper minimises: ``excess_nll`` (against the exact posterior), falling back
    to the final evaluation's held-out ``nll`` for priors without one, and to the last
    training ``loss`` when there was no evaluation. Returns (the name used, its value), the
    value None when nothing finite was reported."""
    if wanted not in OBJECTIVES:
        raise CliError(f"objective={wanted!r} is not valid; choose one of {list(OBJECTIVES)}.")
    candidates = OBJECTIVES[OBJECTIVES.index(wanted) :]
    for name in candidates:
        if name == "loss":
            value = (last_metrics(run_dir, "loss_avg") or {}).get("loss_avg")
        else:
            value = ((results or {}).get(name) or {}).get("mean")
        if isinstance(value, int | float) and math.isfinite(value):
            if name != wanted:
                log.warning("objective=%s is not available for this run; using %s.", wanted, name)
            return name, float(value)
    log.warning("objective=%s: the run reported no finite %s.", wanted, ", ".join(candidates))
    return wanted, None


def final_evaluation(
    run: RunLifecycle, exp: Experiment, model: Any, ev: Any
) -> dict[str, Any] | None:
    """Short evaluation of the model train() returned against the prior (eval.json)."""
    from pfn_transformers.data.base import has_exact_posterior
    from pfn_transformers.evaluation import evaluate

    if not has_exact_posterior(exp.prior):
        log.info(
            "prior=%s has no exact posterior predictive: the final evaluation reports NLL only.",
            exp.prior_choice,
        )
    prov = model.provenance or {}
    seq_len = ev.get("seq_len") or exp.training_config.seq_len
    results = evaluate(
        model,
        exp.prior,
        num_datasets=int(ev.get("num_datasets", 256)),
        seq_len=int(seq_len),
        batch_size=int(ev.get("batch_size", 128)),
        seed=int(ev.get("seed", 0)),
        baselines=bool(ev.get("baselines", True)),
    )
    results = {
        **results,
        "run": str(run.path),
        "checkpoint": (prov.get("origin") or {}).get("checkpoint"),
        "step": (prov.get("training") or {}).get("steps"),
        "prior_choice": exp.prior_choice,
        "model_choice": exp.model_choice,
    }
    note = ((prov.get("training") or {}).get("outcome") or {}).get("note")
    if note:  # the header of the table, and eval.json, say the model hardly trained
        results["training_note"] = note
    if exp.source is not None and ev.get("fine_tuning", True):
        results["fine_tuning"] = fine_tuning_report(exp, model, results, ev)
    run.evaluated(results)
    if ev.get("plots", False):
        from pfn_transformers.evaluation import plot_evaluation

        plot_evaluation(results, run.path / "figures")
    return results


def fine_tuning_report(exp: Experiment, model: Any, results: dict, ev: Any) -> dict[str, Any]:
    """eval.json's ``fine_tuning``: the source and the fine-tuned model on the new prior,
    and on the source's own prior when it is recorded (forgetting = after - before)."""
    from pfn_transformers.evaluation import transfer_report

    source = exp.source.to(model.device)
    source_seq = ((source.provenance or {}).get("training") or {}).get("seq_len")
    report = transfer_report(
        source,
        model,
        exp.prior,
        source_prior=source_prior(source),
        tuned_on_new=results,
        seq_len=int(results["seq_len"]),
        source_seq_len=int(source_seq) if source_seq else None,
        num_datasets=int(ev.get("num_datasets", 256)),
        batch_size=int(ev.get("batch_size", 128)),
        seed=int(ev.get("seed", 0)),
    )
    parent = (source.provenance or {}).get("origin") or {}
    return {
        "source": parent.get("folder") or parent.get("run") or parent.get("checkpoint"),
        **report,
    }
