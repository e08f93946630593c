"""Hydra callbacks of ``pfn train``: refuse unwritable outputs, summarise finished sweeps.

Registered in ``conf/train.yaml`` under ``hydra.callbacks``. Both run in the launching
process whatever the launcher (basic, joblib, submitit), before any job starts and after the
last one ended.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pfn_cli.errors import print_error


def _probe_writable(target: Path) -> str | None:
    """None when a file can be written where ``target`` (a run or sweep folder) will be."""
    from pfn_transformers.checkpointing import CheckpointWriteError, ensure_writable_dir

    folder = target if target.exists() else target.parent
    try:
        ensure_writable_dir(folder, "outputs")
    except CheckpointWriteError as exc:
        return f"{folder}: {(exc.__cause__ and exc.__cause__.strerror) or exc}"
    return None


def _dir_of(config: DictConfig, key: str) -> Path:
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)  # lets ${hydra:...} resolve; run_job sets it too
    return Path(str(OmegaConf.select(config, key)))


class CheckOutputsWritable(Callback):
    """Exit 2 with one clear paragraph, before training, when runs cannot be written."""

    def _check(self, config: DictConfig, key: str) -> None:
        problem = _probe_writable(_dir_of(config, key))
        if problem is None:
            return
        print_error(
            "pfn train",
            f"cannot write runs there ({problem}). Choose a writable folder with "
            "outputs_root=DIR (or the PFN_OUTPUTS environment variable); nothing was trained.",
        )
        sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")


class SweepSummary(Callback):
    """After a sweep: its jobs ranked by objective (lower is better), best folder first."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pfn_cli.list_runs import print_sweep

        print_sweep(_dir_of(config, "hydra.sweep.dir"))
