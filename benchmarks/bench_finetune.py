"""Fine-tuning against training from scratch at the same budget (``make bench-finetune``).

A regression PFN is trained on the Bayesian linear-regression prior (the source), then
trained for ``--steps`` more steps on the cubic polynomial prior twice, at equal settings:
from the source's weights (``train(..., init_from=source)``: fresh optimizer and schedule,
the source's buckets kept) and from a fresh initialisation. Both are scored by the paired
excess NLL against the exact posterior on held-out polynomial datasets, and on the linear
prior (the source's task) to measure forgetting: the fine-tuned model's excess NLL there
minus the source's. Quality is compared at equal steps, so one run is enough.

Prints a table and writes ``benchmarks/results/finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers.data.building import prior_y_range
from pfn_transformers.evaluation import evaluate
from pfn_transformers.priors import LinearRegressionPrior, PolynomialPrior

RESULTS = Path(__file__).resolve().parent / "results" / "finetune.json"


def training_config(args: argparse.Namespace, steps: int, folder: Path) -> TrainingConfig:
    return TrainingConfig(
        batch_size=args.batch,
        seq_len=args.seq,
        num_steps=steps,
        learning_rate=args.lr,
        warmup_steps=min(100, steps // 10),
        log_every=max(1, steps // 10),
        save_every=steps,
        progress_bar=False,
        checkpoint_dir=str(folder),
        seed=args.seed,
    )


def score(model, prior, args: argparse.Namespace) -> dict:
    r = evaluate(model, prior, num_datasets=args.datasets, seq_len=args.seq, seed=123)
    return {"mean": r["excess_nll"]["mean"], "stderr": r["excess_nll"]["stderr"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source-steps", type=int, default=1000)
    p.add_argument("--steps", type=int, default=400, help="budget of both arms on the new prior")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--datasets", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    old, new = LinearRegressionPrior(), PolynomialPrior(degree=3)
    lo, hi = prior_y_range(old)  # the source's buckets follow its own prior (as pfn train does)
    config = RegressionConfig(d_model=64, n_layers=2, n_heads=4, d_vocab=100, y_min=lo, y_max=hi)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="pfn-bench-ft-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        source = train(old, config, training_config(args, args.source_steps, tmp / "source"))
        timings["source_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tuned = train(new, None, training_config(args, args.steps, tmp / "ft"), init_from=source)
        timings["fine_tune_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scratch = train(new, config, training_config(args, args.steps, tmp / "scratch"))
        timings["scratch_s"] = time.perf_counter() - t0
    rows = {
        "source (linear prior only)": (source, args.source_steps),
        f"fine-tuned from the source, {args.steps} steps": (tuned, args.source_steps + args.steps),
        f"from scratch, {args.steps} steps": (scratch, args.steps),
    }
    results = {
        name: {"steps_seen": seen, "polynomial": score(m, new, args), "linear": score(m, old, args)}
        for name, (m, seen) in rows.items()
    }
    forgetting = results[list(rows)[1]]["linear"]["mean"] - results[list(rows)[0]]["linear"]["mean"]
    table = Table(
        title=f"Fine-tuning vs scratch on the cubic polynomial prior ({args.steps} steps each)",
        title_justify="left",
    )
    for col in ("model", "excess NLL, polynomial", "excess NLL, linear (source task)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['polynomial']['mean']:.4f} ± {r['polynomial']['stderr']:.4f}",
            f"{r['linear']['mean']:.4f} ± {r['linear']['stderr']:.4f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"Forgetting (fine-tuned minus source on the linear prior): {forgetting:+.4f} nats. "
        f"Train time: source {timings['source_s']:.0f} s, fine-tune {timings['fine_tune_s']:.0f} s, "
        f"scratch {timings['scratch_s']:.0f} s."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model": config.to_dict(),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "results": results,
        "forgetting": forgetting,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
