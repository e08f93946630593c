"""GPU benchmark (``make bench-gpu``): one script, about five minutes of one H100/H200.

Sections, each written to one JSON (``benchmarks/results/gpu.json``; a section that fails
records its error and the script exits 1 after writing the rest):

1. ``steps``: the spec's Example-1 step (d_model 128, 4 layers, seq 64) at batch 32 and 512:
   ``TrainStep`` eager (fp32, bf16) against ``nn.TransformerEncoder`` fed the same tokens,
   and compiled (``compile=True``: inductor, CUDA graphs on CUDA) in child processes with a
   fresh compile cache (cold) and then the same cache (warm), with the compile seconds.
2. ``end_to_end``: ``pfn train prior=gp`` at Example-1 size, sequences/s and data share.
3. ``gpu_profile``: ``pfn train training=gpu prior=gp`` for 60 s of training, evaluated, then
   resumed for 120 s more and evaluated again: excess NLL after 60 and 180 s, compile seconds.
4. ``peer``: automl/PFNs against ours on the GP prior at equal steps and equal wall time on
   this device (``bench_peer.py --device``; recorded as not measured where ``pfns`` is absent).
5. ``context_length``: step cost against context length S (``bench_scaling``'s step table).

``--device cpu --quick`` runs the same code paths on CPU in a few minutes (tiny sizes and
budgets, the ``aot_eager`` compile backend unless ``--backend`` says otherwise); a test runs it.

    make bench-gpu                                  # python benchmarks/bench_gpu.py --device cuda
    python benchmarks/bench_gpu.py --device cpu --quick --out /tmp/gpu_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_step_s(fn: Callable[[], Any], device: str, rounds: int, steps: int) -> float:
    for _ in range(2):  # warm-up (allocator, autotuning)
        fn()
    _sync(device)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) / steps)
    return statistics.median(samples)


# ---------------------------------------------------------------------------- 1. steps
def compiled_step_child(device: str, batch: int, rounds: int, steps: int) -> dict[str, float]:
    """In a child process: the compiled TrainStep's compile seconds and steady step time."""
    from bench_speed import library_step

    t0 = time.perf_counter()
    step = library_step("auto", device, batch, compile_=True)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    step()
    step()  # CUDA graphs record on the second call
    _sync(device)
    compile_s = time.perf_counter() - t0
    return {
        "compile_s": compile_s,
        "build_s": build_s,
        "step_s": median_step_s(step, device, rounds, steps),
    }


