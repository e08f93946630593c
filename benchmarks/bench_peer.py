"""Peer benchmark (``make bench-peer``): pfn-transformers against automl/PFNs on the same data.

For every task of ``continuous_tasks.TASKS`` (default: GP 1-D, linear 1-D, BLR with 3
features) both libraries train on the *same* batches (``SharedStream``) with the same width,
depth, heads, batch, steps, learning rate and warmup, each with its own recipe otherwise
(pfns': ``peer_pfns.py``; ours: the library's defaults for a config built from the spec's
fields, bounded uniform borders over the task's y range). Both are scored on the same 2,048
held-out datasets by the paired excess NLL against the exact posterior predictive, per
context size n, with standard errors:

- at equal steps (``--steps``, default 1,500);
- at equal wall time on this machine: the library with the cheaper step trains again for as
  many steps as fit in the other's training time (same warmup, schedule over the new length).

Writes ``benchmarks/results/peer.json`` (a card with settings, parameter counts, seconds,
CPU) and ``benchmarks/results/peer.png`` (excess NLL against n, and against training
seconds). Run it alone on the machine: the equal-time rows are timings.

    make bench-peer
    .venv-peer/bin/python benchmarks/bench_peer.py --tasks gp --steps 600
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
import peer_pfns  # noqa: E402
from continuous_tasks import (  # noqa: E402
    TASKS,
    SharedStream,
    Task,
    add_shape_args,
    exact_log_predictive,
    heldout,
    summarize,
    train_ours,
)

RESULTS = HERE / "results"


def train_peer(task: Task, stream: SharedStream, args: argparse.Namespace, steps: int):
    return peer_pfns.train_peer(
        stream,
        seq_len=task.seq_len,
        num_buckets=args.buckets,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        batch_size=args.batch_size,
        num_steps=steps,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        device=args.device,
    )


@torch.no_grad()
def score(lib: str, model: Any, task: Task, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    device = next(model.parameters()).device
    xd, yd = x.to(device), y.to(device)
    lp = peer_pfns.log_predictive(model, xd, yd) if lib == "pfns" else model.log_predictive(xd, yd)
    return summarize(exact_log_predictive(task, x, y) - lp.double().cpu())


def run_task(task: Task, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    x, y = heldout(task, args.datasets)
    runs: dict[str, dict[str, Any]] = {}

    def record(key: str, lib: str, steps: int, trained: tuple[Any, float]) -> float:
        model, seconds = trained
        res = score(lib, model, task, x, y)
        params = sum(p.numel() for p in model.parameters())
        runs[key] = {"library": lib, "steps": steps, "train_s": seconds, "params": params, **res}
        console.print(
            f"  {key:<18} {steps:>6} steps {seconds:7.1f} s  excess {res['excess_nll']:.4f}"
            f" +- {res['stderr']:.4f}"
        )
        return seconds

    stream = lambda: SharedStream(task.prior, args.batch_size, args.seed)  # noqa: E731
    steps = args.steps
    peer_s = record("pfns", "pfns", steps, train_peer(task, stream(), args, steps))
    on_device = {"device": args.device}
    ours_s = record("ours", "ours", steps, train_ours(task, stream(), args, steps, None, on_device))
    if not args.no_equal_time:
        if ours_s < peer_s:
            more = round(steps * peer_s / ours_s)
            trained = train_ours(task, stream(), args, more, None, on_device)
            record("ours_equal_time", "ours", more, trained)
        else:
            more = round(steps * ours_s / peer_s)
            record("pfns_equal_time", "pfns", more, train_peer(task, stream(), args, more))
    return {"title": task.title, "seq_len": task.seq_len, "runs": runs}


def ratios(result: dict[str, Any]) -> dict[str, float]:
    runs = result["runs"]
    out = {"equal_steps": runs["ours"]["excess_nll"] / runs["pfns"]["excess_nll"]}
    if "ours_equal_time" in runs:
        out["equal_time"] = runs["ours_equal_time"]["excess_nll"] / runs["pfns"]["excess_nll"]
    elif "pfns_equal_time" in runs:
        out["equal_time"] = runs["ours"]["excess_nll"] / runs["pfns_equal_time"]["excess_nll"]
    return out


def print_table(results: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"excess NLL vs exact posterior ({args.steps} steps, batch {args.batch_size}, "
        f"d_model {args.d_model}, {args.n_layers} layers, lr {args.lr}, warmup {args.warmup})"
    )
    for col in ("task", "pfns", "ours", "ratio", "equal time: run", "ratio"):
        table.add_column(col, justify="left" if col.startswith("task") else "right")

    def fmt(runs: dict[str, Any], key: str) -> str:
        return f"{runs[key]['excess_nll']:.3f} ({runs[key]['train_s']:.0f} s)"

    for name, res in results.items():
        runs, r = res["runs"], res["ratios"]
        eq_key = next((k for k in runs if k.endswith("equal_time")), None)
        table.add_row(
            name,
            fmt(runs, "pfns"),
            fmt(runs, "ours"),
            f"{r['equal_steps']:.2f}x",
            f"{eq_key} {runs[eq_key]['steps']} steps: {fmt(runs, eq_key)}" if eq_key else "-",
            f"{r['equal_time']:.2f}x" if "equal_time" in r else "-",
        )
    console.print(table)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(4.5 * len(results), 7), squeeze=False)
    for col, (name, res) in enumerate(results.items()):
        ax = axes[0, col]
        for key, run in res["runs"].items():
            n = range(len(run["per_n"]))
            ax.errorbar(n, run["per_n"], yerr=run["per_n_stderr"], label=f"{key} ({run['steps']})")
        ax.set_title(name)
        ax.set_xlabel("context size n")
        ax.set_ylabel("excess NLL (nats)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        for lib, marker in (("pfns", "s"), ("ours", "o")):
            pts = [
                (r["train_s"], r["excess_nll"]) for r in res["runs"].values() if r["library"] == lib
            ]
            ax.plot(*zip(*sorted(pts)), marker=marker, label=lib)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("excess NLL (nats)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", default="gp,linear,blr3")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--datasets", type=int, default=2048)
    add_shape_args(parser)
    parser.add_argument("--no-equal-time", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both libraries train there")
    parser.add_argument("--out", type=Path, default=RESULTS / "peer.json")
    args = parser.parse_args()
    console = Console()
    results = {}
    for name in args.tasks.split(","):
        console.print(f"[bold]{name}[/]: {TASKS[name].title}")
        results[name] = run_task(TASKS[name], args, console)
        results[name]["ratios"] = ratios(results[name])
    print_table(results, args, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "meta": {
            **machine.describe(),
            "pfns": _version("pfns"),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
        },
        "results": results,
    }
    args.out.write_text(json.dumps(card, indent=2))
    plot(results, args.out.with_suffix(".png"))
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
