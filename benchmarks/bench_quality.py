"""Quality benchmark: train each task on CPU, score it against the exact posterior predictive.

For every task below: train a PFN with the shipped settings (``TASKS``), then
``pfn_transformers.evaluation.evaluate`` it on 2,048 held-out datasets and report the paired
excess NLL (NLL_PFN - NLL_exact, mean over positions and datasets, +- stderr over datasets),
the exact and PFN NLL and, for bar-distribution heads, the bucket floor (the best excess the
borders allow). Prints one Rich table and writes ``benchmarks/results/quality.json``
(entries of tasks not run this time are kept from the previous file).

    make bench-quality                                     # all tasks, shipped budgets
    .venv/bin/python benchmarks/bench_quality.py --tasks coin,gp --time-budget-s 60

Each task trains for at most its ``max_time_s`` (or ``--time-budget-s``). ``num_steps`` is
capped by a short timing probe so that the learning-rate schedule completes inside the
budget on the machine at hand (a busy machine trains fewer steps instead of being cut off
mid-schedule); the table reports the steps actually run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pfn_transformers import (  # noqa: E402
    RegressionConfig,
    TrainingConfig,
    UnsupervisedConfig,
    describe_generator,
    sample_batch,
    train,
)
from pfn_transformers import priors as P  # noqa: E402
from pfn_transformers.evaluation import (  # noqa: E402
    evaluate,
    plot_evaluation,
    plot_predictive_bands,
    predictive_draws,
)

RESULTS = ROOT / "benchmarks" / "results" / "quality.json"

# ----------------------------------------------------------------------------- shipped settings
# model: config fields (+ "borders" for bar heads: how the bucket borders are built).
# train: TrainingConfig fields. max_time_s: training budget (seconds). target: excess NLL goal.
TASKS: dict[str, dict[str, Any]] = {
    "coin": {
        "title": "coin Beta(1,1)",
        "prior": (P.CoinFlipPrior, {"alpha": 1.0, "beta": 1.0}),
        "seq_len": 32,
        "target": 0.01,
        "model": {
            "kind": "unsupervised",
            "input_type": "discrete",
            "d_vocab": 2,
            "d_model": 64,
            "n_layers": 2,
            "n_heads": 4,
        },
        "train": {"batch_size": 128, "num_steps": 2000, "learning_rate": 1e-3, "warmup_steps": 100},
        "max_time_s": 300,
    },
    "categorical": {
        "title": "categorical K=5 Dir(0.5)",
        "prior": (P.CategoricalPrior, {"num_categories": 5, "concentration": 0.5}),
        "seq_len": 32,
        "target": 0.01,
        "model": {
            "kind": "unsupervised",
            "input_type": "discrete",
            "d_vocab": 5,
            "d_model": 64,
            "n_layers": 2,
            "n_heads": 4,
        },
        "train": {"batch_size": 128, "num_steps": 3000, "learning_rate": 1e-3, "warmup_steps": 100},
        "max_time_s": 300,
    },
    "markov": {
        "title": "Markov 4 states Dir(1)",
        "prior": (P.MarkovChainPrior, {"num_states": 4, "concentration": 1.0}),
        "seq_len": 32,
        "target": 0.01,
        "model": {
            "kind": "unsupervised",
            "input_type": "discrete",
            "d_vocab": 4,
            "d_model": 64,
            "n_layers": 2,
            "n_heads": 4,
            "positional_embedding": True,  # not exchangeable: needs the previous token
            "n_ctx": 64,
        },
        "train": {"batch_size": 128, "num_steps": 3000, "learning_rate": 1e-3, "warmup_steps": 200},
        "max_time_s": 300,
    },
    "linear": {
        "title": "linear regression 1-D",
        "prior": (
            P.LinearRegressionPrior,
            {"input_dim": 1, "weight_std": 1.0, "bias": True, "bias_std": 1.0, "noise_std": 0.1},
        ),
        "seq_len": 20,
        "target": 0.03,
        "model": {
            "kind": "regression",
            "input_dim": 1,
            "d_model": 64,
            "n_layers": 2,
            "n_heads": 8,
            "borders": {"type": "uniform", "y_min": -6.0, "y_max": 6.0, "num_buckets": 300},
        },
        # small batches, many steps: the most sample-efficient setting found per CPU second;
        # the default MLP x-encoder and bf16 autocast (fp32 head) beat fp32 + linear x at equal time
        "train": {
            "batch_size": 64,
            "num_steps": 12000,
            "learning_rate": 1e-3,  # Muon's groups run at 4x, AdamW's at 3x (the default)
            "warmup_steps": 500,
            "precision": "bf16",
        },
        "max_time_s": 300,
    },
    "gp": {
        "title": "GP RBF l=0.2",
        "prior": (
            P.GPPrior,
            {"input_dim": 1, "lengthscale": 0.2, "outputscale": 1.0, "noise_var": 0.01},
        ),
        "seq_len": 20,
        "target": 0.03,
        "model": {
            "kind": "regression",
            "input_dim": 1,
            "d_model": 64,
            "n_layers": 2,
            "n_heads": 8,
            "borders": {"type": "uniform", "y_min": -5.0, "y_max": 5.0, "num_buckets": 300},
        },
        "train": {
            "batch_size": 64,
            "num_steps": 12000,
            "learning_rate": 1e-3,  # Muon's groups run at 4x, AdamW's at 3x (the default)
            "warmup_steps": 500,
            "precision": "bf16",
        },
        "max_time_s": 300,
    },
    "nig": {
        "title": "NIG(0,1,2,1)",
        "prior": (
            P.NormalInverseGammaPrior,
            {"mu0": 0.0, "kappa0": 1.0, "alpha0": 2.0, "beta0": 1.0},
        ),
        "seq_len": 20,
        "target": 0.03,
        "model": {
            "kind": "unsupervised",
            "input_type": "continuous",
            "d_model": 64,
            "n_layers": 3,
            "n_heads": 4,
            # heavy (Student-t) tails: a fine uniform core plus geometrically widening
            # outer buckets, so far outliers meet wide half-normal tails
            "borders": {
                "type": "core_tail",
                "core": 8.0,
                "width": 0.08,
                "outer": 80.0,
                "growth": 1.25,
            },
        },
        "train": {"batch_size": 128, "num_steps": 3000, "learning_rate": 1e-3, "warmup_steps": 200},
        "max_time_s": 300,
    },
}

# each dataset from the "linear" or the "gp" task's prior (equal weights), the gp task's model
# and training, the linear task's y range (it covers both); exact reference: the posterior-weighted mixture
TASKS["mixture"] = {
    **TASKS["gp"],
    "title": "mixture: linear + GP (equal weights)",
    "model": {  # the linear task's wider y range
        **TASKS["gp"]["model"],
        "borders": TASKS["linear"]["model"]["borders"],
    },
    "prior": (
        P.MixturePrior,
        {
            "components": [
                cls(**kw) for cls, kw in (TASKS["linear"]["prior"], TASKS["gp"]["prior"])
            ],
            "names": ["linear", "gp"],
        },
    ),
}

TRAIN_DEFAULTS = {
    "weight_decay": 0.0,
    "use_warmup": True,
    "use_grad_clip": True,
    "grad_clip": 1.0,
    "lr_schedule": "cosine",
    "precision": "fp32",
    "seed": 0,
}


# ----------------------------------------------------------------------------- helpers
def core_tail_borders(core: float, width: float, outer: float, growth: float) -> list[float]:
    """Uniform borders of ``width`` on [-core, core], then widths growing by ``growth`` out
    to beyond +-outer (symmetric)."""
    n = round(2 * core / width)
    inner = torch.linspace(-core, core, n + 1, dtype=torch.float64).tolist()
    right, w, b = [], width, core
    while b < outer:
        w *= growth
        b += w
        right.append(b)
    return [-v for v in reversed(right)] + inner + right


def build_model_config(task: dict[str, Any]):
    spec = dict(task["model"])
    kind = spec.pop("kind")
    borders = spec.pop("borders", None)
    if borders is not None:
        borders = dict(borders)
        btype = borders.pop("type")
        if btype == "uniform":
            spec.update(
                bucket_type="uniform",
                y_min=borders["y_min"],
                y_max=borders["y_max"],
                d_vocab=borders["num_buckets"],
            )
        elif btype == "core_tail":
            b = core_tail_borders(**borders)
            spec.update(bucket_type="riemann", riemann_borders=b, d_vocab=len(b) - 1)
        else:
            raise ValueError(f"unknown borders type {btype!r}")
    cls = UnsupervisedConfig if kind == "unsupervised" else RegressionConfig
    return cls(**spec)


def _probe_step_time(
    prior, model_config, batch_size: int, seq_len: int, steps: int = 8, precision: str = "auto"
) -> float:
    """Seconds per training step of the library's own TrainStep (same precision as the run),
    data included, measured on this machine now."""
    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    tc = TrainingConfig(batch_size=batch_size, seq_len=seq_len, precision=precision, device="cpu")
    with torch.random.fork_rng(devices=[]):
        step = TrainStep(
            build_state(model_config, tc, DistributedContext.from_env(torch.device("cpu")))
        )
        t0 = 0.0
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            step(*sample_batch(prior, batch_size, seq_len))
    return (time.perf_counter() - t0) / steps


_FIXED_THREADS: int | None = None


def _pick_threads(
    prior, model_config, batch_size: int, seq_len: int, precision: str = "auto"
) -> tuple[int, dict[int, float]]:
    """Use 1 thread or all cores, whichever trains faster right now.

    On a shared 2-core machine, two intra-op threads competing with other processes can be
    several times slower than one; on an idle machine all cores win (by a 1.3x margin).
    """
    if _FIXED_THREADS is not None:
        torch.set_num_threads(_FIXED_THREADS)
        return _FIXED_THREADS, {}
    cores = _MAX_THREADS
    timings: dict[int, float] = {}
    for _ in range(2):  # interleaved, best of two: one noisy probe once picked 1 thread at 1.5x
        for n in sorted({1, cores}):
            torch.set_num_threads(n)
            s = _probe_step_time(
                prior, model_config, batch_size, seq_len, steps=5, precision=precision
            )
            timings[n] = min(timings.get(n, s), s)
    # more threads only when clearly faster: they degrade badly if the machine gets busy
    best = cores if timings[cores] * 1.3 < timings[1] else 1
    torch.set_num_threads(best)
    return best, timings


_MAX_THREADS = torch.get_num_threads()


def train_task(
    task: dict[str, Any], prior: Any, budget_s: float | None
) -> tuple[Any, dict[str, Any]]:
    """Train ``task``'s model on ``prior`` within its budget on this machine; returns the model
    and what the run did (seconds, steps, threads, settings) for the results file."""
    model_config = build_model_config(task)
    train_kw = {**TRAIN_DEFAULTS, **task["train"]}
    budget = float(budget_s if budget_s is not None else task["max_time_s"])
    precision = train_kw.get("precision", "auto")
    threads, thread_probe_s = _pick_threads(
        prior, model_config, train_kw["batch_size"], task["seq_len"], precision
    )
    step_s = _probe_step_time(
        prior, model_config, train_kw["batch_size"], task["seq_len"], precision=precision
    )
    # leave ~10% headroom for logging/jitter; keep at least a short warmup + some steps
    affordable = max(50, int(0.9 * budget / step_s))
    num_steps = min(int(train_kw["num_steps"]), affordable)
    train_kw["num_steps"] = num_steps
    train_kw["warmup_steps"] = min(int(train_kw["warmup_steps"]), max(1, num_steps // 10))
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainingConfig(
            seq_len=task["seq_len"],
            log_every=max(1, num_steps // 10),
            save_checkpoint=False,
            checkpoint_dir=str(Path(tmp) / "ckpt"),
            device="cpu",
            progress_bar=False,
            max_time_s=budget,
            metrics_path=str(Path(tmp) / "metrics.jsonl"),
            **train_kw,
        )
        t0 = time.perf_counter()
        model = train(prior, model_config, tc)
        train_s = time.perf_counter() - t0
        steps_run = _last_logged(Path(tmp) / "metrics.jsonl", "step", num_steps)
        final_loss = _last_logged(Path(tmp) / "metrics.jsonl", "loss_avg", None)
    return model, {
        "train_time_s": round(train_s, 1),
        "time_budget_s": budget,
        "num_steps": steps_run,
        "planned_steps": num_steps,
        "final_train_loss": final_loss,
        "probe_step_s": round(step_s, 4),
        "threads": threads,
        "thread_probe_step_s": {str(n): round(s, 4) for n, s in thread_probe_s.items()},
        "model_config": model_config.to_dict(),
        "training": train_kw,
        "num_params": sum(p.numel() for p in model.parameters()),
    }


def run_task(
    name: str,
    budget_s: float | None,
    num_datasets: int,
    seed: int,
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    task = TASKS[name]
    cls, kwargs = task["prior"]
    prior = cls(**kwargs)
    model, run = train_task(task, prior, budget_s)
    res = evaluate(model, prior, num_datasets=num_datasets, seq_len=task["seq_len"], seed=seed)
    if plots_dir is not None:
        out = plots_dir / name
        plot_evaluation(res, out)
        spec = describe_generator(prior)
        if spec.supervised and spec.input_dim == 1 and not spec.discrete:
            plot_predictive_bands(model, prior, out / "predictive_bands.png", num_context=8)
    ex = res["excess_nll"]
    floor = res.get("floor_excess_nll")
    tails = draws_outside(model, prior, task["seq_len"], seed)
    return {
        "task": name,
        "title": task["title"],
        "prior": res["prior_repr"],
        "seq_len": task["seq_len"],
        "target_excess_nll": task["target"],
        **run,
        "excess_nll": ex["mean"],
        "excess_nll_stderr": ex["stderr"],
        "excess_nll_per_n": ex["per_n"],
        "exact_nll": res["exact_nll"]["mean"],
        "pfn_nll": res["nll"]["mean"],
        "prior_predictive_nll": res["prior_predictive_nll"]["mean"],
        "floor_excess_nll": None if floor is None else floor["mean"],
        "floor_excess_nll_stderr": None if floor is None else floor["stderr"],
        "coverage_50": res["coverage"]["0.5"]["mean"] if res["coverage"] else None,
        "coverage_90": res["coverage"]["0.9"]["mean"] if res["coverage"] else None,
        "accuracy": res["accuracy"]["mean"] if res["accuracy"] else None,
        "mse": res["mse"]["mean"] if res["mse"] else None,
        "exact_mse": res["exact_mse"]["mean"] if res["exact_mse"] else None,
        "draws_outside_999": tails,
        "meets_target": ex["mean"] is not None and ex["mean"] <= task["target"],
        "eval_time_s": res["eval_time_s"],
        "num_eval_datasets": num_datasets,
    }


def draws_outside(model: Any, prior: Any, seq_len: int, seed: int) -> dict[str, float] | None:
    """Share of marginal and joint posterior-predictive draws outside the exact 99.9%
    interval (``predictive_draws``) after a context of a third of the sequence; None for
    discrete models and priors without an exact predictive CDF."""
    if getattr(model, "discrete_y", False) or not hasattr(prior, "exact_predictive_cdf"):
        return None
    context = seq_len // 3
    r = predictive_draws(
        model, prior, context=context, num_query=seq_len - context, num_datasets=256, seed=seed
    )
    return {"marginal": r["marginal"]["outside"], "joint": r["joint"]["outside"]}


def _last_logged(path: Path, key: str, default: Any) -> Any:
    """The last value of ``key`` in train()'s metrics JSONL file."""
    value = default
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if key in rec:
                value = rec[key]
    return value


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _fmt_tails(tails: dict[str, float] | None) -> str:
    if tails is None:
        return "-"
    return f"{100 * tails['marginal']:.2f}% / {100 * tails['joint']:.2f}%"


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="PFN quality: paired excess NLL vs the exact posterior predictive (nats)")
    for col, justify in (
        ("task", "left"),
        ("train s", "right"),
        ("steps", "right"),
        ("excess NLL", "right"),
        ("target", "right"),
        ("exact NLL", "right"),
        ("PFN NLL", "right"),
        ("floor", "right"),
        ("outside 99.9% m / j", "right"),
        ("ok", "center"),
    ):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(
            r["title"],
            f"{r['train_time_s']:.0f}",
            str(r["num_steps"]),
            f"{_fmt(r['excess_nll'])} ± {_fmt(r['excess_nll_stderr'])}",
            f"≤ {r['target_excess_nll']}",
            _fmt(r["exact_nll"]),
            _fmt(r["pfn_nll"]),
            _fmt(r["floor_excess_nll"]),
            _fmt_tails(r.get("draws_outside_999")),
            "[green]yes[/green]" if r["meets_target"] else "[red]no[/red]",
        )
    Console(width=max(Console().width, 130)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", default="all", help=f"comma-separated subset of {','.join(TASKS)} (default all)"
    )
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="training time budget per task in seconds (default: each task's max_time_s)",
    )
    parser.add_argument("--num-datasets", type=int, default=2048, help="held-out datasets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out set")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--plots", type=Path, default=None, help="also write evaluation figures to PLOTS/<task>/"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: per task, 1 or all cores, whichever is faster now)",
    )
    args = parser.parse_args(argv)

    names = list(TASKS) if args.tasks == "all" else [t.strip() for t in args.tasks.split(",") if t]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    if args.threads:
        global _FIXED_THREADS
        _FIXED_THREADS = args.threads

    rows = []
    for name in names:
        print(f"[bench-quality] training {name} ...", flush=True)
        row = run_task(name, args.time_budget_s, args.num_datasets, args.seed, args.plots)
        print(
            f"[bench-quality] {name}: excess NLL {_fmt(row['excess_nll'])} ± "
            f"{_fmt(row['excess_nll_stderr'])} after {row['num_steps']} steps "
            f"({row['train_time_s']:.0f} s)",
            flush=True,
        )
        rows.append(row)
    print_table(rows)

    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text()).get("tasks", {})
        except (json.JSONDecodeError, AttributeError):
            previous = {}
    merged = {**previous, **{r["task"]: r for r in rows}}
    payload = {
        "benchmark": "quality",
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cores": _MAX_THREADS,
        },
        "tasks": {k: merged[k] for k in TASKS if k in merged},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    tmp.replace(args.out)
    print(f"[bench-quality] wrote {args.out}")
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
