"""Find, list and load checkpoints that training logged to W&B as artifacts.

Picking and downloading an artifact is ``artifacts.py``'s job; the model is built from the
downloaded file by ``pfn_transformers.persistence.loading`` (the one load path). The W&B
public API is reached only through ``get_api(api)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pfn_transformers.wandb.artifacts import (
    _as_step,
    _describe_run,
    _select_checkpoint,
    artifact_step,
    download_checkpoint,
    fetch_checkpoint,
    run_checkpoints,
)
from pfn_transformers.wandb.client import fetch_run, get_api, parse_run_identifier, project_path
from pfn_transformers.wandb.errors import (
    AmbiguousRunError,
    CheckpointNotFoundError,
    NoMatchingRunError,
)
from pfn_transformers.wandb.naming import (
    SECTIONS,
    RunNameScheme,
    describe_scheme,
    format_value,
    parse_run_name,
    values_equal,
)

_MAX_LISTED = 20


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint artifact of a run."""

    step: int
    artifact_name: str  # as W&B reports it, e.g. "checkpoint-abc123-step-500:v0"
    aliases: list[str] = field(default_factory=list)
    created_at: str | None = None
    version: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A run with at least one checkpoint; ``checkpoint_step`` is its latest (highest) step."""

    run_id: str
    run_name: str | None
    run_url: str | None
    checkpoint_step: int
    artifact_name: str
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    num_checkpoints: int = 1
    created_at: str | None = None


def _with_wandb_fields(metadata: Any, **values: Any) -> Any:
    if dataclasses.is_dataclass(metadata) and not isinstance(metadata, type):
        names = {f.name for f in dataclasses.fields(metadata)}
        return dataclasses.replace(metadata, **{k: v for k, v in values.items() if k in names})
    for key, value in values.items():  # pragma: no cover - non-dataclass metadata
        with contextlib.suppress(AttributeError):
            setattr(metadata, key, value)
    return metadata


def _load_file(
    found: tuple[Path, dict[str, Any]], *, device: str, load_optimizer: bool
) -> tuple[Any, dict | None, Any]:
    from pfn_transformers.persistence.loading import load_checkpoint

    path, fields = found
    model, optimizer_state, metadata = load_checkpoint(
        path, device=device, load_optimizer=load_optimizer
    )
    return model, optimizer_state, _with_wandb_fields(metadata, **fields)


# --------------------------------------------------------------------------- public API
def load_from_pretrained(
    run_identifier: str,
    checkpoint_step: int | Literal["latest", "earliest"] | None = None,
    project: str | None = None,
    entity: str | None = None,
    device: str = "auto",
    load_optimizer: bool = False,
    *,
    api: Any = None,
    download_dir: str | Path | None = None,
) -> tuple[Any, dict | None, Any]:
    """Load a checkpoint that a W&B run logged.

    Args:
        run_identifier: run id (``"abc123"``), ``"entity/project/abc123"``,
            ``"wandb:entity/project/abc123"`` or a run URL (a unique run name also works).
        checkpoint_step: exact step, ``None``/``"latest"`` (highest step) or ``"earliest"``.
        project, entity: default to WANDB_PROJECT / WANDB_ENTITY (entity may stay unset: your
            default W&B entity).
        device, load_optimizer: as in ``checkpointing.load_checkpoint``.
        api: a ``wandb.Api``-like client (default: a real one).
        download_dir: keep the downloaded file here (default: a temporary directory, deleted
            after loading; ``metadata.path`` then names the artifact).

    Returns:
        ``(model, optimizer_state or None, metadata)`` with ``metadata.wandb_run_url``,
        ``wandb_run_id`` and ``artifact_name`` set.
    """
    with fetch_checkpoint(
        run_identifier, checkpoint_step, project, entity, api=api, download_dir=download_dir
    ) as found:
        return _load_file(found, device=device, load_optimizer=load_optimizer)


def list_checkpoints(
    run_identifier: str,
    project: str | None = None,
    entity: str | None = None,
    *,
    api: Any = None,
) -> list[CheckpointRecord]:
    """The run's checkpoints as :class:`CheckpointRecord`, sorted by step (may be empty)."""
    ref = parse_run_identifier(run_identifier, project=project, entity=entity)
    api = get_api(api)
    run = fetch_run(api, ref)
    return [_checkpoint_record(step, artifact, run) for step, artifact in run_checkpoints(run)]


def _checkpoint_record(step: int, artifact: Any, run: Any) -> CheckpointRecord:
    created = getattr(artifact, "created_at", None)
    return CheckpointRecord(
        step=step,
        artifact_name=str(getattr(artifact, "name", "")),
        aliases=[str(a) for a in (getattr(artifact, "aliases", None) or [])],
        created_at=None if created is None else str(created),
        version=getattr(artifact, "version", None),
        run_id=getattr(run, "id", None),
    )


