"""Weights & Biases integration: run logging, structured run names, loading checkpoints.

``from pfn_transformers.wandb import RunNameScheme, create_run_name, load_by_config`` etc.
This package never shadows the ``wandb`` library: its modules import it absolutely and only
when needed (importing this package imports neither wandb nor torch).
"""

from __future__ import annotations

from pfn_transformers.wandb.client import (
    WandbRunRef,
    get_api,
    has_wandb_credentials,
    is_wandb_run_spec,
    parse_run_identifier,
    resolve_wandb_run,
)
from pfn_transformers.wandb.errors import (
    AmbiguousRunError,
    CheckpointNotFoundError,
    NoMatchingRunError,
    RunNotFoundError,
    WandbLookupError,
    WandbUnavailableError,
)
from pfn_transformers.wandb.loading import (
    CheckpointRecord,
    ModelRecord,
    find_runs_by_config,
    format_records_table,
    list_available_models,
    list_checkpoints,
    load_by_config,
    load_from_pretrained,
)
from pfn_transformers.wandb.logger import WandbLogger, checkpoint_artifact_name
from pfn_transformers.wandb.naming import (
    RunNameScheme,
    create_run_name,
    format_value,
    parse_run_name,
)

__all__ = [
    "AmbiguousRunError",
    "CheckpointNotFoundError",
    "CheckpointRecord",
    "ModelRecord",
    "NoMatchingRunError",
    "RunNameScheme",
    "RunNotFoundError",
    "WandbLogger",
    "WandbLookupError",
    "WandbRunRef",
    "WandbUnavailableError",
    "checkpoint_artifact_name",
    "create_run_name",
    "find_runs_by_config",
    "format_records_table",
    "format_value",
    "get_api",
    "has_wandb_credentials",
    "is_wandb_run_spec",
    "list_available_models",
    "list_checkpoints",
    "load_by_config",
    "load_from_pretrained",
    "parse_run_identifier",
    "parse_run_name",
    "resolve_wandb_run",
]
