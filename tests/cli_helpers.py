"""Shared helpers of the CLI tests: run ``pfn`` in a subprocess inside a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# A model and schedule that train in seconds on a CPU (plumbing, not quality).
TINY = [
    "training=tiny",
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "eval.num_datasets=32",
    "eval.batch_size=32",
]


def cli_env(**extra: str | None) -> dict[str, str]:
    """The test environment for a pfn subprocess; ``NAME=None`` removes a variable."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
    )
    for key in ("PFN_OUTPUTS", "HYDRA_FULL_ERROR"):
        env.pop(key, None)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pfn_command() -> list[str]:
    """The installed console script when present, else ``python -m pfn_cli``."""
    script = Path(sys.executable).parent / "pfn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pfn_cli"]


def run_pfn(
    args: list[str], cwd: Path, *, timeout: float = 300, check: bool = True, **env: str | None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*pfn_command(), *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"pfn {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
            f"--- stderr\n{proc.stderr}"
        )
    return proc


def run_dirs(outputs: Path) -> list[Path]:
    """Run directories (with status.json) under ``outputs``, sorted by path."""
    return sorted(p.parent for p in outputs.rglob("status.json"))


def read_status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture
def one_thread():
    """In-process torch work on tiny models: one intra-op thread avoids OpenMP busy-waiting,
    which costs several times the useful work on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
