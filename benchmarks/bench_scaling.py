"""Long contexts (``make bench-scaling``): cost per dataset and peak memory against S.

1. **Step table.** At S = 64, 256, 1,024, 2,048 points per dataset and a fixed token budget
   (about 16k tokens per step: batch = 16,384 // (2S + 1)), one training step of the public
   model (``model(x, y, return_type="loss")``, backward, the library's default optimizer
   through ``TrainStep``) against ``nn.TransformerEncoder`` of the same width, depth, heads
   and MLP fed the same tokens (2S + 1, no mask) and one token per point (S + 1), side by
   side in one process, round-robin, medians. The attention paths run as variants: ``auto``
   (the default), ``split`` (SDPA), ``split-matmul`` and ``dense`` (one explicit mask over
   2S + 1 tokens: the path every CPU bf16 run took before). Peak memory of each variant is
   measured in its own process (CPU: peak RSS growth; CUDA: ``max_memory_allocated``).
   Where automl/PFNs (``pfns``) is importable (``make bench-scaling`` runs in ``.venv-peer``),
   its model's step at the same S is timed too (its ``pfns.train`` at two step counts,
   differenced, so set-up cancels).
2. **Growth exponent** of the cost per dataset over 64..1,024 points (a log-log fit).
3. **Inference at a long context** (CPU): ``predict`` and ``CachedContext`` with 10,000
   context points and 1,000 queries, seconds and peak memory, each in a fresh process.
4. **Quality at a long context** (``--quality``): the PFN paper's Figure 4a prior (RBF GP,
   5 features, lengthscale 0.6, noise variance 1e-4, x ~ U[0,1]^5) at S = 512, trained for a
   fixed CPU budget, excess NLL per n against the exact posterior with the bucket floor.

``--device cuda`` runs the same on a GPU (bf16 autocast there). Writes
``benchmarks/results/scaling.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from pfn_transformers import RegressionConfig, TrainingConfig  # noqa: E402
from pfn_transformers.training.distributed import DistributedContext  # noqa: E402
from pfn_transformers.training.state import build_state  # noqa: E402
from pfn_transformers.training.step import TrainStep  # noqa: E402

D_MODEL, N_LAYERS, N_HEADS, BUCKETS, INPUT_DIM = 128, 4, 4, 100, 1
TOKEN_BUDGET = 16_384
PATHS = ("auto", "split", "split-matmul", "dense")
REPO = Path(__file__).resolve().parents[1]


def batch_for(points: int) -> int:
    return max(1, TOKEN_BUDGET // (2 * points + 1))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def pfn_step(device: str, points: int, batch: int, path: str, precision: str) -> Callable:
    config = RegressionConfig(
        d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, d_head=D_MODEL // N_HEADS,
        input_dim=INPUT_DIM, d_vocab=BUCKETS, y_min=-4.0, y_max=4.0,
    )  # fmt: skip
    tc = TrainingConfig(batch_size=batch, seq_len=points, precision=precision, device=device)
    state = build_state(config, tc, DistributedContext.from_env(torch.device(device)))
    state.model.set_attention_path("explicit" if path == "dense" else path)
    step = TrainStep(state)
    x = torch.rand(batch, points, INPUT_DIM, device=device)
    y = torch.randn(batch, points, device=device)
    return lambda: step(x, y)


class Encoder(nn.Module):
    """A plain PyTorch transformer of the same width, depth, heads and MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(INPUT_DIM + 1, D_MODEL)
        layer = nn.TransformerEncoderLayer(
            D_MODEL, N_HEADS, dim_feedforward=4 * D_MODEL, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, BUCKETS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


def encoder_step(device: str, tokens: int, batch: int, precision: str) -> Callable:
    model = Encoder().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = torch.randn(batch, tokens, INPUT_DIM + 1, device=device)
    target = torch.randint(0, BUCKETS, (batch, tokens), device=device)
    kind = torch.device(device).type

    def step() -> None:
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(inputs)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def build_variant(name: str, device: str, points: int, precision: str) -> Callable:
    batch = batch_for(points)
    if name.startswith("pfn "):
        return pfn_step(device, points, batch, name[4:], precision)
    if name == "encoder 2S+1":
        return encoder_step(device, 2 * points + 1, batch, precision)
    if name == "encoder S+1":
        return encoder_step(device, points + 1, batch, precision)
    raise ValueError(f"unknown variant {name!r}")


def variant_names(points: int, paths: tuple[str, ...]) -> list[str]:
    return [f"pfn {p}" for p in paths] + ["encoder 2S+1", "encoder S+1"]


def time_variants(
    variants: dict[str, Callable], device: str, rounds: int, steps: int
) -> dict[str, float]:
    """Median seconds per step, round-robin so machine noise hits every variant alike."""
    for fn in variants.values():  # warm-up (allocator, kernels, lazy inits)
        fn()
        fn()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in samples.items()}


