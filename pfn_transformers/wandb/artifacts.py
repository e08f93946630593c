"""Checkpoint artifacts of W&B runs: find them, pick a step, download one file.

Checkpoints are ``model`` artifacts named ``checkpoint-{run_id}-step-{step}`` whose metadata
holds ``step`` and the configs (see :class:`~pfn_transformers.wandb.WandbLogger`). Steps are
read from the metadata (or the exact name suffix) and compared as integers, so step 500 never
matches step 5000. This module only downloads and returns a file: turning it into a model is
``pfn_transformers.persistence.loading``'s job. The W&B public API is reached only through
``get_api(api)``.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pfn_transformers.wandb.client import fetch_run, get_api, parse_run_identifier
from pfn_transformers.wandb.errors import CheckpointNotFoundError

_ARTIFACT_NAME_RE = re.compile(
    r"^(?:.*/)?checkpoint-(?P<run_id>.+)-step-(?P<step>\d+)(?::(?P<tag>[^:/]+))?$"
)
_VERSION_RE = re.compile(r"^v(\d+)$")


def artifact_step(artifact: Any) -> int | None:
    """Checkpoint step of an artifact: metadata ``step``, else the exact name suffix."""
    meta = getattr(artifact, "metadata", None) or {}
    step = meta.get("step") if isinstance(meta, Mapping) else None
    if isinstance(step, int) and not isinstance(step, bool):
        return step
    if isinstance(step, float) and step.is_integer():
        return int(step)
    if isinstance(step, str) and step.strip().isdigit():
        return int(step)
    m = _ARTIFACT_NAME_RE.match(str(getattr(artifact, "name", "")))
    return int(m.group("step")) if m else None


def _is_checkpoint(artifact: Any) -> bool:
    if getattr(artifact, "type", "model") != "model":
        return False
    meta = getattr(artifact, "metadata", None) or {}
    named = _ARTIFACT_NAME_RE.match(str(getattr(artifact, "name", ""))) is not None
    return named or (isinstance(meta, Mapping) and "step" in meta and "model_config" in meta)


def _version_number(artifact: Any) -> int:
    version = getattr(artifact, "version", None)
    if version is None:
        name = str(getattr(artifact, "name", ""))
        version = name.rpartition(":")[2] if ":" in name else None
    m = _VERSION_RE.match(str(version or ""))
    return int(m.group(1)) if m else -1


def run_checkpoints(run: Any) -> list[tuple[int, Any]]:
    """``(step, artifact)`` for the run's checkpoint artifacts, sorted by step.

    When a step was logged more than once, its newest artifact version wins.
    """
    by_step: dict[int, Any] = {}
    for artifact in run.logged_artifacts():
        if not _is_checkpoint(artifact):
            continue
        step = artifact_step(artifact)
        if step is None:
            continue
        if step not in by_step or _version_number(artifact) > _version_number(by_step[step]):
            by_step[step] = artifact
    return sorted(by_step.items(), key=lambda item: item[0])


def _describe_run(run: Any) -> str:
    name = getattr(run, "name", None)
    url = getattr(run, "url", None)
    text = str(run.id)
    if name and name != run.id:
        text += f" ({name})"
    return f"{text} {url}" if url else text


def _select_checkpoint(
    checkpoints: list[tuple[int, Any]],
    checkpoint_step: int | str | None,
    run: Any,
) -> tuple[int, Any]:
    if not checkpoints:
        raise CheckpointNotFoundError(
            f"W&B run {_describe_run(run)} has no checkpoint artifacts (type 'model', named "
            "'checkpoint-<run_id>-step-<step>'). Train with use_wandb=True, "
            "wandb_log_model=True and save_checkpoint=True to log them."
        )
    if checkpoint_step is None or checkpoint_step == "latest":
        return checkpoints[-1]
    if checkpoint_step == "earliest":
        return checkpoints[0]
    step = _as_step(checkpoint_step)
    for s, artifact in checkpoints:
        if s == step:
            return s, artifact
    raise CheckpointNotFoundError(
        f"W&B run {_describe_run(run)} has no checkpoint at step {step}; available steps: "
        f"{[s for s, _ in checkpoints]}."
    )


def _as_step(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"checkpoint_step={value!r} is not valid; {_STEP_HINT}")
    if isinstance(value, int):
        return value
    if hasattr(value, "__index__"):
        return int(value.__index__())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"checkpoint_step={value!r} is not valid; {_STEP_HINT}")


_STEP_HINT = "pass an int step, 'latest' or 'earliest' (None means latest)."


def _find_checkpoint_file(root: Path, artifact: Any) -> Path:
    meta = getattr(artifact, "metadata", None) or {}
    wanted = meta.get("file") if isinstance(meta, Mapping) else None
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if wanted:
        for p in files:
            if p.name == wanted:
                return p
    pts = [p for p in files if p.suffix == ".pt"]
    if len(pts) == 1:
        return pts[0]
    raise CheckpointNotFoundError(
        f"Artifact {getattr(artifact, 'name', '?')!r} holds "
        f"{'no' if not pts else len(pts)} .pt checkpoint files (files: "
        f"{[str(p.relative_to(root)) for p in files]}); expected exactly one."
    )


@contextlib.contextmanager
def download_checkpoint(
    artifact: Any, run: Any, download_dir: str | Path | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Download a checkpoint artifact; yields ``(file, wandb fields)`` where the fields are
    ``wandb_run_url``, ``wandb_run_id``, ``artifact_name`` and, when the file lives in a
    temporary folder (``download_dir=None``, deleted on exit), ``path`` naming the artifact."""
    artifact_name = str(getattr(artifact, "name", ""))
    qualified = getattr(artifact, "qualified_name", None) or artifact_name
    fields: dict[str, Any] = {
        "wandb_run_url": getattr(run, "url", None),
        "wandb_run_id": getattr(run, "id", None),
        "artifact_name": qualified,
    }

    def fetch(root: Path) -> Path:
        downloaded = Path(artifact.download(root=str(root)) or root)
        return _find_checkpoint_file(downloaded, artifact)

    if download_dir is not None:
        root = Path(download_dir) / artifact_name.replace(":", "-")
        root.mkdir(parents=True, exist_ok=True)
        yield fetch(root), fields
    else:
        with tempfile.TemporaryDirectory(prefix="pfn-wandb-") as tmp:
            # the downloaded file is gone after loading; point at the artifact instead
            yield fetch(Path(tmp)), {**fields, "path": f"wandb-artifact:{qualified}"}


@contextlib.contextmanager
def fetch_checkpoint(
    run_identifier: str,
    checkpoint_step: Any = None,
    project: str | None = None,
    entity: str | None = None,
    *,
    api: Any = None,
    download_dir: str | Path | None = None,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The checkpoint file of a W&B run (``wandb:entity/project/run_id[@step]``, a run id or
    URL) at ``checkpoint_step`` (None/"latest", "earliest" or a step), downloaded; see
    :func:`download_checkpoint` for what is yielded."""
    ref = parse_run_identifier(run_identifier, project=project, entity=entity)
    if ref.step is not None:
        if checkpoint_step not in (None, "latest") and _as_step(checkpoint_step) != ref.step:
            raise ValueError(
                f"run_identifier={run_identifier!r} names step {ref.step} but "
                f"checkpoint_step={checkpoint_step!r}; pass one of them."
            )
        checkpoint_step = ref.step
    api = get_api(api)
    run = fetch_run(api, ref)
    _, artifact = _select_checkpoint(run_checkpoints(run), checkpoint_step, run)
    with download_checkpoint(artifact, run, download_dir) as found:
        yield found


__all__ = [
    "artifact_step",
    "download_checkpoint",
    "fetch_checkpoint",
    "run_checkpoints",
]
