"""Operators per training step (``make bench-ops``): the CPU proxy for a launch-bound GPU step.

On a GPU at small batches a step costs its kernel launches, so this counts the operators one
step dispatches (``TorchDispatchMode``; pure view operators excluded) at the spec's Example-1
size (d_model 128, 4 layers, seq 64 = 129 tokens, 100 buckets) and batch 4:

- the public ``train()`` with the default recipe (Muon + AdamW, on-device skip of non-finite
  steps), one ``TrainStep`` call counted after the first steps (optimizer state exists);
- the same with ``optimizer="adamw"``;
- a plain ``nn.TransformerEncoder`` of the same size fed the same number of tokens, with
  foreach AdamW and gradient-norm clipping, under the same autocast as ours.

Alongside: the top operators by name for each, ratios against the encoder, and CPU seconds
per step of the three, timed round-robin in the same run. ``--ablation`` repeats the
measurement for the commits that made the step lean (each checked out with ``git archive``
into a scratch folder and measured in a child process with the encoder beside it), so the
table shows what each change saved. Writes ``benchmarks/results/ops.json``.

    make bench-ops                        # python benchmarks/bench_ops.py --ablation
    python benchmarks/bench_ops.py --out /tmp/ops.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
# OpenMP waits as the CLI's do (before torch loads libgomp): spinning workers of the waiting
# parent would otherwise take the cores from the child that measures a revision
os.environ.setdefault("GOMP_SPINCOUNT", "3000")

import machine  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

BATCH = 4
COUNT_FROM = 3  # steps 0-2 create the optimizer state; count the steps after
COUNT_STEPS = 3
TOP = 15
# operators that launch no kernel (metadata, profiler markers, host scalars): reported apart
NO_KERNEL = (
    "_unsafe_view",
    "_record_function_enter_new",
    "_record_function_exit",
    "_local_scalar_dense",
    "promote_types",
)
# the commits of issue 23, item 2 ("a lean step"), oldest first: (label, revision)
ABLATION = [
    ("before (c823c2b)", "c823c2b"),
    ("+ Muon over whole-shape stacks", "ddc9876"),
    ("+ one non-finite flag, packed StepStats", "50794d6"),
    ("+ attention without per-layer copies", "107d481"),
    ("+ bar-distribution constants cached", "550103b"),
    ("+ fewer dispatches (views, no clone, addcmul)", "603ca74"),
]


class OpCounter(TorchDispatchMode):
    """Counts the operators dispatched while active, by name (pure view operators excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if not func.is_view:
            self.counts[func.__name__] += 1
        return func(*args, **(kwargs or {}))


def _kernel_ops(counts: collections.Counter[str]) -> int:
    return sum(n for op, n in counts.items() if op.split(".")[0] not in NO_KERNEL)


def _steady(samples: list[collections.Counter[str]]) -> collections.Counter[str]:
    totals = {sum(c.values()) for c in samples}
    if len(totals) != 1:
        raise RuntimeError(f"operators per step vary between steps: {sorted(totals)}")
    return samples[-1]


# ---------------------------------------------------------------------------- our step
def library_counts(optimizer: str, precision: str = "auto") -> collections.Counter[str]:
    """Operators of one step of the public ``train()`` (TrainStep.__call__ counted)."""
    from bench_speed import SEQ, example1_config, example1_generator

    from pfn_transformers import TrainingConfig, train
    from pfn_transformers.training import step as step_module

    samples: list[collections.Counter[str]] = []
    original = step_module.TrainStep.__call__

    def counted(self, x, y):  # noqa: ANN001, ANN202
        if self.state.step < COUNT_FROM:
            return original(self, x, y)
        with OpCounter() as counter:
            loss = original(self, x, y)
        samples.append(counter.counts)
        return loss

    tc = TrainingConfig(
        batch_size=BATCH, seq_len=SEQ, num_steps=COUNT_FROM + COUNT_STEPS, optimizer=optimizer,
        precision=precision, save_checkpoint=False, progress_bar=False, log_every=1000, device="cpu", seed=0,
    )  # fmt: skip
    step_module.TrainStep.__call__ = counted
    try:
        train(example1_generator(), example1_config(), tc)
    finally:
        step_module.TrainStep.__call__ = original
    return _steady(samples)


def library_step(optimizer: str) -> Callable[[], Any]:
    """The same step (TrainingConfig as ``train()`` builds it) on a fixed batch, for timing."""
    from bench_speed import SEQ, example1_config, example1_generator

    from pfn_transformers import TrainingConfig, sample_batch
    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    tc = TrainingConfig(batch_size=BATCH, seq_len=SEQ, optimizer=optimizer, device="cpu")
    state = build_state(example1_config(), tc, DistributedContext.from_env(torch.device("cpu")))
    step = TrainStep(state)
    x, y = sample_batch(example1_generator(), BATCH, SEQ)
    return lambda: step(x, y)


# ---------------------------------------------------------------------------- the yardstick
def encoder_step(bf16: bool) -> Callable[[], Any]:
    """nn.TransformerEncoder of the same size and token count, foreach AdamW, clipping."""
    from bench_speed import BUCKETS, INPUT_DIM, SEQ, EncoderBaseline

    torch.manual_seed(0)
    model = EncoderBaseline()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    tokens = torch.randn(BATCH, 2 * SEQ + 1, INPUT_DIM + 1)
    mask = nn.Transformer.generate_square_subsequent_mask(2 * SEQ + 1)
    target = torch.randint(0, BUCKETS, (BATCH, 2 * SEQ + 1))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens, mask)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()

    return step


