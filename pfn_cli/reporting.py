"""What the commands print: the table of an evaluation and the closing lines of ``pfn train``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------- table
_ROWS = (
    ("excess_nll", "excess NLL (PFN - exact)"),
    ("nll", "NLL (PFN)"),
    ("exact_nll", "NLL (exact posterior)"),
    ("prior_predictive_nll", "NLL (prior predictive)"),
    ("floor_nll", "NLL floor (bucket borders)"),
    ("floor_excess_nll", "floor excess NLL"),
    ("kl", "KL(exact || PFN)"),
    ("mse", "MSE of predictive mean"),
    ("exact_mse", "MSE (exact mean)"),
    ("accuracy", "accuracy"),
    ("exact_accuracy", "accuracy (exact)"),
)


# a model trained with condition_on, scored with the true hyperparameters given
_CONDITIONAL_ROWS = (
    ("excess_nll", "excess NLL, hyperparameters given (PFN - exact GP given them)"),
    ("nll", "NLL (PFN), hyperparameters given"),
    ("exact_nll", "NLL (exact, hyperparameters given)"),
)


def _fmt(stat: Any) -> str | None:
    if isinstance(stat, dict):
        mean, se = stat.get("mean"), stat.get("stderr")
        if mean is None:
            return None
        text = f"{mean:.4f}"
        if se is not None and not (isinstance(se, float) and math.isnan(se)):
            text += f" ± {se:.4f}"
        return text
    if isinstance(stat, int | float) and not isinstance(stat, bool):
        return f"{stat:.4f}"
    return None


def results_table(results: dict[str, Any], title: str | None = "Evaluation") -> Any:
    """A Rich table of the headline numbers of an ``evaluate`` result."""
    from rich.table import Table

    note = results.get("training_note")
    if note and title:  # a model that trained almost nothing: say so above its numbers
        title = f"{title}\n[yellow]{note}[/]"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("mean ± stderr", justify="right")
    for key, label in _ROWS:
        if key == "kl" and results.get("kl") == results.get("excess_nll"):
            continue
        text = _fmt(results.get(key))
        if text is not None:
            table.add_row(label, text)
    cond = results.get("conditional")
    if isinstance(cond, dict):  # a model with condition_on: the rows above withheld them
        for key, label in _CONDITIONAL_ROWS:
            text = _fmt(cond.get(key))
            if text is not None:
                table.add_row(label, text)
    cov = results.get("coverage")
    if isinstance(cov, dict):
        for level, stat in cov.items():
            text = _fmt(stat)
            if text is not None:
                table.add_row(f"coverage of {float(level):.0%} interval", text)
    length = results.get("length")
    if isinstance(length, dict):  # evaluated past the trained length: the two parts apart
        t = length["trained_seq_len"]
        for part, where in (("within", f"n < {t}, trained"), ("beyond", f"n >= {t}, beyond")):
            block = length[part]
            key = "excess_nll" if "excess_nll" in block else "nll"
            text = _fmt(block.get(key))
            if text is not None:
                table.add_row(f"{dict(_ROWS)[key]} ({where})", text)
    beats = results.get("beats_prior_predictive")
    if beats is not None:
        table.add_row("beats prior predictive", "[green]yes[/]" if beats else "[red]no[/]")
    table.caption = (
        f"{results.get('num_datasets', '?')} datasets x {results.get('seq_len', '?')} positions, "
        f"prior {results.get('prior', '?')}; nats"
    )
    if isinstance(cond, dict):
        names = ", ".join(cond.get("hyperparameters") or [])
        table.caption += f"; the rows without 'given' withhold {names}"
    return table


BASELINE_LABELS = {"mle_ii": "MLE-II", "true_hyperparameters": "true hyperparameters"}


def _positions(seq_len: int) -> list[int]:
    """A few context sizes to show: 0, 1, 2, 5, 10, 20, 50, ... below ``seq_len``, and the last."""
    picks = [n for n in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if n < seq_len]
    return sorted(set(picks) | {seq_len - 1})


def baselines_table(results: dict[str, Any]) -> Any:
    """A Rich table of NLL per context size n and the mean: the PFN, the exact predictive and
    each baseline of ``results["baselines"]`` (None when there are none)."""
    from rich.table import Table

    base = results.get("baselines")
    if not base:
        return None
    cols = [("PFN", results.get("nll")), ("exact", results.get("exact_nll"))]
    cols += [(BASELINE_LABELS.get(k, k), v.get("nll")) for k, v in base.items()]
    table = Table(title="NLL per context size n (nats)", title_justify="left")
    table.add_column("n", justify="right")
    for label, _ in cols:
        table.add_column(label, justify="right")

    def cell(stat: Any, n: int | None) -> str:
        if not isinstance(stat, dict):
            return "-"
        value = stat.get("mean") if n is None else (stat.get("per_n") or [None] * (n + 1))[n]
        return "-" if value is None else f"{value:.3f}"

    for n in _positions(len((results.get("exact_nll") or {}).get("per_n") or [])):
        table.add_row(str(n), *(cell(stat, n) for _, stat in cols))
    table.add_row("mean", *(cell(stat, None) for _, stat in cols))
    spent = results.get("baselines_time_s")
    table.caption = "MLE-II: hyperparameters fitted to D_<n (marginal likelihood); true " + (
        "hyperparameters: the oracle GP that drew each dataset"
        + (f"; baselines took {spent:.1f}s" if isinstance(spent, int | float) else "")
    )
    return table


def print_train_summary(
    run_dir: Path, status: dict, results: dict | None, train_time: float
) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(train_summary_line(run_dir, status, train_time))
    note = status.get("training_note")
    if note:
        console.print(
            f"[bold yellow]Warning:[/] {note}. The evaluation below scores a model that has "
            "hardly trained."
        )
    if results is not None:
        console.print(results_table(results, title="Final evaluation (eval.json)"))
        if results.get("fine_tuning"):
            console.print(fine_tuning_line(results["fine_tuning"]))
    console.print(
        f"Next: pfn eval run={run_dir}\n      pfn sample run={run_dir}\n      pfn list-runs"
    )


def train_summary_line(run_dir: Path, status: dict, train_time: float) -> str:
    """ "Finished 8,000/8,000 steps in 175s (compiling 12s, not counted in max_time_s; last
    loss 0.41): RUN", or "Stopped by the time limit at 87/100,000 steps ..." """
    loss = status.get("last_loss")
    step, planned = status.get("step"), status.get("num_steps")
    counts = (
        f"{step:,}/{planned:,}"
        if isinstance(step, int) and isinstance(planned, int)
        else (f"{step}/{planned}")
    )
    if status.get("stop_reason") == "time_limit":
        head = f"[bold yellow]Stopped by the time limit[/] at {counts} steps"
    else:
        head = f"[bold green]Finished[/] {counts} steps"
    details = []
    compile_s = status.get("compile_s")
    if isinstance(compile_s, int | float) and compile_s >= 0.5:
        details.append(f"compiling {compile_s:.0f}s, not counted in max_time_s")
    details.append(f"last loss {'-' if loss is None else f'{loss:.4g}'}")
    return f"{head} in {train_time:.0f}s ({'; '.join(details)}): {run_dir}"


def fine_tuning_line(report: dict[str, Any]) -> str:
    """One sentence: what fine-tuning gained on the new prior and forgot on the old one."""

    def pair(entry: dict[str, Any] | None) -> str:
        if not entry or entry.get("before") is None or entry.get("after") is None:
            return "not measured"
        b, a = entry["before"]["mean"], entry["after"]["mean"]
        return f"{entry['metric']} {b:.4f} -> {a:.4f}"

    text = f"Fine-tuned from {report.get('source')}: new prior {pair(report.get('new_prior'))}"
    if report.get("source_prior"):
        text += f"; source prior {pair(report['source_prior'])}"
        if report.get("forgetting") is not None:
            text += f" (forgetting {report['forgetting']:+.4f} nats)"
    else:
        text += "; the source's prior is not recorded, forgetting not measured"
    return text + "."
