"""The local run store, as the CLI sees it: ``pfn_transformers.runs`` plus CLI errors.

What a run folder is (layout, status, checkpoints, metrics, eval.json) lives in the library
(``pfn_transformers.runs``, standard library only, so ``pfn list-runs`` stays fast); this
module re-exports it and turns a run that cannot be found into a ``CliError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pfn_cli.errors import CliError
from pfn_transformers.runs import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    EVAL_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    STATUS_FILE,
    STATUSES,
    RunInfo,
    RunNotFoundError,
    checkpoint_steps,
    find_run,
    is_run_dir,
    iter_run_dirs,
    last_metrics,
    load_run_info,
    now_iso,
    process_marker,
    read_json,
    update_status,
    write_json_atomic,
)


def resolve_run(spec: str | os.PathLike | None, root: Path, *, what: str = "run") -> Path:
    """A run directory from ``run=PATH`` or ``run=latest`` (newest run under ``root``);
    a CliError naming the value and what would be valid otherwise."""
    try:
        return find_run(spec, root, what=what)
    except RunNotFoundError as exc:
        raise CliError(str(exc)) from None


__all__ = [
    "CHECKPOINT_DIR",
    "ERROR_FILE",
    "EVAL_FILE",
    "HYDRA_DIR",
    "METRICS_FILE",
    "STATUSES",
    "STATUS_FILE",
    "RunInfo",
    "checkpoint_steps",
    "is_run_dir",
    "iter_run_dirs",
    "last_metrics",
    "load_run_info",
    "now_iso",
    "process_marker",
    "read_json",
    "resolve_run",
    "update_status",
    "write_json_atomic",
]
