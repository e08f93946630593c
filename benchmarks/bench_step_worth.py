"""Does the default recipe's slower step pay for itself at the spec's Example-1 size? (``make bench-step-worth``)

``make bench`` times the Example-1 step (d_model 128, 4 layers, 4 heads of 32, seq 64, batch
32, 100 uniform buckets, 10 inputs): the default recipe (Muon, MLP decoder, joint
encoder, tail floor) costs more per step than the earlier one (AdamW, linear decoder, sum
encoder, edge tails). Issue 14 allows more than 10% only if quality per second gains more;
this trains both on Example 1's prior (w ~ N(0, I), x ~ N(0, I), noise 0.1, no bias: exact
posterior known) for the same wall time, each with its own cosine schedule fitted to that
time from a timed warm-up, and scores them on the same held-out datasets. Learning rate
1e-3 with warmup 100 for both (the spec's 1e-4 with warmup 500 barely moves either in a
couple of minutes). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
from continuous_tasks import (  # noqa: E402
    NormalXLinear,
    SharedStream,
    Task,
    exact_log_predictive,
    heldout,
    summarize,
    train_ours,
)

from pfn_transformers.model.configs import LEGACY_DEFAULTS  # noqa: E402
from pfn_transformers.training.state import LEGACY_OPTIMIZER  # noqa: E402

EXAMPLE_1 = Task(
    "example1",
    "Example 1: linear, 10 inputs, w ~ N(0, I), x ~ N(0, I), noise 0.1",
    NormalXLinear(input_dim=10, weight_std=1.0, bias=False, noise_std=0.1),
    seq_len=64,
)
# Example 1's d_head; its y range [-5, 5] holds only ~88% of this prior's targets (y has
# std 3.2), and the earlier recipe's thin tails then cost it over 10 nats: the prior's
# suggested range instead, so that the comparison is about learning, not tails
MODEL = {"d_head": 32}
RECIPES = {
    "earlier": (LEGACY_DEFAULTS, LEGACY_OPTIMIZER),
    "default": ({}, {}),
}


def seconds_per_step(args: argparse.Namespace, model_fields: dict, train_fields: dict) -> float:
    """Per-step time of a recipe over a 150-step run (start-up adds under 3%)."""
    stream = SharedStream(EXAMPLE_1.prior, args.batch_size, args.seed)
    _, seconds = train_ours(EXAMPLE_1, stream, args, 150, model_fields, train_fields)
    return seconds / 150


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per recipe")
    parser.add_argument("--datasets", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "step_worth.json")
    cli = parser.parse_args()
    args = argparse.Namespace(
        d_model=128,
        n_layers=4,
        n_heads=4,
        buckets=100,
        batch_size=32,
        lr=1e-3,
        warmup=100,
        weight_decay=0.0,
        seed=0,
    )
    x, y = heldout(EXAMPLE_1, cli.datasets)
    exact = exact_log_predictive(EXAMPLE_1, x, y)
    results = {}
    for name, (model_fields, train_fields) in RECIPES.items():
        model_fields = {**MODEL, **model_fields}
        per_step = seconds_per_step(args, model_fields, train_fields)
        steps = max(args.warmup + 1, int(cli.seconds / per_step))
        stream = SharedStream(EXAMPLE_1.prior, args.batch_size, args.seed)
        t0 = time.perf_counter()
        model, seconds = train_ours(EXAMPLE_1, stream, args, steps, model_fields, train_fields)
        with torch.no_grad():
            res = summarize(exact - model.log_predictive(x, y).double())
        results[name] = {"s_per_step": per_step, "steps": steps, "train_s": seconds, **res}
        print(
            f"{name:<8} {per_step * 1000:.0f} ms/step, {steps} steps in {seconds:.0f} s: excess"
            f" {res['excess_nll']:.4f} +- {res['stderr']:.4f} ({time.perf_counter() - t0:.0f} s)"
        )
    e, d = results["earlier"], results["default"]
    summary = {
        "step_ratio": d["s_per_step"] / e["s_per_step"],
        "excess_ratio_at_equal_time": d["excess_nll"] / e["excess_nll"],
    }
    print(
        f"default/earlier: step {summary['step_ratio']:.2f}x, excess NLL at equal time"
        f" {summary['excess_ratio_at_equal_time']:.2f}x"
    )
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.write_text(
        json.dumps(
            {
                "meta": {**machine.describe(), "task": EXAMPLE_1.title, "seconds": cli.seconds},
                "results": {
                    k: {kk: vv for kk, vv in v.items() if kk != "per_n_stderr"}
                    for k, v in results.items()
                },
                "summary": summary,
            },
            indent=2,
        )
    )
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
