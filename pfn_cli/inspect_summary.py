"""The short Rich summary ``pfn inspect`` prints (the full numbers are in report.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOP_ABLATIONS = 8


def _num(v: Any, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _context_sizes(seq_len: int, limit: int = 5) -> list[int]:
    """A few context sizes n to show: spread over 0, 1, 2, 4, ... and the last one."""
    ns = [0]
    n = 1
    while n < seq_len - 1:
        ns.append(n)
        n *= 2
    if seq_len > 1:
        ns.append(seq_len - 1)
    if len(ns) <= limit:
        return ns
    picks = {round(i * (len(ns) - 1) / (limit - 1)) for i in range(limit)}
    return [ns[i] for i in sorted(picks)]


def _attention_table(att: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"Attention from the predictions ({att['context']})", title_justify="left")
    for col in ("head", "start", "earlier data", "self", "other"):
        table.add_column(col, justify="left" if col == "head" else "right")
    for h in att["heads"]:
        table.add_row(
            h["name"], *(_num(h[k], 3) for k in ("start", "earlier_data", "self", "other"))
        )
    return table


def _lens_table(lens: dict[str, Any], seq_len: int) -> Any:
    from rich.table import Table

    table = Table(title=f"Logit lens: {lens['metric']} per layer", title_justify="left")
    table.add_column("layer")
    table.add_column("mean", justify="right")
    table.add_column("± stderr", justify="right")
    ns = _context_sizes(seq_len)
    for n in ns:
        table.add_column(f"n={n}", justify="right")
    for label in lens["layers"]:
        stat = lens["per_layer"][label]
        per_n = stat["per_n"]
        table.add_row(
            label, _num(stat["mean"]), _num(stat["stderr"]), *(_num(per_n[n], 3) for n in ns)
        )
    table.caption = f"{lens['description']}; matches the output from {lens['matches_output_from']}"
    return table


def _ablation_table(abl: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"Ablation: increase of {abl['metric']} (top {TOP_ABLATIONS})", title_justify="left"
    )
    for col in ("component", "mode", "increase", "stderr"):
        table.add_column(col, justify="right" if col in ("increase", "stderr") else "left")
    for r in abl["results"][:TOP_ABLATIONS]:
        table.add_row(r["component"], r["mode"], _num(r["increase"]), _num(r["stderr"]))
    table.caption = f"mean-ablation: {abl['mean_ablation']}"
    return table


def _probe_table(probes: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Posterior probes: held-out R² per layer", title_justify="left")
    table.add_column("layer")
    stats = list(probes["r2"])
    for stat in stats:
        table.add_column(f"{stat} (k={probes['statistics'][stat]})", justify="right")
    for label in probes["layers"]:
        table.add_row(label, *(_num(probes["r2"][s][label], 3) for s in stats))
    table.caption = "R² pooled over a statistic's k components (each one in report.json)"
    return table


def print_summary(report: dict[str, Any], report_path: Path) -> None:
    """Print the headline tables of a ``pfn inspect`` report and where it was written."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(
        f"[bold]{report['run']}[/] @ step {report['step']}: {report['model_kind']} model "
        f"({report['head']} head), prior {report['prior'] or '(not used)'}"
    )
    if report.get("metric"):
        console.print(
            f"Held-out: {report['num_datasets']} datasets x {report['seq_len']} positions; "
            f"score = {report['metric']}: {report['metric_description']}"
        )
    if "attention" in report:
        console.print(_attention_table(report["attention"]))
    if "lens" in report:
        console.print(_lens_table(report["lens"], int(report["seq_len"])))
    if "ablation" in report:
        console.print(_ablation_table(report["ablation"]))
    if "probes" in report:
        console.print(_probe_table(report["probes"]))
    if "export" in report:
        console.print(
            f"Activation cache: {report['export']['path']} (torch.load(weights_only=True))"
        )
    for name, why in report["skipped"].items():
        console.print(f"[yellow]skipped {name}[/]: {why}")
    for name, why in report["errors"].items():
        console.print(f"[red]failed {name}[/]: {why}")
    figures = report.get("figures") or []
    console.print(
        f"Wrote {report_path}"
        + (f" and {len(figures)} figure{'s' if len(figures) > 1 else ''}" if figures else "")
        + f" in {Path(report_path).parent} ({report['timings_s']['total']:.1f} s)"
    )