def encoder_counts(bf16: bool) -> collections.Counter[str]:
    step = encoder_step(bf16)
    samples = []
    for i in range(COUNT_FROM + COUNT_STEPS):
        with OpCounter() as counter:
            step()
        if i >= COUNT_FROM:
            samples.append(counter.counts)
    return _steady(samples)


# ---------------------------------------------------------------------------- timing
def time_round_robin(
    variants: dict[str, Callable[[], Any]], rounds: int, steps: int
) -> dict[str, float]:
    """Median seconds per call, the variants interleaved so machine noise hits them alike."""
    for fn in variants.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[name].append((time.perf_counter() - t0) / steps)
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def measure(
    rounds: int, steps: int, variants: tuple[str, ...], count: bool = True
) -> dict[str, Any]:
    """Operators and CPU seconds per step of ``variants`` (of default, adamw) and the encoder
    (``count=False``: the seconds only)."""
    from pfn_transformers.utils import has_fast_bf16

    bf16 = has_fast_bf16(torch.device("cpu"))  # what precision="auto" picks here
    names = {"default": "muon", "adamw": "adamw"}
    timed = {v: library_step(names[v]) for v in variants}
    timed["encoder"] = encoder_step(bf16)
    seconds = time_round_robin(timed, rounds, steps)
    if not count:
        return {
            "variants": {
                n: {"cpu_s_per_step": t, "cpu_s_vs_encoder": t / seconds["encoder"]}
                for n, t in seconds.items()
            }
        }
    counts = {v: library_counts(names[v]) for v in variants}
    counts["encoder"] = encoder_counts(bf16)
    base_ops, base_s = sum(counts["encoder"].values()), seconds["encoder"]
    result: dict[str, Any] = {"bf16_autocast": bf16, "variants": {}, "top_ops": {}}
    for name, c in counts.items():
        total = sum(c.values())
        result["variants"][name] = {
            "ops_per_step": total,
            "ops_vs_encoder": total / base_ops,
            "kernel_ops_per_step": _kernel_ops(c),
            "kernel_ops_vs_encoder": _kernel_ops(c) / _kernel_ops(counts["encoder"]),
            "cpu_s_per_step": seconds[name],
            "cpu_s_vs_encoder": seconds[name] / base_s,
        }
        result["top_ops"][name] = dict(c.most_common(TOP))
    if "default" in counts:  # where the default step's extra operators are, by name
        diff = counts["default"].copy()
        diff.subtract(counts["encoder"])
        result["default_minus_encoder"] = dict(
            sorted(((k, v) for k, v in diff.items() if v), key=lambda kv: -abs(kv[1]))[:TOP]
        )
    return result


