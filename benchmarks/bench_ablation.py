"""Ablation of the continuous-prior defaults (``make bench-ablation``): each change alone and combined.

The defaults chosen against automl/PFNs (issue 14) are four config fields: an MLP decoder
(``RegressionConfig.decoder``), the joint pair encoder (``pair_encoder``), a floor on the
half-normal tails' scale (``tail_scale``) and Muon on the hidden matrices
(``TrainingConfig.optimizer``, with ``muon_scope="attention"``: the attention weights too;
two variants keep it to the MLP matrices, as Muon was first adopted). Starting from the earlier recipe (linear decoder, sum
encoder, edge-width tails, AdamW), every variant switches some of them on; one more trains the
default model with AdamW at 3x the learning rate, to show that Muon's gain is not just its
larger step. All variants train on the same batches (``SharedStream``) at bench-peer's
settings (1,500 steps, batch 64, d_model 64, 2 layers, 4 heads, learning rate 1e-3, warmup
100, no weight decay, 256 unbounded uniform buckets over the prior's suggested range) and
are scored on the same held-out datasets by the paired excess NLL against the exact
posterior predictive. Run it alone on the machine (it reports seconds too).

    make bench-ablation
    .venv/bin/python benchmarks/bench_ablation.py --tasks gp --variants before,default
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
from continuous_tasks import (  # noqa: E402
    TASKS,
    SharedStream,
    add_shape_args,
    exact_log_predictive,
    heldout,
    summarize,
    train_ours,
)

from pfn_transformers.model.configs import LEGACY_DEFAULTS  # noqa: E402
from pfn_transformers.training.state import LEGACY_OPTIMIZER  # noqa: E402

# the earlier recipe: what a config or checkpoint saved before these fields rebuilds
BEFORE_MODEL = LEGACY_DEFAULTS
ADAMW = LEGACY_OPTIMIZER
MUON_MLP = {"muon_scope": "mlp"}  # Muon as first adopted: 2-D matrices only

# name: (description, model config fields, training config fields)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "before": (
        "linear decoder, sum encoder, AdamW, edge-width tails (earlier)",
        BEFORE_MODEL,
        ADAMW,
    ),
    "mlp_decoder": ("+ MLP decoder", {**BEFORE_MODEL, "decoder": "mlp"}, ADAMW),
    "joint_encoder": ("+ joint pair encoder", {**BEFORE_MODEL, "pair_encoder": "joint"}, ADAMW),
    "tail_floor": ("+ tail scale floor 0.05", {**BEFORE_MODEL, "tail_scale": 0.05}, ADAMW),
    "muon_mlp": ("+ Muon on the MLP matrices", BEFORE_MODEL, MUON_MLP),
    "muon": ("+ Muon on MLP and attention matrices", BEFORE_MODEL, {}),
    "no_tail_floor": ("+ MLP decoder + joint encoder + Muon", {"tail_scale": 0.0}, {}),
    "default_muon_mlp": ("all four, Muon on the MLP matrices only", {}, MUON_MLP),
    "default": ("+ all four (the default)", {}, {}),
    "default_adamw_3x": ("default model, AdamW at 3x the rate", {}, {**ADAMW, "lr_scale": 3.0}),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", default="gp,linear,blr3")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--datasets", type=int, default=1024)
    add_shape_args(parser)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ablation.json")
    args = parser.parse_args()
    tasks, variants = args.tasks.split(","), args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS] + [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown {unknown}; variants: {list(VARIANTS)}, tasks: {list(TASKS)}")
    console = Console()
    results: dict[str, dict[str, Any]] = {v: {} for v in variants}
    for name in tasks:
        task = TASKS[name]
        x, y = heldout(task, args.datasets)
        exact = exact_log_predictive(task, x, y)
        for v in variants:
            _, model_fields, train_fields = VARIANTS[v]
            train_fields = dict(train_fields)
            train_fields["learning_rate"] = args.lr * train_fields.pop("lr_scale", 1.0)
            stream = SharedStream(task.prior, args.batch_size, args.seed)
            model, seconds = train_ours(task, stream, args, args.steps, model_fields, train_fields)
            with torch.no_grad():
                res = summarize(exact - model.log_predictive(x, y).double())
            results[v][name] = {"train_s": seconds, **res}
            console.print(
                f"{name:<7} {v:<17} excess {res['excess_nll']:.4f} +- {res['stderr']:.4f}"
                f" ({seconds:.0f} s)"
            )
    table = Table(title=f"excess NLL vs exact posterior, {args.steps} steps (train seconds)")
    table.add_column("variant")
    for name in tasks:
        table.add_column(name, justify="right")
    table.add_column("mean vs before", justify="right")
    for v in variants:
        row, before = results[v], results.get("before")
        rel = [row[t]["excess_nll"] / before[t]["excess_nll"] for t in tasks] if before else []
        table.add_row(
            VARIANTS[v][0],
            *(
                f"{row[t]['excess_nll']:.3f} +- {row[t]['stderr']:.3f} ({row[t]['train_s']:.0f} s)"
                for t in tasks
            ),
            f"{sum(rel) / len(rel):.2f}x" if rel else "-",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "meta": {**machine.describe(), "settings": {k: str(v) for k, v in vars(args).items()}},
        "variants": {v: VARIANTS[v][0] for v in variants},
        "results": results,
    }
    args.out.write_text(json.dumps(card, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
