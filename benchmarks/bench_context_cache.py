"""Cached contexts (``make bench``): queries/s and peak memory against the number of queries.

One context of N points (the spec's Example 1 model: d_model 128, 4 layers, 4 heads, 100
buckets, input_dim 10) and M query points, three ways:

- ``cached``: ``CachedContext`` encodes the context once, queries run in chunks of its
  default size (about the context size, within [128, 1024]);
- ``re-encode``: ``model.predict`` per batch of the same size (the context is encoded again
  for every batch; memory stays flat, time does not);
- ``one pass``: ``model.predict`` with all M queries at once (memory grows with M, so it
  runs only up to ``--max-one-pass`` queries).

Every (mode, M) runs in a fresh subprocess so its peak memory is its own: on CPU the growth
of peak RSS over a warmed-up baseline, on CUDA ``max_memory_allocated`` over the memory in
use before. Times are medians over ``--repeats`` runs. ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

INPUT_DIM = 10


def _model(device: str):
    import torch

    from pfn_transformers import PFN, RegressionConfig

    torch.manual_seed(0)
    cfg = RegressionConfig(
        d_model=128, n_layers=4, n_heads=4, input_dim=INPUT_DIM, d_vocab=100,
        y_min=-5.0, y_max=5.0,
    )  # fmt: skip
    return PFN(cfg).to(device).eval()


def child(mode: str, n_context: int, n_query: int, repeats: int, device: str) -> dict:
    """Run one (mode, M) and report its time and peak memory (called in a subprocess)."""
    import torch

    from pfn_transformers import CachedContext
    from pfn_transformers.context import default_chunk

    model = _model(device)
    g = torch.Generator().manual_seed(1)
    xc = torch.randn(1, n_context, INPUT_DIM, generator=g).to(device)
    yc = torch.randn(1, n_context, generator=g).to(device)
    xq = torch.randn(1, n_query, INPUT_DIM, generator=g).to(device)
    chunk = default_chunk(n_context + 1)  # the start token + the context pairs
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def run(queries):
        with torch.inference_mode():
            if mode == "cached":
                return CachedContext(model, xc, yc).logits(queries)
            if mode == "re-encode":
                parts = [
                    model.predict(xc, yc, queries[:, i : i + chunk])
                    for i in range(0, queries.shape[1], chunk)
                ]
                return torch.cat(parts, 1)
            return model.predict(xc, yc, queries)

    run(xq[:, : min(256, n_query)])  # warm up (allocator, kernels) before the baseline
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run(xq)
        sync()
        times.append(time.perf_counter() - t0)
        del out
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    t = statistics.median(times)
    return {
        "mode": mode, "n_context": n_context, "n_query": n_query, "seconds": t,
        "queries_per_s": n_query / t, "peak_mib": max(peak, 0) / 2**20, "chunk": chunk,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--context", type=int, default=512, help="context points N")
    parser.add_argument("--queries", type=int, nargs="*", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--max-one-pass", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/context_cache.json"))
    parser.add_argument("--child", nargs=3, metavar=("MODE", "N", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, n, m = args.child
        print(json.dumps(child(mode, int(n), int(m), args.repeats, args.device)))
        return
    if args.quick:
        args.context, args.queries, args.max_one_pass, args.repeats = 64, [256, 2048], 2048, 1

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = []
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for m in args.queries:
        for mode in ("cached", "re-encode", "one pass"):
            if mode == "one pass" and m > args.max_one_pass:
                rows.append({"mode": mode, "n_query": m, "skipped": "memory grows with M"})
                continue
            cmd = [
                sys.executable, __file__, "--child", mode, str(args.context), str(m),
                "--repeats", str(args.repeats), "--device", args.device,
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = Table(
        title=f"Queries against one context of {args.context} points ({args.device}; Example-1 "
        "model; cached and re-encode in equal chunks)"
    )
    for col in ("queries M", "mode", "queries/s", "peak memory (MiB)", "vs re-encode"):
        table.add_column(col, justify="right")
    speed = {(r["mode"], r["n_query"]): r.get("queries_per_s") for r in rows}
    for r in rows:
        if "skipped" in r:
            table.add_row(f"{r['n_query']:,}", r["mode"], "-", f"skipped: {r['skipped']}", "-")
            continue
        ratio = r["queries_per_s"] / speed[("re-encode", r["n_query"])]
        table.add_row(
            f"{r['n_query']:,}", r["mode"], f"{r['queries_per_s']:,.0f}", f"{r['peak_mib']:.1f}",
            f"{ratio:.2f}x",
        )  # fmt: skip
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": args.device, "rows": rows}, indent=2))
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