# ---------------------------------------------------------------------------- ablation
def _export(revision: str, into: Path) -> None:
    """The library at ``revision`` (git archive of pfn_transformers/) into ``into``."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "pfn_transformers"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")


def _child(revision: str, args: argparse.Namespace, time_only: bool) -> dict[str, Any] | None:
    """``measure`` of the library at ``revision`` in a child process (None: not in the clone)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _export(revision, Path(tmp))
        except subprocess.CalledProcessError:
            return None
        out = Path(tmp) / "child.json"
        env = {**os.environ, "PYTHONPATH": tmp, "PFN_BENCH_LIBRARY": tmp}
        cmd = [sys.executable, __file__, "--child", "--out", str(out),
               "--rounds", str(args.rounds), "--steps", str(args.steps)]  # fmt: skip
        subprocess.run(
            [*cmd, *(["--time-only"] if time_only else [])], env=env, check=True, cwd=tmp
        )
        return json.loads(out.read_text())


def ablation(args: argparse.Namespace) -> dict[str, Any]:
    """Each revision's operators and CPU s/step (the encoder timed beside it in each child),
    then ``args.passes - 1`` more timing passes over all revisions, interleaved, so load
    that drifts during the run hits every revision alike; s/step is the median over passes."""
    rows: dict[str, Any] = {}
    times: dict[str, list[float]] = {label: [] for label, _ in ABLATION}
    ratios: dict[str, list[float]] = {label: [] for label, _ in ABLATION}
    for p in range(args.passes):
        for label, revision in ABLATION:
            child = _child(revision, args, time_only=p > 0)
            if child is None:
                rows[label] = {"revision": revision, "not_measured": "revision not in this clone"}
                continue
            default = child["variants"]["default"]
            times[label].append(default["cpu_s_per_step"])
            ratios[label].append(default["cpu_s_vs_encoder"])
            if p == 0:
                rows[label] = {
                    "revision": revision,
                    "ops_per_step": default["ops_per_step"],
                    "ops_vs_encoder": default["ops_vs_encoder"],
                    "kernel_ops_per_step": default["kernel_ops_per_step"],
                }
            print(f"  pass {p + 1}: {label:48s} {default.get('ops_per_step', '-'):>5} ops  "
                  f"{default['cpu_s_per_step'] * 1e3:6.1f} ms/step", flush=True)  # fmt: skip
    for label, row in rows.items():
        if times[label]:
            row["cpu_s_per_step"] = statistics.median(times[label])
            row["cpu_s_vs_encoder"] = statistics.median(ratios[label])
            row["cpu_s_passes"] = times[label]
    first = rows[ABLATION[0][0]]
    if "cpu_s_per_step" in first:
        for row in rows.values():
            if "cpu_s_per_step" in row:
                row["cpu_s_vs_before"] = row["cpu_s_per_step"] / first["cpu_s_per_step"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ops.json")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ablation", action="store_true", help="also measure ABLATION's commits")
    parser.add_argument("--passes", type=int, default=3, help="ablation timing passes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one revision of the library (on PYTHONPATH): the default step only
        library = os.environ.get("PFN_BENCH_LIBRARY")
        import pfn_transformers

        if library and not pfn_transformers.__file__.startswith(library):
            raise RuntimeError(f"measured {pfn_transformers.__file__}, not the export {library}")
        result = measure(args.rounds, args.steps, ("default",), count=not args.time_only)
        args.out.write_text(json.dumps(result))
        return
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {**machine.describe(), "batch": BATCH, "size": "spec Example 1: d_model 128, "
                 "4 layers, 4 heads, seq 64 (129 tokens), 100 buckets",
                 "counted": "operators one TrainStep call dispatches (TorchDispatchMode), "
                 "pure view operators excluded; kernel_ops also without "
                 + ", ".join(NO_KERNEL)},
    }  # fmt: skip
    result.update(measure(args.rounds, args.steps, ("default", "adamw")))
    for name, row in result["variants"].items():
        print(f"{name:8s} {row['ops_per_step']:5d} ops/step ({row['ops_vs_encoder']:.2f}x the "
              f"encoder), {row['cpu_s_per_step'] * 1e3:.1f} ms/step "
              f"({row['cpu_s_vs_encoder']:.2f}x)")  # fmt: skip
    if args.ablation:
        print("ablation (default recipe; each commit in its own process, the encoder beside it):")
        result["ablation"] = ablation(args)
    result["meta"]["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
