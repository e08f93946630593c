"""What machine a benchmark ran on: CPU model, its bf16 paths, threads, torch."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name and its bf16-relevant instruction sets (AMX, AVX512-BF16)."""
    name, flags = platform.processor() or platform.machine(), set()
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            name = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    paths = [f for f in ("amx_bf16", "avx512_bf16", "avx2") if f in flags]
    return f"{name} ({', '.join(paths) or 'no AVX2'})"


def describe() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
