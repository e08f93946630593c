"""Markdown tables of the long-context results, rendered from ``benchmarks/results``.

``python benchmarks/report_scaling.py`` prints the block that docs/guides/long-contexts.md
carries between ``<!-- scaling:begin -->`` and ``<!-- scaling:end -->``; ``--write FILE``
replaces it there. A test checks the guide's block equals this rendering, so its figures
are the result files' and never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def step_table(result: dict[str, Any]) -> list[str]:
    where = result.get("gpu") or result["machine"]["cpu"]
    rows = result["steps"]["rows"]
    lines = [
        f"Step at ~{result['token_budget']:,} tokens, {result['precision']}, {where} "
        f"(torch {result['machine']['torch']}); ms per dataset, and against "
        "`nn.TransformerEncoder` fed 2S+1 tokens:",
        "",
        "| S | batch | PFN | PFN, dense mask | encoder 2S+1 | encoder S+1 | automl/PFNs "
        "| PFN / encoder | dense / encoder | peak MiB PFN / dense / encoder |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, ratio, peak = r["per_dataset_ms"], r["vs_encoder_2S+1"], r.get("peak_mib", {})
        peer = r["seconds"].get("automl/PFNs")

        def cell(table: dict, key: str, fmt: str, unit: str = "") -> str:
            return format(table[key], fmt) + unit if key in table else "-"

        lines.append(
            f"| {r['points']:,} | {r['batch']} | {cell(ms, 'pfn auto', '.2f')} "
            f"| {cell(ms, 'pfn dense', '.2f')} | {cell(ms, 'encoder 2S+1', '.2f')} "
            f"| {cell(ms, 'encoder S+1', '.2f')} "
            f"| {'-' if peer is None else format(1000 * peer / r['batch'], '.2f')} "
            f"| {cell(ratio, 'pfn auto', '.2f', 'x')} | {cell(ratio, 'pfn dense', '.2f', 'x')} "
            f"| {cell(peak, 'pfn auto', '.0f')} / {cell(peak, 'pfn dense', '.0f')} / "
            f"{cell(peak, 'encoder 2S+1', '.0f')} |"
        )
    exps = result["steps"].get("growth_exponent_64_1024", {})
    if exps:
        lines += [
            "",
            "Growth exponent of the cost per dataset over S = 64..1,024 at that token budget: "
            + ", ".join(
                f"{name} {exps[name]:.2f}"
                for name in ("pfn auto", "pfn dense", "encoder 2S+1")
                if name in exps
            )
            + ".",
        ]
    return lines


def quality_lines(q: dict[str, Any]) -> list[str]:
    marks = list(q["per_n"])
    return [
        f"{q['prior']} at S = {q['points']}, after {q['train_seconds']} s of training "
        f"({q['steps']} steps, batch {q['batch']}, {q['device']}): excess NLL "
        f"{q['excess_nll']:.4f} +- {q['excess_stderr']:.4f} nats over all n, bucket floor "
        f"{q['floor_excess_nll']:.4f}. Per n:",
        "",
        "| n | " + " | ".join(marks) + " |",
        "|---|" + "---|" * len(marks),
        "| excess NLL | " + " | ".join(f"{q['per_n'][n]:.3f}" for n in marks) + " |",
        "| bucket floor | " + " | ".join(f"{q['floor_per_n'][n]:.3f}" for n in marks) + " |",
    ]


def split_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "`context_split` on the GP (1-D RBF, lengthscale 0.2), equal wall time per run "
        f"({result['settings']['seconds']:.0f} s), the same batches; excess NLL over all n:",
        "",
        '| S | batch | "all": train s, excess NLL | "random": train s, excess NLL | random / all |',
        "|---|---|---|---|---|",
    ]
    for points, t in result["tasks"].items():
        a, r = t["all"], t["random"]
        lines.append(
            f"| {int(points):,} | {t['batch']} | {a['train_seconds']}, {a['excess_nll']:.4f} "
            f"| {r['train_seconds']}, {r['excess_nll']:.4f} | {t['random_over_all']:.2f}x |"
        )
    return lines


def inference_lines(inf: dict[str, Any]) -> list[str]:
    p, c = inf["predict"], inf["cached_context"]
    return [
        f"Inference on the CPU with {inf['context']:,} context points and {inf['queries']:,} "
        f"queries (d_model 128, 4 layers): `predict` {p['seconds']:.2f} s, peak "
        f"{p['peak_mib']:.0f} MiB above the process; `CachedContext` {c['seconds']:.2f} s, "
        f"{c['peak_mib']:.0f} MiB."
    ]


def render() -> str:
    parts: list[str] = []
    for name in ("scaling.json", "scaling_cuda.json"):
        result = _load(name)
        if result and "steps" in result:
            parts += step_table(result) + [""]
        if result and "inference" in result:
            parts += inference_lines(result["inference"]) + [""]
        if result and "quality" in result:
            parts += quality_lines(result["quality"]) + [""]
    split = _load("context_split.json")
    if split:
        parts += split_lines(split) + [""]
    return "\n".join(parts).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {BEGIN} ... {END} block to replace")
    return pattern.sub(lambda _: f"{BEGIN}\n{block}{END}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="FILE", help="replace the block in FILE")
    args = parser.parse_args()
    block = render()
    if args.write:
        path = Path(args.write)
        path.write_text(replace_block(path.read_text(), block))
    else:
        print(block, end="")


if __name__ == "__main__":
    main()
