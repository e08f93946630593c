"""Run folders: what one training run leaves on disk, and how to open it again.

``open_run("outputs/RUN")`` (or ``open_run("latest")``) gives a :class:`Run`: its status,
checkpoints, metrics, evaluation, the config that rebuilds its prior, ``run.model()`` and
``run.prior()``. :class:`RunLifecycle` writes a run folder's life (status transitions,
resolved config, error file, eval.json) for ``pfn train`` and notebooks alike. The layout
and the readers live in ``pfn_transformers.persistence``
(``run_folder``: the folder, ``files``: atomic writes); this module is their public face,
and imports only the standard library, so ``pfn list-runs`` answers quickly.
"""

from __future__ import annotations

import os
from typing import Any

from .persistence.errors import RunNotFoundError
from .persistence.files import read_json, write_json_atomic, write_text_atomic
from .persistence.lifecycle import RunLifecycle
from .persistence.run_folder import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    EVAL_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    RESOLVED_FILE,
    STATUS_FILE,
    STATUSES,
    RunFolder,
    RunInfo,
    checkpoint_steps,
    environment,
    find_run,
    is_run_dir,
    iter_run_dirs,
    last_metrics,
    load_run_info,
    now_iso,
    process_alive,
    process_marker,
    read_metrics,
    source_commit,
    update_status,
)


class Run(RunFolder):
    """One run folder, read lazily: nothing is loaded until asked for.

    ``run.status``, ``run.info`` (the list-runs row), ``run.checkpoint_steps``,
    ``run.metrics()``, ``run.evaluation`` (eval.json), ``run.config`` (the composed Hydra
    config as a dict), ``run.prior_config``, ``run.training_config``, ``run.parent`` (the
    run or folder it was fine-tuned from), ``run.model(step=None)`` and ``run.prior()``.
    """

    def model(self, step: int | None = None, device: str = "auto") -> Any:
        """The trained model of checkpoint ``step`` (None: the newest), with its provenance
        (prior, training budget, evaluation) attached for ``save_pretrained``."""
        from .persistence.loading import load_model

        return load_model(self.path, step=step, device=device)


def open_run(spec: str | os.PathLike = "latest", root: str | os.PathLike = "outputs") -> Run:
    """The run folder ``spec`` names (a path, or ``latest`` under ``root``), ready to read:
    ``run = open_run("outputs/RUN"); model = run.model(); prior = run.prior()``."""
    return Run(find_run(spec, root))


__all__ = [
    "CHECKPOINT_DIR",
    "ERROR_FILE",
    "EVAL_FILE",
    "HYDRA_DIR",
    "METRICS_FILE",
    "RESOLVED_FILE",
    "STATUSES",
    "STATUS_FILE",
    "Run",
    "RunInfo",
    "RunLifecycle",
    "RunNotFoundError",
    "checkpoint_steps",
    "environment",
    "find_run",
    "is_run_dir",
    "iter_run_dirs",
    "last_metrics",
    "load_run_info",
    "now_iso",
    "open_run",
    "process_alive",
    "process_marker",
    "read_json",
    "read_metrics",
    "source_commit",
    "update_status",
    "write_json_atomic",
    "write_text_atomic",
]