def peak_memory(name: str, device: str, points: int, precision: str) -> float:
    """Peak memory (MiB) of two steps of one variant: on CUDA from the allocator's peak, on
    CPU as the peak RSS growth of a fresh process."""
    if device.startswith("cuda"):
        return _measure_peak(name, device, points, precision)
    code = (
        "import sys, json; sys.argv=['x']; import bench_scaling as b; "
        f"print(json.dumps(b._measure_peak({name!r}, {device!r}, {points}, {precision!r})))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _measure_peak(name: str, device: str, points: int, precision: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step = build_variant(name, device, points, precision)
        step()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) restarts from here
    step = build_variant(name, device, points, precision)
    step()
    step()
    return _status_mib("VmHWM") - before


def _measure_inference(context: int, queries: int, how: str) -> dict[str, float]:
    """Seconds and peak memory growth (MiB) of one prediction at a long context (CPU)."""
    from pfn_transformers import PFN
    from pfn_transformers.context import CachedContext

    torch.manual_seed(0)
    config = RegressionConfig(d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS,
                              input_dim=INPUT_DIM, d_vocab=BUCKETS, y_min=-4.0, y_max=4.0)  # fmt: skip
    model = PFN(config).eval()
    x, y = torch.rand(1, context, INPUT_DIM), torch.randn(1, context)
    xq = torch.rand(1, queries, INPUT_DIM)
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    if how == "predict":
        model.predict(x, y, xq)
    else:
        CachedContext(model, x, y).logits(xq)
    return {"seconds": time.perf_counter() - t0, "peak_mib": _status_mib("VmHWM") - before}


