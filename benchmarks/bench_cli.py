"""CLI start-up benchmark: how fast `pfn list-runs` answers on a store of fake runs.

    python benchmarks/bench_cli.py                 # 50 fake runs, 5 repeats
    python benchmarks/bench_cli.py --runs 200 --repeat 10 --max-seconds 1.5

Builds ``--runs`` run directories (a quarter of them as sweep jobs) that look like real
ones (.hydra/config.yaml and hydra.yaml, status.json, a 200-line metrics.jsonl, an eval.json
with per-n curves, checkpoint files), then times the full command (a fresh `pfn list-runs`
process, table and --json) and, for comparison, the bare interpreter start-up. Prints the
median and worst wall time; exits 1 when the median exceeds --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODELS = ["regression", "regression_point", "classification", "unsupervised_discrete"]
PRIORS = ["linear", "gp", "logistic", "coin", "mlp"]
STATUSES = ["finished", "finished", "finished", "interrupted", "failed", "running"]


def _hydra_yaml(model: str, prior: str) -> str:
    # about the size of a real .hydra/hydra.yaml (only read when status.json is missing)
    lines = ["hydra:", "  run:", "    dir: outputs/x", "  runtime:", "    choices:"]
    lines += [f"      model: {model}", f"      prior: {prior}", "      training: quick"]
    lines += [f"  filler_{i}: {'x' * 40}" for i in range(120)]
    return "\n".join(lines) + "\n"


def make_fake_runs(root: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` realistic-looking run directories under ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    sweep = root / "2025-01-01_00-00-00-000000_train_sweep"
    runs = []
    for i in range(n):
        model, prior = rng.choice(MODELS), rng.choice(PRIORS)
        if i % 4 == 3:
            run = sweep / f"{i}_{model}-{prior}"
        else:
            run = root / f"2025-01-01_00-{i // 60:02d}-{i % 60:02d}-000000_train_{model}-{prior}"
        (run / ".hydra").mkdir(parents=True, exist_ok=True)
        (run / "checkpoints").mkdir(exist_ok=True)
        (run / ".hydra" / "config.yaml").write_text(
            f"model:\n  _target_: x\n  d_model: 64\nprior:\n  _target_: {prior}\n"
        )
        (run / ".hydra" / "hydra.yaml").write_text(_hydra_yaml(model, prior))
        status = rng.choice(STATUSES)
        num_steps = rng.choice([1500, 10000])
        step = num_steps if status == "finished" else rng.randrange(1, num_steps)
        st = {
            "status": status,
            "model": model,
            "prior": prior,
            "num_steps": num_steps,
            "step": step,
            "started": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+0000",
            "started_ts": 1735689600 + i,
            "pid": 999999,
            "host": "bench-host",
        }
        if i % 10 == 9:
            st = {}  # an old run without status.json: list-runs falls back to hydra.yaml
        else:
            (run / "status.json").write_text(json.dumps(st, indent=2))
        with open(run / "metrics.jsonl", "w") as fh:
            for s in range(200):
                fh.write(json.dumps({"step": (s + 1) * 50, "loss": 2.0 / (s + 1), "lr": 1e-3}))
                fh.write("\n")
        if status == "finished":
            per_n = [rng.random() for _ in range(64)]
            stat = {"mean": 0.05, "stderr": 0.01, "per_n": per_n, "per_n_stderr": per_n}
            (run / "eval.json").write_text(
                json.dumps({"excess_nll": stat, "nll": stat, "exact_nll": stat, "mse": stat})
            )
        for s in (500, 1000, 1500):
            (run / "checkpoints" / f"step-{s}.pt").write_bytes(b"\0" * 64)
        runs.append(run)
    return runs


def pfn_command() -> list[str]:
    script = Path(sys.executable).parent / "pfn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pfn_cli"]


def time_command(cmd: list[str], cwd: Path, repeat: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=1.5)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="pfn-bench-cli-") as tmp:
        cwd = Path(tmp)
        make_fake_runs(cwd / "outputs", args.runs)
        table = time_command([*pfn_command(), "list-runs"], cwd, args.repeat)
        as_json = time_command([*pfn_command(), "list-runs", "--json"], cwd, args.repeat)
        python = time_command([sys.executable, "-c", "pass"], cwd, args.repeat)
        listed = json.loads(
            subprocess.run(
                [*pfn_command(), "list-runs", "--json"],
                cwd=cwd,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
                capture_output=True,
                text=True,
            ).stdout
        )
    result = {
        "runs": args.runs,
        "listed": len(listed),
        "list_runs_median_s": round(statistics.median(table), 3),
        "list_runs_max_s": round(max(table), 3),
        "list_runs_json_median_s": round(statistics.median(as_json), 3),
        "python_startup_median_s": round(statistics.median(python), 3),
        "limit_s": args.max_seconds,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"pfn list-runs on {args.runs} runs: median {result['list_runs_median_s']:.3f} s "
            f"(worst {result['list_runs_max_s']:.3f} s; --json {result['list_runs_json_median_s']:.3f} s; "
            f"bare python start-up {result['python_startup_median_s']:.3f} s; limit {args.max_seconds} s)"
        )
    ok = result["listed"] == args.runs and result["list_runs_median_s"] <= args.max_seconds
    if not ok:
        print("FAIL: too slow or runs missing", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
