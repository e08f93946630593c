"""Speed benchmark (``make bench``): one run, side by side, ratios against a yardstick.

1. Train step at the spec's Example 1 size (d_model 128, 4 layers, 4 heads, seq 64 = 129
   tokens, 100 uniform buckets), at batch 32 and 512: the library's ``TrainStep`` (fused,
   skippable AdamW, on-device checks) in fp32, bf16 autocast and compiled; a plain step
   (model + foreach AdamW, no checks) to show the checks cost nothing; the library's step with
   the earlier recipe (AdamW, linear decoder, sum encoder) to show what the defaults cost; the explicit hooked
   attention path; and a plain ``nn.TransformerEncoder`` of the same size and token count.
   Variants run round-robin so machine noise hits them alike; medians are reported.
2. ``sample_batch`` throughput at batch 256 x 64.
3. End-to-end ``pfn train`` on the GP prior (sequences/s and data share from metrics.jsonl).
4. Generation, KV-cached against recomputing the sequence: 64 coin rollouts of 256 tokens
   (2 layers, d_model 64) and 16 joint posterior draws at 50 query points.

``--device cuda`` runs the same on a GPU (batch 512 and a longer end-to-end run there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from pfn_transformers import (
    PFN,
    DeterministicGenerator,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedConfig,
    sample_batch,
)
from pfn_transformers.model.configs import LEGACY_DEFAULTS
from pfn_transformers.training.distributed import DistributedContext
from pfn_transformers.training.state import LEGACY_OPTIMIZER, build_state
from pfn_transformers.training.step import TrainStep

D_MODEL, N_LAYERS, N_HEADS, SEQ, BUCKETS, INPUT_DIM = 128, 4, 4, 64, 100, 10
REPO = Path(__file__).resolve().parents[1]
console = Console()


def linear_fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * x).sum(dim=-1)


def example1_generator() -> DeterministicGenerator:
    return DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=linear_fn,
        input_dim=INPUT_DIM,
        noise_std=0.1,
    )


def example1_config(**fields: Any) -> RegressionConfig:
    return RegressionConfig(
        d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, d_head=D_MODEL // N_HEADS,
        input_dim=INPUT_DIM, prediction_type="distribution", bucket_type="uniform",
        d_vocab=BUCKETS, y_min=-5.0, y_max=5.0, **fields,
    )  # fmt: skip


# the recipe before issue 14's defaults (the step the new defaults must not slow by > 10%)
EARLIER_MODEL = LEGACY_DEFAULTS
EARLIER_TRAINING = LEGACY_OPTIMIZER


def library_step(
    precision: str,
    device: str,
    batch: int,
    compile_: bool | str = False,
    path: str = "auto",
    earlier: bool = False,
) -> Callable[[], None]:
    """One step of the library's TrainStep on a fixed batch (``earlier``: the recipe before
    the MLP decoder, joint encoder, tail floor and Muon)."""
    tc = TrainingConfig(
        batch_size=batch, seq_len=SEQ, precision=precision, compile=compile_, device=device,
        **(EARLIER_TRAINING if earlier else {}),
    )  # fmt: skip
    config = example1_config(**(EARLIER_MODEL if earlier else {}))
    state = build_state(config, tc, DistributedContext.from_env(torch.device(device)))
    state.model.set_attention_path(path)
    step = TrainStep(state)
    x, y = (t.to(device) for t in sample_batch(example1_generator(), batch, SEQ))
    return lambda: step(x, y)


def plain_step(device: str, batch: int) -> Callable[[], None]:
    """The earlier recipe's model with a plain foreach AdamW step and no on-device checks (the
    yardstick of what the library's step adds: compare "TrainStep fp32, earlier recipe")."""
    model = PFN(example1_config(**EARLIER_MODEL)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = (t.to(device) for t in sample_batch(example1_generator(), batch, SEQ))

    def step() -> None:
        loss = model(x, y, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


class EncoderBaseline(nn.Module):
    """A plain PyTorch transformer of the same size, fed the same number of tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(INPUT_DIM + 1, D_MODEL)
        layer = nn.TransformerEncoderLayer(
            D_MODEL, N_HEADS, dim_feedforward=4 * D_MODEL, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, BUCKETS)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens), mask=mask))


def encoder_step(precision: str, device: str, batch: int) -> Callable[[], None]:
    model = EncoderBaseline().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randn(batch, 2 * SEQ + 1, INPUT_DIM + 1, device=device)  # same token count
    mask = nn.Transformer.generate_square_subsequent_mask(2 * SEQ + 1, device=device)
    target = torch.randint(0, BUCKETS, (batch, 2 * SEQ + 1), device=device)

    def step() -> None:
        with torch.autocast(
            torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
        ):
            logits = model(tokens, mask)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_round_robin(
    variants: dict[str, Callable[[], None]], rounds: int, steps: int, warmup: int = 3
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call of each variant, and each variant's warm-up seconds."""
    warm: dict[str, float] = {}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        _sync()
        warm[name] = time.perf_counter() - t0
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync()
            samples[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in samples.items()}, warm


def train_steps(device: str, batch: int, rounds: int, steps: int, compiled: bool) -> dict:
    variants = {
        "pfn TrainStep fp32": library_step("fp32", device, batch),
        "pfn TrainStep bf16 autocast": library_step("bf16", device, batch),
        "pfn TrainStep fp32, earlier recipe": library_step("fp32", device, batch, earlier=True),
        "pfn TrainStep bf16, earlier recipe": library_step("bf16", device, batch, earlier=True),
        "pfn plain step fp32, earlier recipe (no checks)": plain_step(device, batch),
        "pfn explicit hooked path fp32": library_step("fp32", device, batch, path="explicit"),
        "nn.TransformerEncoder fp32": encoder_step("fp32", device, batch),
        "nn.TransformerEncoder bf16 autocast": encoder_step("bf16", device, batch),
    }
    if compiled:
        variants["pfn TrainStep compiled (precision auto)"] = library_step(
            "auto", device, batch, compile_=True
        )
    times, warm = time_round_robin(variants, rounds, steps)
    base = times["nn.TransformerEncoder fp32"]
    table = Table(
        title=f"train step on {device}, Example 1 size, batch {batch}, {2 * SEQ + 1} tokens"
    )
    for col in ("variant", "s/step", "seq/s", "vs encoder fp32", "warm-up s"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, t in times.items():
        table.add_row(
            name, f"{t:.4f}", f"{batch / t:,.0f}", f"{t / base:.2f}x", f"{warm[name]:.1f}"
        )
    console.print(table)
    return {
        "step_s": times,
        "ratio_vs_encoder_fp32": {k: v / base for k, v in times.items()},
        "warmup_s": warm,
    }


def sampling_throughput(generator, batch: int = 256, seq: int = 64, repeats: int = 50) -> float:
    sample_batch(generator, batch, seq)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample_batch(generator, batch, seq)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def sampling() -> dict[str, float]:
    from pfn_transformers.priors import GPPrior, LinearRegressionPrior

    rates = {
        "DeterministicGenerator linear, input_dim 10 (spec Example 1)": sampling_throughput(
            example1_generator()
        ),
        "priors.LinearRegressionPrior (input_dim 1, bias)": sampling_throughput(
            LinearRegressionPrior()
        ),
        "priors.GPPrior (RBF, seq 64)": sampling_throughput(GPPrior(), repeats=10),
    }
    table = Table(title="sample_batch throughput, batch 256 x seq 64 (CPU)")
    table.add_column("generator")
    table.add_column("sequences/s", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:,.0f}")
    console.print(table)
    return rates


def end_to_end(device: str, batch: int, steps: int) -> dict[str, float]:
    """``pfn train`` on the GP prior at Example-1 model size; figures from metrics.jsonl."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "prior=gp", "model.d_model=128", "model.n_layers=4", f"training.batch_size={batch}",
            "training.seq_len=64", f"training.num_steps={steps}", f"training.log_every={max(1, steps // 5)}",
            f"training.device={device}", "training.progress_bar=false", "eval.enabled=false",
        ]  # fmt: skip
        env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pfn_cli", "train", *args], cwd=tmp, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        (metrics,) = Path(tmp).rglob("metrics.jsonl")
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    steady = rows[1:] or rows  # the first window holds start-up (and compilation)
    out = {
        "batch": batch,
        "steps": steps,
        "wall_s": wall,
        "seq_per_s": statistics.median(r["seq_per_s"] for r in steady),
        "data_share": statistics.median(r["data_share"] for r in steady),
    }
    console.print(
        f"pfn train prior=gp (d_model 128, 4 layers, batch {batch}, seq 64, {steps} steps on "
        f"{device}): {out['seq_per_s']:,.0f} sequences/s, data share {out['data_share']:.1%}, "
        f"{wall:.0f} s wall"
    )
    return out


def generation(device: str) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    coin = PFN(
        UnsupervisedConfig(d_model=64, n_layers=2, n_heads=4, input_type="discrete", d_vocab=2)
    ).to(device)
    reg = PFN(RegressionConfig(d_model=64, n_layers=4, n_heads=4, input_dim=1)).to(device)
    xc, yc = torch.randn(1, 20, 1, device=device), torch.randn(1, 20, device=device)
    xq = torch.linspace(-1, 1, 50, device=device).view(1, 50, 1)
    cases = {
        "64 coin rollouts x 256 tokens": lambda cached: coin.generate(
            64, 256, use_past_kv_cache=cached
        ),
        "16 joint draws at 50 queries (20 context)": lambda cached: reg.generate(
            xc, yc, xq, num_samples=16, use_past_kv_cache=cached
        ),
    }
    out = {}
    table = Table(title=f"generation on {device}: KV cache against recomputing")
    for col in ("case", "cached s", "uncached s", "speed-up", "same draws"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, run in cases.items():
        times, draws = {}, {}
        for cached in (True, False):
            torch.manual_seed(1)
            t0 = time.perf_counter()
            draws[cached] = run(cached)
            _sync()
            times[cached] = time.perf_counter() - t0
        same = torch.allclose(draws[True].float(), draws[False].float(), atol=1e-4)
        out[name] = {"cached_s": times[True], "uncached_s": times[False], "same_draws": same}
        table.add_row(
            name,
            f"{times[True]:.2f}",
            f"{times[False]:.2f}",
            f"{times[False] / times[True]:.1f}x",
            str(same),
        )
    console.print(table)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batches", type=int, nargs="*", default=None, help="default 32 512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    parser.add_argument("--skip", nargs="*", default=[], help="train, sampling, e2e, generation")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/speed.json"))
    args = parser.parse_args()
    dev, gpu = args.device, args.device.startswith("cuda")
    info = {
        "device": torch.cuda.get_device_name() if gpu else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    console.print(info)
    results: dict = {"machine": info}
    if "train" not in args.skip:
        results["train_step"] = {}
        for batch in args.batches or [32, 512]:
            big = batch >= 256 and not gpu  # seconds per step on a CPU: fewer rounds
            results["train_step"][str(batch)] = train_steps(
                dev,
                batch,
                rounds=2 if big else args.rounds,
                steps=1 if big else args.steps,
                compiled=not args.no_compile,
            )
    if "sampling" not in args.skip:
        results["sample_batch_seq_per_s"] = sampling()
    if "e2e" not in args.skip:
        results["pfn_train_gp"] = end_to_end(dev, *((512, 400) if gpu else (64, 60)))
    if "generation" not in args.skip:
        results["generation"] = generation(dev)
    cli_bench = Path(__file__).with_name("bench_cli.py")
    if cli_bench.exists() and not gpu:
        subprocess.run([sys.executable, str(cli_bench)], check=False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
