"""The PFN paper's Figure-4b comparison at a CPU budget (``make bench-paper``).

Mueller et al. (2022, section 5.2, Figure 4b) train a PFN on GP regression with hyperpriors
(BoTorch's former ``SingleTaskGP`` priors) and compare its NLL per number of training points
with type-II maximum likelihood (MLE-II) and with the GP that knows the true hyperparameters.
This script does the same with ``priors.GPHyperPrior`` on 1 feature and on 5, and adds what
the paper could only approximate with NUTS: the exact posterior predictive (by quadrature
over the hyperpriors, ``GPHyperPrior.exact_log_predictive``).

Per feature count: train a PFN within its budget (``bench_quality.train_task``), then
``evaluate(..., baselines=True)`` on ``--num-datasets`` held-out datasets of 31 points: per
context size n = 0..30 the NLL of the PFN, MLE-II (``evaluation.gp_baselines``), the
true-hyperparameter oracle and the exact predictive, with standard errors over datasets. It
also times predictions per dataset (all 31 positions) for the PFN and for MLE-II. Writes
``benchmarks/results/paper.json`` (the card) and ``paper.png`` (the figure), and prints whether
the paper's claims hold here:

- the PFN is closer to the exact predictive than MLE-II (its NLL is lower at every n <= 10
  and on average over n = 1..30);
- the PFN predicts orders of magnitude faster than MLE-II fits (timed against scikit-learn's
  per-dataset fit, as a GP user runs it, and against this project's batched MLE-II);
- target: on 1 feature, the PFN's excess NLL averaged over n = 1..30 is at most 0.03 nats.

    make bench-paper                                    # both feature counts, shipped budgets
    make bench-paper VARIANTS=cond                      # the hyperparameter-conditioned model
    .venv/bin/python benchmarks/bench_paper.py --quick  # the same code paths in about a minute
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import paper_statement  # noqa: E402
from bench_quality import train_task  # noqa: E402
from machine import describe as describe_machine  # noqa: E402

from pfn_transformers.evaluation import evaluate  # noqa: E402
from pfn_transformers.priors import GPHyperPrior  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper.json"
FIGURE = ROOT / "benchmarks" / "results" / "paper.png"
SEQ_LEN = 31  # n = 0..30 context points before each prediction
TARGET_EXCESS = 0.03  # 1 feature, mean over n = 1..30
CLAIM_MAX_N = 10  # "the PFN's NLL below MLE-II's at every n <= 10"

# The model and training of each variant: bench_quality's task format (shipped settings).
# Borders: uniform over the prior's suggested y range (about +-30, the central 99.9% of the
# prior predictive widened by 10%) at 0.06 per bucket, a sixth of the 1% quantile of the
# noise standard deviation, so the bucket floor stays far below the excess NLL.
TASKS: dict[str, dict[str, Any]] = {
    "1": {
        "title": "GP with hyperpriors, 1 feature",
        "input_dim": 1,
        "seq_len": SEQ_LEN,
        "model": {
            "kind": "regression",
            "input_dim": 1,
            "d_model": 128,
            "n_layers": 4,
            "n_heads": 4,
            "borders": {"type": "uniform", "y_min": -30.5, "y_max": 30.5, "num_buckets": 1000},
        },
        "train": {
            "batch_size": 64,
            "num_steps": 20000,
            "learning_rate": 1e-3,
            "warmup_steps": 500,
            "precision": "bf16",
        },
        "max_time_s": 330,
    },
}
# 5 features: the same model and training, a shorter budget (no target, reported beside 1)
TASKS["5"] = {
    **TASKS["1"],
    "title": "GP with hyperpriors, 5 features",
    "input_dim": 5,
    "model": {**TASKS["1"]["model"], "input_dim": 5},
    "max_time_s": 240,
}
# Hyperparameter conditioning (``condition_on``): one model for the conditional and the
# marginal predictive; targets: within 0.03 nats of each exact reference (``--variants cond``)
TASKS["cond"] = {
    **TASKS["1"],
    "title": "GP with hyperpriors, 1 feature, conditioned on its hyperparameters",
    "model": {
        **TASKS["1"]["model"],
        "condition_on": ["lengthscale", "outputscale", "noise_var"],
        "condition_drop_prob": 0.5,
    },
}
TARGET_CONDITION = 0.03
QUICK = {"max_time_s": 15, "num_datasets": 64, "timing_datasets": 8}
SKLEARN_TIMING_DATASETS = 5  # scikit-learn fits one dataset at a time: a few suffice to time it


# ----------------------------------------------------------------------------- measurements
def _per_n(summary: dict[str, Any]) -> dict[str, list[float | None]]:
    return {"mean": summary["per_n"], "stderr": summary["per_n_stderr"]}


def _mean_over(values: list[float | None], lo: int, hi: int) -> float:
    """Mean of ``values[lo..hi]`` (both included): the average over context sizes."""
    chunk = [v for v in values[lo : hi + 1] if v is not None]
    return sum(chunk) / len(chunk)


def prediction_times(model: Any, prior: GPHyperPrior, num_datasets: int) -> dict[str, float]:
    """Seconds per dataset to predict all 31 positions: the PFN in one batched forward and
    one dataset at a time; MLE-II (a fit per context size) batched over the datasets
    (``gp_baselines``) and one dataset at a time with scikit-learn; the quadrature reference."""
    from pfn_transformers.evaluation.gp_baselines import mle_ii_log_predictive

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        draw = prior.draw(num_datasets, SEQ_LEN)
    x, y = draw.x, draw.y
    model.eval()

    def clock(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    with torch.inference_mode():
        model.log_predictive(x[:2], y[:2])  # warm-up
        batched = clock(lambda: model.log_predictive(x, y)) / num_datasets
        single = min(
            clock(lambda i=i: model.log_predictive(x[i : i + 1], y[i : i + 1])) for i in range(4)
        )
    mle = clock(lambda: mle_ii_log_predictive(prior, x, y)) / num_datasets
    exact = clock(lambda: prior.exact_log_predictive(x, y)) / num_datasets
    sk_sets = min(SKLEARN_TIMING_DATASETS, num_datasets)
    sk = sum(clock(lambda i=i: sklearn_mle_ii(x[i], y[i])) for i in range(sk_sets)) / sk_sets
    return {
        "pfn_batched_s": batched,
        "pfn_single_s": single,
        "mle_ii_s": mle,
        "sklearn_mle_ii_s": sk,
        "sklearn_timing_datasets": sk_sets,
        "exact_quadrature_s": exact,
        "mle_ii_over_pfn_batched": mle / batched,
        "mle_ii_over_pfn_single": mle / single,
        "sklearn_mle_ii_over_pfn_single": sk / single,
    }


def sklearn_mle_ii(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """MLE-II the way a GP user runs it, one dataset at a time: scikit-learn's
    ``GaussianProcessRegressor`` (Matern-5/2 x constant + white noise, this project's bounds,
    2 random restarts: 3 starts, as ``gp_baselines``) fitted on each context of n = 2..30
    points, then the log density of point n. Returns the log densities (timed by the caller)."""
    import warnings

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    from pfn_transformers.evaluation.gp_baselines import BOUNDS

    X, Y = x.double().numpy(), y.double().numpy()
    out = []
    for n in range(2, X.shape[0]):
        kernel = ConstantKernel(1.0, BOUNDS["outputscale"]) * Matern(
            1.0, BOUNDS["lengthscale"], nu=2.5
        ) + WhiteKernel(1.0, BOUNDS["noise_var"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optima on a bound are expected at small n
            gp = GaussianProcessRegressor(kernel, alpha=1e-10, n_restarts_optimizer=2,
                                          random_state=n).fit(X[:n], Y[:n])  # fmt: skip
        mean, std = gp.predict(X[n : n + 1], return_std=True)
        z = (Y[n] - mean[0]) / std[0]
        out.append(float(-0.5 * z * z - math.log(std[0]) - 0.5 * math.log(2 * math.pi)))
    return out


def run_conditioned(task: dict[str, Any], prior: GPHyperPrior, model: Any, num: int, seed: int):
    """The conditioned model's excess with the true hyperparameters given (against the exact
    GP given them) and withheld (against the quadrature reference), per n and on average."""
    res = evaluate(model, prior, num_datasets=num, seq_len=SEQ_LEN, seed=seed, baselines=False)
    given, withheld = res["conditional"]["excess_nll"], res["excess_nll"]
    out = {
        "given_excess_mean_n1_30": _mean_over(given["per_n"], 1, SEQ_LEN - 1),
        "withheld_excess_mean_n1_30": _mean_over(withheld["per_n"], 1, SEQ_LEN - 1),
        "given_excess_per_n": _per_n(given),
        "withheld_excess_per_n": _per_n(withheld),
        "given_nll_per_n": _per_n(res["conditional"]["nll"]),
        "given_exact_nll_per_n": _per_n(res["conditional"]["exact_nll"]),
        "target_excess_nll": TARGET_CONDITION,
        "eval_time_s": res["eval_time_s"],
    }
    out["meets_target"] = (
        max(out["given_excess_mean_n1_30"], out["withheld_excess_mean_n1_30"]) <= TARGET_CONDITION
    )
    return out


def run_variant(key: str, budget_s: float | None, num_datasets: int, timing: int, seed: int):
    task = TASKS[key]
    prior = GPHyperPrior(input_dim=task["input_dim"])
    print(f"[bench-paper] training the {task['title']} PFN ...", flush=True)
    model, run = train_task(task, prior, budget_s)
    print(f"[bench-paper] {run['num_steps']} steps in {run['train_time_s']:.0f} s; evaluating")
    if "condition_on" in task["model"]:
        scores = run_conditioned(task, prior, model, num_datasets, seed)
        return {"title": task["title"], **scores, "input_dim": task["input_dim"],
                "num_datasets": num_datasets, "seq_len": SEQ_LEN, **run}  # fmt: skip
    res = evaluate(
        model, prior, num_datasets=num_datasets, seq_len=SEQ_LEN, seed=seed, baselines=True
    )
    base = res["baselines"]
    curves = {
        "pfn": _per_n(res["nll"]),
        "exact": _per_n(res["exact_nll"]),
        "mle_ii": _per_n(base["mle_ii"]["nll"]),
        "true_hyperparameters": _per_n(base["true_hyperparameters"]["nll"]),
    }
    excess = {
        "pfn": _per_n(res["excess_nll"]),
        "mle_ii": _per_n(base["mle_ii"]["excess_nll"]),
        "true_hyperparameters": _per_n(base["true_hyperparameters"]["excess_nll"]),
    }
    pfn_nll, mle_nll = curves["pfn"]["mean"], curves["mle_ii"]["mean"]
    below = [pfn_nll[n] < mle_nll[n] for n in range(1, CLAIM_MAX_N + 1)]
    times = prediction_times(model, prior, timing)
    summary = {
        "pfn_excess_mean_n1_30": _mean_over(excess["pfn"]["mean"], 1, SEQ_LEN - 1),
        "mle_ii_excess_mean_n1_30": _mean_over(excess["mle_ii"]["mean"], 1, SEQ_LEN - 1),
        "oracle_excess_mean_n1_30": _mean_over(
            excess["true_hyperparameters"]["mean"], 1, SEQ_LEN - 1
        ),
        "pfn_nll_mean_n1_30": _mean_over(pfn_nll, 1, SEQ_LEN - 1),
        "mle_ii_nll_mean_n1_30": _mean_over(mle_nll, 1, SEQ_LEN - 1),
        "exact_nll_mean_n1_30": _mean_over(curves["exact"]["mean"], 1, SEQ_LEN - 1),
        "pfn_below_mle_ii_at_n": {str(n): b for n, b in zip(range(1, CLAIM_MAX_N + 1), below)},
    }
    summary["pfn_below_mle_ii_every_n_le_10"] = all(below)
    summary["pfn_below_mle_ii_on_average"] = (
        summary["pfn_nll_mean_n1_30"] < summary["mle_ii_nll_mean_n1_30"]
    )
    summary["speedup_vs_mle_ii"] = times["mle_ii_over_pfn_batched"]
    summary["speedup_vs_sklearn_mle_ii"] = times["sklearn_mle_ii_over_pfn_single"]
    return {  # the summary first: the benchmark page's table shows the first columns
        "title": task["title"],
        **summary,
        "input_dim": task["input_dim"],
        "prior": res["prior_repr"],
        "num_datasets": num_datasets,
        "seq_len": SEQ_LEN,
        **run,
        "nll_per_n": curves,
        "excess_nll_per_n": excess,
        "prediction_time_per_dataset": times,
        "eval_time_s": res["eval_time_s"],
    }


# ----------------------------------------------------------------------------- figure, table
def plot(variants: dict[str, dict[str, Any]], out: Path) -> Path:
    """NLL per number of training points, one panel per feature count (Figure-4b style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "pfn": ("PFN", "C0", "-"),
        "mle_ii": ("GP, MLE-II", "C3", "--"),
        "exact": ("exact posterior (quadrature)", "k", ":"),
        "true_hyperparameters": ("GP, true hyperparameters", "C2", "-."),
    }
    fig, axes = plt.subplots(1, len(variants), figsize=(5.2 * len(variants), 3.8), squeeze=False)
    for ax, row in zip(axes[0], variants.values()):
        n = list(range(1, SEQ_LEN))
        for key, (label, color, ls) in styles.items():
            mean = row["nll_per_n"][key]["mean"][1:]
            se = row["nll_per_n"][key]["stderr"][1:]
            ax.plot(n, mean, ls, color=color, label=label)
            lo = [m - 2 * s for m, s in zip(mean, se)]
            hi = [m + 2 * s for m, s in zip(mean, se)]
            ax.fill_between(n, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.set_title(f"{row['title']} ({row['num_datasets']} datasets)")
        ax.set_xlabel("number of training points n")
        ax.set_ylabel("NLL of the next point (nats)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def print_table(variants: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="PFN paper, Figure 4b: mean NLL over n = 1..30 (excess vs exact)")
    for col in ("features", "steps", "PFN", "MLE-II", "true hypers", "exact", "PFN < MLE-II n<=10",
                "PFN / MLE-II time", "PFN / sklearn time"):  # fmt: skip
        table.add_column(col, justify="right")
    for row in variants.values():
        table.add_row(
            str(row["input_dim"]),
            str(row["num_steps"]),
            f"{row['pfn_nll_mean_n1_30']:.4f} ({row['pfn_excess_mean_n1_30']:+.4f})",
            f"{row['mle_ii_nll_mean_n1_30']:.4f} ({row['mle_ii_excess_mean_n1_30']:+.4f})",
            f"({row['oracle_excess_mean_n1_30']:+.4f})",
            f"{row['exact_nll_mean_n1_30']:.4f}",
            "yes" if row["pfn_below_mle_ii_every_n_le_10"] else "no",
            f"1/{row['speedup_vs_mle_ii']:.0f}",
            f"1/{row['speedup_vs_sklearn_mle_ii']:.0f}",
        )
    Console(width=max(Console().width, 130)).print(table)


def _previous(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()).get("variants", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}


def claims(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether the paper's claims hold on the Figure-4b variants (1 and 5 features) run."""
    fig = [v for v in variants.values() if "nll_per_n" in v]
    if not fig:
        return {}
    return {
        "pfn_closer_than_mle_ii": all(
            v["pfn_excess_mean_n1_30"] < v["mle_ii_excess_mean_n1_30"] for v in fig
        ),
        "pfn_below_mle_ii_every_n_le_10": all(v["pfn_below_mle_ii_every_n_le_10"] for v in fig),
        "pfn_below_mle_ii_on_average": all(v["pfn_below_mle_ii_on_average"] for v in fig),
        "min_speedup_vs_mle_ii": min(v["speedup_vs_mle_ii"] for v in fig),
        "min_speedup_vs_sklearn_mle_ii": min(v["speedup_vs_sklearn_mle_ii"] for v in fig),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants",
        default="1,5",
        help="comma-separated subset of 1,5 (features of the Figure-4b comparison) and cond "
        "(the model conditioned on the hyperparameters)",
    )
    parser.add_argument("--num-datasets", type=int, default=1000, help="held-out datasets")
    parser.add_argument("--timing-datasets", type=int, default=100, help="datasets timed")
    parser.add_argument("--time-budget-s", type=float, default=None, help="training s per model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out set")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: the code paths only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON card (variants merged)")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="PNG figure")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TASKS]
    if unknown:
        parser.error(f"--variants {unknown} is not valid; choose from {list(TASKS)}")
    budget, num, timing = args.time_budget_s, args.num_datasets, args.timing_datasets
    if args.quick:
        budget, num, timing = QUICK["max_time_s"], QUICK["num_datasets"], QUICK["timing_datasets"]

    t0 = time.perf_counter()
    ran = {k: run_variant(k, budget, num, timing, args.seed) for k in keys}
    elapsed = round(time.perf_counter() - t0, 1)
    for row in ran.values():
        row["quick"] = bool(args.quick)
        row["total_s"] = round(row["train_time_s"] + row["eval_time_s"], 1)
    variants = {k: v for k, v in {**_previous(args.out), **ran}.items() if k in TASKS}
    figure_rows = {k: v for k, v in variants.items() if "nll_per_n" in v}
    if figure_rows:
        print_table(figure_rows)
        plot(figure_rows, args.figure)
    if "cond" in ran:
        c = ran["cond"]
        print(
            f"[bench-paper] conditioned: excess {c['given_excess_mean_n1_30']:.4f} given, "
            f"{c['withheld_excess_mean_n1_30']:.4f} withheld (target <= {TARGET_CONDITION})"
        )
    one = variants.get("1")
    payload = {
        "benchmark": "paper",
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": describe_machine(),
        "last_run_s": elapsed,
        "last_run_variants": keys,
        "target_excess_nll_1_feature": TARGET_EXCESS,
        "meets_target": None if one is None else one["pfn_excess_mean_n1_30"] <= TARGET_EXCESS,
        "claims": claims(variants),
        "variants": variants,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    tmp.replace(args.out)
    print(f"[bench-paper] wrote {args.out} and {args.figure} in {elapsed:.0f} s")
    if args.out == RESULTS and not args.quick and figure_rows:
        paper_statement.write(args.out)
        print(f"[bench-paper] rewrote the statement in {paper_statement.README}")
    met = [payload["meets_target"]] + ([ran["cond"]["meets_target"]] if "cond" in ran else [])
    return 0 if all(m in (True, None) for m in met) else 1


if __name__ == "__main__":
    raise SystemExit(main())
