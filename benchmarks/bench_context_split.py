"""Does automl/PFNs' context/query split train faster per second than scoring every position?
(``make bench-context-split``)

``TrainingConfig.context_split``: "all" (ours: every position given the points before it,
2S+1 tokens) against "random" (one context size per step, the loss on the points after it,
S+1 tokens). GP prior (1-D RBF, lengthscale 0.2, noise variance 0.01) at S = 256 and
1,024, the same training batches (``SharedStream``) and the same wall-time budget for both
(each mode's step count set from a timed probe so its cosine schedule ends on time), then
the paired excess NLL against the exact posterior on the same held-out datasets, overall and
per n. Writes ``benchmarks/results/context_split.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from continuous_tasks import (  # noqa: E402
    SharedStream,
    Task,
    add_shape_args,
    exact_log_predictive,
    heldout,
    summarize,
    train_ours,
)
from machine import describe  # noqa: E402

from pfn_transformers import priors as P  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODES = ("all", "random")


def gp_task(points: int) -> Task:
    prior = P.GPPrior(lengthscale=0.2, noise_var=0.01, x_low=0.0, x_high=1.0)
    return Task("gp", f"GP 1-D (RBF l=0.2, noise var 0.01), S={points}", prior, seq_len=points)


def steps_for(task: Task, args: argparse.Namespace, mode: str, budget: float) -> tuple[int, float]:
    """Steps that fill ``budget`` seconds: two timed probes (``probe`` and ``3 * probe``
    steps) differenced, so set-up and first-step costs cancel."""

    def seconds(steps: int) -> float:
        stream = SharedStream(task.prior, args.batch_size, seed=99)
        return train_ours(task, stream, args, steps, train_fields={"context_split": mode})[1]

    short, long = seconds(args.probe), seconds(3 * args.probe)
    per_step = max(long - short, 1e-6) / (2 * args.probe)
    return max(args.probe, int((budget - short) / per_step + args.probe)), per_step


def score(model, task: Task, x: torch.Tensor, y: torch.Tensor) -> dict:
    with torch.no_grad():
        ours = torch.cat([model.log_predictive(x[i : i + 32], y[i : i + 32]).double()
                          for i in range(0, x.shape[0], 32)])  # fmt: skip
    excess = exact_log_predictive(task, x, y) - ours
    out = summarize(excess)
    per_n = out.pop("per_n")
    out.pop("per_n_stderr")
    marks = [n for n in (0, 1, 4, 16, 64, 256, 1023) if n < len(per_n)]
    out["at_n"] = {str(n): per_n[n] for n in marks}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shape_args(parser, batch_size=16)
    parser.add_argument("--points", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--seconds", type=float, default=150.0, help="wall budget per run")
    parser.add_argument("--probe", type=int, default=8)
    parser.add_argument("--datasets", type=int, default=128)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/context_split.json"))
    args = parser.parse_args()
    tokens = args.batch_size * (2 * 256 + 1)
    results = {"machine": describe(), "settings": vars(args), "tasks": {}}
    for points in args.points:
        task = gp_task(points)
        args.batch_size = max(1, tokens // (2 * points + 1))  # the same tokens per "all" step
        x, y = heldout(task, args.datasets)
        rows = {}
        for mode in MODES:
            steps, per_step = steps_for(task, args, mode, args.seconds)
            stream = SharedStream(task.prior, args.batch_size, seed=args.seed)
            warm = dict(vars(args))
            args.warmup = min(args.warmup, steps // 10)
            t0 = time.perf_counter()
            fields = {"context_split": mode, "max_time_s": args.seconds}  # a cap for both
            model, seconds = train_ours(task, stream, args, steps, train_fields=fields)
            vars(args).update(warm)
            rows[mode] = {
                "steps_planned": steps,
                "train_seconds": round(seconds, 1),
                "probe_seconds_per_step": round(per_step, 4),
                **score(model, task, x, y),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            print(points, mode, json.dumps(rows[mode]), flush=True)
        rows["random_over_all"] = rows["random"]["excess_nll"] / rows["all"]["excess_nll"]
        results["tasks"][str(points)] = {"title": task.title, "batch": args.batch_size, **rows}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for points, row in results["tasks"].items():
        print(f"S={points}: all {row['all']['excess_nll']:.4f} ({row['all']['train_seconds']} s), "
              f"random {row['random']['excess_nll']:.4f} ({row['random']['train_seconds']} s): "
              f"{row['random_over_all']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