def _run_config(run: Any) -> dict[str, Any]:
    config = getattr(run, "config", None) or {}
    if isinstance(config, str):  # some clients return JSON text
        import json

        try:
            config = json.loads(config)
        except ValueError:
            return {}
    out: dict[str, Any] = {}
    for key, value in dict(config).items():
        if key.startswith("_wandb"):
            continue
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]  # raw config format {"key": {"value": ...}}
        out[str(key)] = value
    return out


def list_available_models(
    project: str | None = None,
    entity: str | None = None,
    tags: Sequence[str] | None = None,
    *,
    api: Any = None,
) -> list[ModelRecord]:
    """Runs of the project that logged checkpoints, as :class:`ModelRecord`.

    ``tags``: keep runs that carry all of these tags.
    """
    path = project_path(project, entity, what="list_available_models")
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    api = get_api(api)
    filters = {"tags": {"$in": tags}} if tags else None
    records: list[ModelRecord] = []
    for run in api.runs(path, filters=filters):
        run_tags = [str(t) for t in (getattr(run, "tags", None) or [])]
        if not set(tags) <= set(run_tags):
            continue
        checkpoints = run_checkpoints(run)
        if not checkpoints:
            continue
        step, artifact = checkpoints[-1]
        created = getattr(artifact, "created_at", None)
        records.append(
            ModelRecord(
                run_id=run.id,
                run_name=getattr(run, "name", None),
                run_url=getattr(run, "url", None),
                checkpoint_step=step,
                artifact_name=str(getattr(artifact, "name", "")),
                config=_run_config(run),
                tags=run_tags,
                num_checkpoints=len(checkpoints),
                created_at=None if created is None else str(created),
            )
        )
    return records


# --------------------------------------------------------------------------- by config
def _split_filter_key(key: str, scheme: RunNameScheme) -> tuple[str, list[str]]:
    section, dot, name = key.partition(".")
    if dot and section in SECTIONS:
        return name, [section]
    sections = scheme.sections_of(key)
    return key, sections


def _lookup(config: dict[str, Any], parsed: dict[str, Any] | None, section: str, name: str):
    """(found, value) for ``section.name`` from run.config, else from the parsed run name."""
    block = config.get(section)
    if isinstance(block, Mapping) and name in block:
        return True, block[name]
    if parsed is not None and name in parsed.get(section, {}):
        return True, parsed[section][name]
    return False, None


