"""Does the default recipe's slower step pay for itself at the spec's Example-1 size? (``make bench-step-worth``)

``make bench`` times the Example-1 step (d_model 128, 4 layers, 4 heads of 32, seq 64, batch
32, 100 uniform buckets, 10 inputs): the default recipe (Muon, MLP decoder, joint
encoder, tail floor) costs more per step than the earlier one (AdamW, linear decoder, sum
encoder, edge tails). Issue 14 allows more than 10% only if quality per second gains more;
this trains both on Example 1's prior (w ~ N(0, I), x ~ N(0, I), noise 0.1, no bias: exact
posterior known) for the same wall time, each with its own cosine schedule fitted to that
time from a timed 150-step run, and scores them on the same held-out datasets. Learning
rate 1e-3 with warmup 100 for both (the spec's 1e-4 with warmup 500 barely moves either in a
couple of minutes). It first times ``optimizer.step()`` alone on the default model (AdamW,
Muon on the MLP matrices, Muon on MLP and attention): the optimizer's share of the step.
Run it alone on the machine.
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
    add_shape_args,
    exact_log_predictive,
    heldout,
    summarize,
    train_ours,
)

from pfn_transformers import PFN, RegressionConfig, TrainingConfig  # noqa: E402
from pfn_transformers.model.configs import LEGACY_DEFAULTS  # noqa: E402
from pfn_transformers.training.optim import make_optimizer  # noqa: E402
from pfn_transformers.training.state import LEGACY_OPTIMIZER  # noqa: E402

EXAMPLE_1 = Task(
    "example1",
    "Example 1: linear, 10 inputs, w ~ N(0, I), x ~ N(0, I), noise 0.1",
    NormalXLinear(input_dim=10, weight_std=1.0, bias=False, noise_std=0.1),
    seq_len=64,
)
# Example 1's d_head; its y range [-5, 5] holds only ~89% of this prior's targets (y has
# std 3.2), where the earlier recipe's thin tails would dominate its score: the prior's
# suggested range instead, so that the comparison is about learning, not tails
MODEL = {"d_head": 32}
RECIPES = {
    "earlier": (LEGACY_DEFAULTS, LEGACY_OPTIMIZER),
    "default": ({}, {}),
}
# optimizers timed alone on the default model: where the default step's extra time goes
OPTIMIZERS = {
    "AdamW (earlier)": LEGACY_OPTIMIZER,
    "Muon on the MLP matrices": {"muon_scope": "mlp"},
    "Muon on MLP and attention (default)": {},
}


def seconds_per_step(args: argparse.Namespace, model_fields: dict, train_fields: dict) -> float:
    """Per-step time of a recipe over a 150-step run (start-up adds under 3%)."""
    stream = SharedStream(EXAMPLE_1.prior, args.batch_size, args.seed)
    _, seconds = train_ours(EXAMPLE_1, stream, args, 150, model_fields, train_fields)
    return seconds / 150


def optimizer_step_ms(args: argparse.Namespace, train_fields: dict, repeats: int = 20) -> float:
    """Median ms of one ``optimizer.step()`` on the default Example-1 model (random gradients)."""
    torch.manual_seed(args.seed)
    model = PFN(
        RegressionConfig(
            d_model=args.d_model,
            n_layers=args.n_layers,
            n_heads=args.n_heads,
            input_dim=EXAMPLE_1.input_dim,
            d_vocab=args.buckets,
            **MODEL,
        )
    )
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = make_optimizer(model, TrainingConfig(learning_rate=args.lr, **train_fields))
    for _ in range(5):
        optimizer.step()
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(repeats):
            optimizer.step()
        rounds.append((time.perf_counter() - t0) / repeats * 1000)
    return sorted(rounds)[len(rounds) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per recipe")
    parser.add_argument("--datasets", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "step_worth.json")
    add_shape_args(parser, d_model=128, n_layers=4, batch_size=32, buckets=100)
    args = parser.parse_args()
    optimizer_ms = {name: optimizer_step_ms(args, fields) for name, fields in OPTIMIZERS.items()}
    for name, ms in optimizer_ms.items():
        print(f"optimizer step, {name}: {ms:.1f} ms")
    x, y = heldout(EXAMPLE_1, args.datasets)
    exact = exact_log_predictive(EXAMPLE_1, x, y)
    results = {}
    for name, (model_fields, train_fields) in RECIPES.items():
        model_fields = {**MODEL, **model_fields}
        per_step = seconds_per_step(args, model_fields, train_fields)
        steps = max(args.warmup + 1, int(args.seconds / per_step))
        stream = SharedStream(EXAMPLE_1.prior, args.batch_size, args.seed)
        model, seconds = train_ours(EXAMPLE_1, stream, args, steps, model_fields, train_fields)
        with torch.no_grad():
            res = summarize(exact - model.log_predictive(x, y).double())
        results[name] = {"s_per_step": per_step, "steps": steps, "train_s": seconds, **res}
        print(
            f"{name:<8} {per_step * 1000:.0f} ms/step, {steps} steps in {seconds:.0f} s: excess"
            f" {res['excess_nll']:.4f} +- {res['stderr']:.4f}"
        )
    earlier, default = results["earlier"], results["default"]
    summary = {
        "step_ratio": default["s_per_step"] / earlier["s_per_step"],
        "excess_ratio_at_equal_time": default["excess_nll"] / earlier["excess_nll"],
    }
    print(
        f"default/earlier: step {summary['step_ratio']:.2f}x, excess NLL at equal time"
        f" {summary['excess_ratio_at_equal_time']:.2f}x"
    )
    card = {
        "meta": {**machine.describe(), "task": EXAMPLE_1.title, "settings": vars(args)},
        "optimizer_step_ms": optimizer_ms,
        "results": results,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(card, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
