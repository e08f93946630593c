"""OpenMP waiting (``make bench-openmp``): the training step of ``make train``'s model under
the waiting policies the CLI could set, on idle cores and with one core kept busy elsewhere.

``pfn`` sets ``GOMP_SPINCOUNT=3000`` unless the environment chooses (``pfn_cli/main.py``):
libgomp's default (spin for long) is fastest on idle cores and collapses when another process
loads one; ``OMP_WAIT_POLICY=PASSIVE`` (never spin) survives the load and is slow when idle.
Every case runs in a fresh process (the variables are read when torch loads); steps are the
library's ``TrainStep`` on fixed batches. Run it alone on the machine.

    make bench-openmp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

POLICIES = {
    "libgomp default (spin)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=3000 (pfn's)": {"GOMP_SPINCOUNT": "3000"},
}
BUSY = "while True: pass"


def child(warmup: int, steps: int) -> None:
    """Seconds per step of the default CLI model (d_model 64, 4 layers, batch 32, seq 32)."""
    import torch

    from pfn_transformers import RegressionConfig, TrainingConfig, sample_batch
    from pfn_transformers.priors import LinearRegressionPrior
    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    prior = LinearRegressionPrior()
    lo, hi = prior.suggested_y_range
    config = RegressionConfig(d_model=64, n_layers=4, n_heads=4, y_min=lo, y_max=hi, d_vocab=256)
    tc = TrainingConfig(batch_size=32, seq_len=32, device="cpu")
    step = TrainStep(build_state(config, tc, DistributedContext.from_env(torch.device("cpu"))))
    x, y = sample_batch(prior, 32, 32)
    for _ in range(warmup):
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    print(json.dumps({"step_s": (time.perf_counter() - t0) / steps}))


def measure(env: dict[str, str], loaded: bool, warmup: int, steps: int) -> float:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(warmup), str(steps)],
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return json.loads(out.strip().splitlines()[-1])["step_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/openmp.json"))
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    results = {
        name: {
            "idle_s": measure(env, False, args.warmup, args.steps),
            "one_core_busy_s": measure(env, True, args.warmup, args.steps),
        }
        for name, env in POLICIES.items()
    }
    ref = results["GOMP_SPINCOUNT=3000 (pfn's)"]
    table = Table(title="train step of make train's model (ms), by OpenMP waiting policy")
    for col in ("policy", "idle", "vs pfn's", "one core busy", "vs pfn's"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{1e3 * r['idle_s']:.1f}",
            f"{r['idle_s'] / ref['idle_s']:.2f}x",
            f"{1e3 * r['one_core_busy_s']:.1f}",
            f"{r['one_core_busy_s'] / ref['one_core_busy_s']:.2f}x",
        )
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
