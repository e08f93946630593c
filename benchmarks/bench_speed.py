"""Speed benchmark (``make bench``): one run, side by side, ratios against a yardstick.

Train step (forward + backward + AdamW) at the spec's Example 1 size (d_model 128, 4 layers,
4 heads, batch 32, seq 64, 100 uniform buckets) for the PFN's SDPA fast path (fp32 and bf16
autocast), its explicit hooked path, and a plain ``nn.TransformerEncoder`` of the same size
and token count. Variants run round-robin so machine noise hits them alike; the median of
the rounds is reported. Then ``sample_batch`` throughput at batch 256 x 64.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from pfn_transformers import PFN, DeterministicGenerator, RegressionConfig, sample_batch

D_MODEL, N_LAYERS, N_HEADS, BATCH, SEQ, BUCKETS, INPUT_DIM = 128, 4, 4, 32, 64, 100, 10


def linear_fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * x).sum(dim=-1)


def example1_generator() -> DeterministicGenerator:
    return DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=linear_fn,
        input_dim=INPUT_DIM,
        noise_std=0.1,
    )


def pfn_step(
    path: str, precision: str, device: str = "cpu", batch: int = BATCH
) -> Callable[[], None]:
    cfg = RegressionConfig(
        d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, d_head=D_MODEL // N_HEADS,
        input_dim=INPUT_DIM, prediction_type="distribution", bucket_type="uniform",
        d_vocab=BUCKETS, y_min=-5.0, y_max=5.0,
    )  # fmt: skip
    model = PFN(cfg).to(device)
    model.set_attention_path(path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = (t.to(device) for t in sample_batch(example1_generator(), batch, SEQ))

    def step() -> None:
        with torch.autocast(
            torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
        ):
            logits = model(x, y)
        loss = model.loss(logits.float(), y).mean()
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


def encoder_step(precision: str, device: str = "cpu", batch: int = BATCH) -> Callable[[], None]:
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
    variants: dict[str, Callable[[], None]], rounds: int, steps: int
) -> dict[str, float]:
    for fn in variants.values():  # warm-up
        for _ in range(3):
            fn()
    _sync()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync()
            samples[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in samples.items()}


def sampling_throughput(generator, batch: int = 256, seq: int = 64, repeats: int = 50) -> float:
    sample_batch(generator, batch, seq)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample_batch(generator, batch, seq)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/speed.json"))
    args = parser.parse_args()
    console = Console()
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    dev, b = args.device, args.batch
    variants = {
        "pfn fast path fp32": pfn_step("auto", "fp32", dev, b),
        "pfn fast path bf16 autocast": pfn_step("auto", "bf16", dev, b),
        "pfn explicit hooked fp32": pfn_step("explicit", "fp32", dev, b),
        "nn.TransformerEncoder fp32": encoder_step("fp32", dev, b),
        "nn.TransformerEncoder bf16 autocast": encoder_step("bf16", dev, b),
    }
    times = time_round_robin(variants, args.rounds, args.steps)
    base = times["nn.TransformerEncoder fp32"]
    table = Table(
        title=f"train step on {dev}, Example 1 size (batch {b}, seq {SEQ}, {2 * SEQ + 1} tokens)"
    )
    for col in ("variant", "s/step", "seq/s", "ratio vs encoder fp32"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for name, t in times.items():
        table.add_row(name, f"{t:.4f}", f"{b / t:,.0f}", f"{t / base:.2f}x")
    console.print(table)

    results = {
        "train_step_s": times,
        "ratio_vs_encoder_fp32": {k: v / base for k, v in times.items()},
    }
    rates = {
        "DeterministicGenerator linear, input_dim 10 (spec Example 1)": sampling_throughput(
            example1_generator()
        )
    }
    try:
        from pfn_transformers.priors import LinearRegressionPrior

        rates["priors.LinearRegressionPrior (input_dim 1, bias)"] = sampling_throughput(
            LinearRegressionPrior()
        )
    except ImportError:
        pass
    table = Table(title="sample_batch throughput, batch 256 x seq 64 (target >= 200,000 seq/s)")
    table.add_column("generator")
    table.add_column("sequences/s", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:,.0f}")
    console.print(table)
    results["sample_batch_seq_per_s"] = rates

    cli_bench = Path(__file__).with_name("bench_cli.py")
    if cli_bench.exists():
        subprocess.run([sys.executable, str(cli_bench)], check=False)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