def _run_matches(
    run: Any, scheme: RunNameScheme, filters: Mapping[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Whether all filters match; also the run's values for the filter keys (for messages)."""
    config = _run_config(run)
    try:
        parsed = parse_run_name(getattr(run, "name", None) or "", scheme)
    except ValueError:
        parsed = None
    seen: dict[str, Any] = {}
    ok = True
    for key, wanted in filters.items():
        name, sections = _split_filter_key(key, scheme)
        if sections:  # must match in every section the scheme names it in
            results = [_lookup(config, parsed, s, name) for s in sections]
            found_values = [v for found, v in results if found]
            seen[key] = found_values[0] if found_values else "<missing>"
            if not all(found for found, _ in results) or not all(
                values_equal(v, wanted) for v in found_values
            ):
                ok = False
        else:  # not in the scheme: any config section may hold it
            results = [_lookup(config, None, s, name) for s in SECTIONS]
            if name in config and not isinstance(config[name], Mapping):
                results.append((True, config[name]))  # flat config
            found_values = [v for found, v in results if found]
            seen[key] = found_values[0] if found_values else "<missing>"
            if not any(values_equal(v, wanted) for v in found_values):
                ok = False
    return ok, seen


def _format_candidates(items: Iterable[tuple[Any, dict[str, Any]]]) -> str:
    lines = []
    items = list(items)
    for run, values in items[:_MAX_LISTED]:
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in values.items())
        lines.append(f"  - {_describe_run(run)}: {shown}")
    if len(items) > _MAX_LISTED:
        lines.append(f"  ... and {len(items) - _MAX_LISTED} more")
    return "\n".join(lines)


def find_runs_by_config(
    scheme: RunNameScheme,
    project: str | None = None,
    entity: str | None = None,
    *,
    api: Any = None,
    **config_filters: Any,
) -> list[Any]:
    """All runs of the project whose config (or scheme-parsed run name) matches the filters."""
    if not config_filters:
        raise ValueError(
            "find_runs_by_config needs at least one config filter, e.g. n_layers=4; the "
            f"scheme's fields are {list(scheme.all_fields)}."
        )
    path = project_path(project, entity, what="load_by_config")
    api = get_api(api)
    return [run for run in api.runs(path) if _run_matches(run, scheme, config_filters)[0]]


def load_by_config(
    scheme: RunNameScheme,
    checkpoint_step: int | Literal["latest", "earliest"] = "latest",
    device: str = "auto",
    project: str | None = None,
    entity: str | None = None,
    *,
    api: Any = None,
    load_optimizer: bool = False,
    download_dir: str | Path | None = None,
    **config_filters: Any,
) -> tuple[Any, dict | None, Any]:
    """Load the checkpoint of the one run whose config matches ``config_filters``.

    Filters name fields of the scheme (``n_layers=4``, ``num_tasks=100``); a field the scheme
    lists under several sections must match in each; ``**{"data.input_dim": 10}`` picks a
    section; fields outside the scheme are looked up in the run's model/training/data config.
    Values come from the run's config (``run.config["model"]`` etc.), else from the run name
    parsed with ``scheme``; numbers compare by value (4 == 4.0). Only runs with checkpoints
    count. No match or several matches raise an error listing the candidates.
    """
    if not config_filters:
        raise ValueError(
            "load_by_config needs at least one config filter, e.g. n_layers=4; the scheme's "
            f"fields are {list(scheme.all_fields)}."
        )
    if checkpoint_step not in ("latest", "earliest", None):
        _as_step(checkpoint_step)  # validate before any network call
    path = project_path(project, entity, what="load_by_config")
    api = get_api(api)
    wanted = ", ".join(f"{k}={format_value(v)}" for k, v in config_filters.items())
    unknown = [k for k in config_filters if not _split_filter_key(k, scheme)[1] and "." not in k]
    note = (
        f" (note: {unknown} are not fields of the scheme {describe_scheme(scheme)!r})"
        if unknown
        else ""
    )

    runs = list(api.runs(path))
    evaluated = [(run, *_run_matches(run, scheme, config_filters)) for run in runs]
    matching = [(run, seen) for run, ok, seen in evaluated if ok]
    with_checkpoints = []
    without = []
    for run, seen in matching:
        checkpoints = run_checkpoints(run)
        (with_checkpoints if checkpoints else without).append((run, seen, checkpoints))

    if not with_checkpoints:
        if without:
            raise CheckpointNotFoundError(
                f"Runs in {path!r} match {wanted} but none has logged checkpoints:\n"
                + _format_candidates((r, s) for r, s, _ in without)
            )
        listing = (
            _format_candidates((run, seen) for run, _, seen in evaluated)
            if evaluated
            else "  (the project has no runs)"
        )
        raise NoMatchingRunError(
            f"No W&B run in {path!r} matches {wanted}{note}. Runs in the project:\n{listing}"
        )
    if len(with_checkpoints) > 1:
        raise AmbiguousRunError(
            f"{len(with_checkpoints)} W&B runs in {path!r} match {wanted}; add filters "
            "(fields of the scheme) or load one by id with load_from_pretrained(run_id):\n"
            + _format_candidates((r, s) for r, s, _ in with_checkpoints)
        )
    run, _, checkpoints = with_checkpoints[0]
    _, artifact = _select_checkpoint(checkpoints, checkpoint_step, run)
    with download_checkpoint(artifact, run, download_dir) as found:
        return _load_file(found, device=device, load_optimizer=load_optimizer)


# --------------------------------------------------------------------------- display
def format_records_table(
    records: Sequence[ModelRecord | CheckpointRecord], title: str | None = None
) -> Any:
    """A ``rich.table.Table`` of ModelRecords (runs) or CheckpointRecords (one run's steps)."""
    from rich.table import Table

    records = list(records)
    if records and all(isinstance(r, CheckpointRecord) for r in records):
        table = Table(title=title or "Checkpoints")
        for col in ("step", "artifact", "aliases", "created"):
            table.add_column(col, justify="right" if col == "step" else "left")
        for r in records:
            table.add_row(str(r.step), r.artifact_name, ", ".join(r.aliases), r.created_at or "")
        return table
    table = Table(title=title or "W&B models")
    for col in ("run name", "run id", "latest step", "checkpoints", "tags", "url"):
        table.add_column(col, justify="right" if col in ("latest step", "checkpoints") else "left")
    for r in records:
        if not isinstance(r, ModelRecord):
            raise TypeError(
                f"format_records_table got a {type(r).__name__}; pass ModelRecords or "
                "CheckpointRecords."
            )
        table.add_row(
            r.run_name or "",
            r.run_id,
            str(r.checkpoint_step),
            str(r.num_checkpoints),
            ", ".join(r.tags),
            r.run_url or "",
        )
    return table


__all__ = [
    "CheckpointRecord",
    "ModelRecord",
    "artifact_step",
    "find_runs_by_config",
    "format_records_table",
    "list_available_models",
    "list_checkpoints",
    "load_by_config",
    "load_from_pretrained",
    "run_checkpoints",
]