def run_compiled_child(args: argparse.Namespace, batch: int, cache: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(PFN_CACHE_DIR=str(cache), PFN_COMPILE_BACKEND=args.backend, PYTHONPATH=str(REPO))
    cmd = [
        sys.executable, __file__, "--child-compiled", "--device", args.device,
        "--batch", str(batch), "--rounds", str(args.rounds), "--steps", str(args.steps),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compiled-step child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_table(args: argparse.Namespace) -> dict[str, Any]:
    from bench_speed import encoder_step, library_step

    rows = {}
    for batch in args.batches:
        eager = {
            "TrainStep eager fp32": library_step("fp32", args.device, batch),
            "TrainStep eager bf16": library_step("bf16", args.device, batch),
            "nn.TransformerEncoder fp32": encoder_step("fp32", args.device, batch),
            "nn.TransformerEncoder bf16": encoder_step("bf16", args.device, batch),
        }
        seconds = {
            name: median_step_s(fn, args.device, args.rounds, args.steps)
            for name, fn in eager.items()
        }
        del eager
        compile_s = {}
        with tempfile.TemporaryDirectory() as cache:
            for which in ("cold", "warm"):
                child = run_compiled_child(args, batch, Path(cache))
                compile_s[which] = child["compile_s"]
                seconds[f"TrainStep compiled ({which} cache)"] = child["step_s"]
        base = seconds["nn.TransformerEncoder fp32"]
        rows[str(batch)] = {
            "step_s": seconds,
            "seq_per_s": {k: batch / v for k, v in seconds.items()},
            "vs_encoder_fp32": {k: v / base for k, v in seconds.items()},
            "vs_encoder_bf16": {
                k: v / seconds["nn.TransformerEncoder bf16"] for k, v in seconds.items()
            },
            "compile_s": compile_s,
        }
        table = Table(title=f"Example-1 step on {args.device}, batch {batch}")
        for col in ("variant", "s/step", "seq/s", "vs encoder fp32"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for name, t in seconds.items():
            table.add_row(name, f"{t:.4f}", f"{batch / t:,.0f}", f"{t / base:.2f}x")
        table.caption = f"compile: cold {compile_s['cold']:.1f} s, warm {compile_s['warm']:.1f} s"
        console.print(table)
    return rows


# ---------------------------------------------------------------------------- 2-3. the CLI
def pfn_train(args: argparse.Namespace, overrides: list[str], cwd: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env["PFN_COMPILE_BACKEND"] = args.backend
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pfn_cli", "train", *overrides, "training.progress_bar=false"],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pfn train {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    batch, steps = (16, 30) if args.quick else (512, 600)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "prior=gp", "model.d_model=128", "model.n_layers=4", f"training.batch_size={batch}",
            "training.seq_len=64", f"training.num_steps={steps}",
            f"training.log_every={max(1, steps // 6)}", f"training.device={args.device}",
            "eval.enabled=false", "hydra.run.dir=run",
        ]  # fmt: skip
        wall = pfn_train(args, overrides, Path(tmp))
        rows = [json.loads(s) for s in (Path(tmp) / "run/metrics.jsonl").read_text().splitlines()]
        status = json.loads((Path(tmp) / "run/status.json").read_text())
    steady = rows[1:] or rows  # the first window holds start-up (and compilation)
    out = {
        "batch": batch,
        "steps": steps,
        "wall_s": wall,
        "compile_s": status.get("compile_s"),
        "seq_per_s": statistics.median(r["seq_per_s"] for r in steady),
        "data_share": statistics.median(r["data_share"] for r in steady),
    }
    console.print(
        f"pfn train prior=gp, batch {batch}: {out['seq_per_s']:,.0f} sequences/s, data share "
        f"{out['data_share']:.1%}, compile {out['compile_s']} s, {wall:.0f} s wall"
    )
    return out


def gpu_profile(args: argparse.Namespace) -> dict[str, Any]:
    first, more = (5, 10) if args.quick else (60, 120)
    base = ["training=gpu", "prior=gp", f"training.device={args.device}", "eval.num_datasets=512"]
    if args.quick:  # the profile's code path at a CPU size
        base += ["model.d_model=32", "model.n_layers=2", "model.n_heads=2"]
        base += ["training.batch_size=16", "training.log_every=10", "eval.num_datasets=64"]
    out: dict[str, Any] = {"after_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        # A resumed run keeps its own config: only single values go on top, no group.
        resume = ["resume=run", f"training.device={args.device}"]
        for seconds, budget, overrides in (
            (first, first, [*base, "hydra.run.dir=run"]),
            (first + more, more, resume),
        ):
            wall = pfn_train(args, [*overrides, f"training.max_time_s={budget}"], Path(tmp))
            evaluation = json.loads((run / "eval.json").read_text())
            status = json.loads((run / "status.json").read_text())
            out["after_s"][str(seconds)] = {
                "excess_nll": evaluation["excess_nll"]["mean"],
                "stderr": evaluation["excess_nll"]["stderr"],
                "floor_excess_nll": (evaluation.get("floor_excess_nll") or {}).get("mean"),
                "step": status["step"],
                "compile_s": status.get("compile_s"),
                "wall_s": wall,
            }
            console.print(
                f"training=gpu prior=gp after {seconds} s: {out['after_s'][str(seconds)]}"
            )
    return out


# ---------------------------------------------------------------------------- 4-5. peers, S
def peer(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import pfns  # noqa: F401
    except ImportError:
        return {"not_measured": "automl/PFNs (pfns) is not installed in this environment"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        steps = ["--steps", "40", "--datasets", "64"] if args.quick else ["--steps", "1500"]
        subprocess.run(
            [sys.executable, str(HERE / "bench_peer.py"), "--tasks", "gp", "--device",
             args.device, "--out", str(out), *steps],
            check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        card = json.loads(out.read_text())
    return card["results"]["gp"]


def context_length(args: argparse.Namespace) -> dict[str, Any]:
    from bench_scaling import step_table as scaling_table

    points = [8, 32] if args.quick else [64, 256, 1024, 2048]
    ns = argparse.Namespace(
        device=args.device, precision="bf16", points=points, paths=("auto",), dense_max=0,
        rounds=args.rounds, steps=args.steps, memory=False, peer=False,
    )  # fmt: skip
    return scaling_table(ns)


SECTIONS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "steps": step_table,
    "end_to_end": end_to_end,
    "gpu_profile": gpu_profile,
    "peer": peer,
    "context_length": context_length,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the code paths only")
    parser.add_argument("--backend", default=None, help="compile backend (quick: aot_eager)")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child-compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.steps = args.steps or (2 if args.quick else 10)
    if args.child_compiled:
        print(json.dumps(compiled_step_child(args.device, args.batch, args.rounds, args.steps)))
        return
    args.backend = args.backend or ("aot_eager" if args.quick else "inductor")
    args.batches = [4, 16] if args.quick else [32, 512]
    name = "gpu_quick.json" if args.quick else "gpu.json"
    out = args.out or HERE / "results" / name
    result: dict[str, Any] = {
        "meta": {
            **machine.describe(),
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "quick": args.quick,
            "backend": args.backend,
        },
        "errors": {},
    }
    for section in args.sections:
        t0 = time.perf_counter()
        try:
            result[section] = SECTIONS[section](args)
        except Exception:  # recorded; the other sections still run
            result["errors"][section] = traceback.format_exc()[-4000:]
            console.print(f"[red]{section} failed[/]:\n{result['errors'][section]}")
        result["meta"][f"{section}_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"wrote {out}")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