def inference_table(context: int = 10_000, queries: int = 1_000) -> dict[str, Any]:
    """``predict`` and ``CachedContext`` with a long context on the CPU, each in a fresh
    process (d_model 128, 4 layers, 1 feature, batch 1)."""
    out: dict[str, Any] = {"context": context, "queries": queries}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    for how in ("predict", "cached_context"):
        code = (
            "import json, bench_scaling as b; "
            f"print(json.dumps(b._measure_inference({context}, {queries}, {how!r})))"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True)  # fmt: skip
        out[how] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def peer_step_seconds(points: int, batch: int, device: str) -> float | None:
    """automl/PFNs' seconds per training step at S points, data generation excluded (None
    where ``pfns`` is not installed): its ``pfns.train`` at 10 and 30 steps, differenced."""
    try:
        from peer_pfns import train_peer
    except ImportError:
        return None
    from pfn_transformers.priors import GPPrior

    prior = GPPrior(input_dim=INPUT_DIM)

    class Stream:  # what train_peer reads: the prior, its input size, batches
        input_dim = INPUT_DIM

        def __init__(self) -> None:
            self.prior = prior

        def generate_batch(self, b: int, s: int, device=None):
            return prior.generate_batch(b, s)

    def seconds(steps: int) -> float:
        _, took = train_peer(
            Stream(), seq_len=points, num_buckets=BUCKETS, d_model=D_MODEL, n_layers=N_LAYERS,
            n_heads=N_HEADS, batch_size=batch, num_steps=steps, learning_rate=1e-4,
            warmup_steps=0, weight_decay=0.0, device=device,
        )  # fmt: skip
        return took

    seconds(10)  # warm-up
    short, long = seconds(10), seconds(30)
    t0 = time.perf_counter()
    for _ in range(20):
        prior.generate_batch(batch, points)
    data = time.perf_counter() - t0
    return max(0.0, long - short - data) / 20


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def step_table(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for points in args.points:
        batch = batch_for(points)
        names = variant_names(points, tuple(args.paths))
        if points > args.dense_max:
            names = [n for n in names if n != "pfn dense"]
        variants = {n: build_variant(n, args.device, points, args.precision) for n in names}
        times = time_variants(variants, args.device, args.rounds, args.steps)
        del variants
        row: dict[str, Any] = {"points": points, "batch": batch, "seconds": times}
        row["per_dataset_ms"] = {n: 1000 * t / batch for n, t in times.items()}
        enc = times["encoder 2S+1"]
        row["vs_encoder_2S+1"] = {n: t / enc for n, t in times.items()}
        row["vs_encoder_S+1"] = {n: t / times["encoder S+1"] for n, t in times.items()}
        if args.memory:
            row["peak_mib"] = {
                n: peak_memory(n, args.device, points, args.precision) for n in names
            }
        if args.peer:
            try:
                peer = peer_step_seconds(points, batch, args.device)
            except Exception as exc:  # the peer's failure is reported, not fatal
                row["peer_error"] = f"{type(exc).__name__}: {exc}"[:500]
                peer = None
            if peer is not None:
                row["seconds"]["automl/PFNs"] = peer
                row["vs_encoder_2S+1"]["automl/PFNs"] = peer / enc
        rows.append(row)
        print(json.dumps(row), flush=True)
    fit = [r for r in rows if 64 <= r["points"] <= 1024]
    exponents = {}
    if len(fit) >= 2:
        for name in fit[0]["per_dataset_ms"]:
            if all(name in r["per_dataset_ms"] for r in fit):
                xs = [r["points"] for r in fit]
                exponents[name] = loglog_slope(xs, [r["per_dataset_ms"][name] for r in fit])
    return {"rows": rows, "growth_exponent_64_1024": exponents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="bf16 or fp32 (default: bf16)")
    parser.add_argument("--points", type=int, nargs="*", default=[64, 256, 1024, 2048])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--dense-max", type=int, default=1024, help="skip dense above this S")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--quality", action="store_true", help="the Figure-4a run at S=512")
    parser.add_argument("--no-inference", dest="inference", action="store_false",
                        help="skip predict/CachedContext at 10,000 context points")  # fmt: skip
    parser.add_argument("--quality-seconds", type=float, default=300.0)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/scaling.json"))
    parser.add_argument(
        "--memory-into", metavar="FILE",
        help="measure only the peak memory of FILE's rows (and the inference figures) into FILE",
    )  # fmt: skip
    args = parser.parse_args()
    args.precision = args.precision or "bf16"
    if args.memory_into:
        path = Path(args.memory_into)
        result = json.loads(path.read_text())
        for row in result["steps"]["rows"]:
            names = [n for n in row["seconds"] if n != "automl/PFNs"]
            row["peak_mib"] = {
                n: peak_memory(n, result["device"], row["points"], result["precision"])
                for n in names
            }
            print(row["points"], json.dumps(row["peak_mib"]), flush=True)
        if result["device"] == "cpu" and args.inference:
            result["inference"] = inference_table()
        path.write_text(json.dumps(result, indent=2) + "\n")
        return
    result: dict[str, Any] = {"machine": describe(), "device": args.device}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    result["precision"] = args.precision
    result["token_budget"] = TOKEN_BUDGET
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.points:
        result["steps"] = step_table(args)
        out.write_text(json.dumps(result, indent=2) + "\n")  # kept if the quality run dies
    if args.inference and args.device == "cpu":
        result["inference"] = inference_table()
        out.write_text(json.dumps(result, indent=2) + "\n")
    if args.quality:
        from long_context_quality import figure4a_quality

        result["quality"] = figure4a_quality(args.device, args.quality_seconds)
        out.write_text(json.dumps(result, indent=2) + "\n")
    if "steps" in result:
        print("growth exponents:", json.dumps(result["steps"]["growth_exponent_64_1024"]))
    if "quality" in result:
        q = result["quality"]
        print(
            f"S={q['points']}: excess NLL {q['excess_nll']:.4f} +- {q['excess_stderr']:.4f} "
            f"(floor {q['floor_excess_nll']:.4f}) after {q['steps']} steps, {q['train_seconds']} s"
        )


if __name__ == "__main__":
    main()
