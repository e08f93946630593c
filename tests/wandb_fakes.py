"""Test doubles for the W&B public API and a reader for offline W&B run files.

``FakeApi`` behaves like ``wandb.Api`` for what ``pfn_transformers.wandb`` uses:
``api.runs(path, filters=None)``, ``api.run(path)``, ``api.artifact(name)``; runs have
``id/name/url/config/tags/entity/project/logged_artifacts()``; artifacts have
``name ("collection:vN")/version/aliases/metadata/type/created_at/qualified_name/download()``.
``read_offline_run`` decodes the ``run-<id>.wandb`` file an offline run writes (LevelDB-style
log of ``wandb.proto`` Records), so tests can check what a real run recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


class FakeNotFound(ValueError):
    """Like wandb's 'Could not find run ...'."""


def md5_digest(path: str | Path) -> str:
    """A file's digest as W&B artifact manifests record it (base64 of the MD5)."""
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


class FakeDigestMismatch(ValueError):
    """Like wandb's refusal of a download whose bytes differ from the manifest."""


@dataclass
class FakeArtifact:
    collection: str  # e.g. "checkpoint-abc123-step-500"
    files: dict[str, Path] = field(default_factory=dict)  # name in artifact -> file on disk
    digests: dict[str, str] = field(default_factory=dict)  # name -> manifest digest, if known
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    type: str = "model"
    version: str = "v0"
    created_at: str = "2025-01-01T00:00:00Z"
    entity: str = "team"
    project: str = "proj"
    downloads: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.collection}:{self.version}"

    @property
    def qualified_name(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    def download(self, root: str | None = None, **_: Any) -> str:
        """Copy the artifact's files to ``root``, checking each against its manifest digest
        (as wandb does), so a file changed since it was logged cannot pass."""
        target = Path(root or Path("artifacts") / self.name.replace(":", "-"))
        target.mkdir(parents=True, exist_ok=True)
        for name, src in self.files.items():
            shutil.copyfile(src, target / name)
            wanted = self.digests.get(name)
            if wanted is not None and md5_digest(target / name) != wanted:
                raise FakeDigestMismatch(f"{self.name}/{name}: digest differs from the manifest")
        self.downloads.append(str(target))
        return str(target)


@dataclass
class FakeRun:
    id: str
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    artifacts: list[FakeArtifact] = field(default_factory=list)
    entity: str = "team"
    project: str = "proj"
    state: str = "finished"

    @property
    def url(self) -> str:
        return f"https://wandb.ai/{self.entity}/{self.project}/runs/{self.id}"

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    def logged_artifacts(self) -> list[FakeArtifact]:
        return list(self.artifacts)


class FakeApi:
    """In-memory ``wandb.Api``; ``default_entity`` resolves paths without an entity."""

    def __init__(self, runs: list[FakeRun] | None = None, default_entity: str = "team") -> None:
        self._runs = list(runs or [])
        self.default_entity = default_entity
        self.calls: list[tuple[str, Any]] = []

    def add(self, run: FakeRun) -> FakeRun:
        self._runs.append(run)
        return run

    def _split(self, path: str, n: int) -> list[str]:
        parts = [p for p in path.split("/") if p]
        if len(parts) == n - 1:
            parts = [self.default_entity, *parts]
        if len(parts) != n:
            raise ValueError(f"bad path {path!r}")
        return parts

    def runs(self, path: str | None = None, filters: dict | None = None, **_: Any) -> list[FakeRun]:
        self.calls.append(("runs", (path, filters)))
        entity, project = self._split(path or "", 2)
        out = [r for r in self._runs if r.entity == entity and r.project == project]
        for key, cond in (filters or {}).items():
            if key == "tags" and isinstance(cond, dict) and "$in" in cond:
                out = [r for r in out if set(r.tags) & set(cond["$in"])]
            elif key == "display_name":
                out = [r for r in out if r.name == cond]
            else:
                raise NotImplementedError(f"FakeApi.runs filter {key!r}")
        return out

    def run(self, path: str = "") -> FakeRun:
        self.calls.append(("run", path))
        entity, project, run_id = self._split(path, 3)
        for r in self._runs:
            if (r.entity, r.project, r.id) == (entity, project, run_id):
                return r
        raise FakeNotFound(f"Could not find run <Run {entity}/{project}/{run_id}>")

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:
        self.calls.append(("artifact", name))
        entity, project, art = self._split(name, 3)
        collection, _, version = art.partition(":")
        for r in self._runs:
            for a in r.artifacts:
                if (a.entity, a.project, a.collection) == (entity, project, collection) and (
                    not version or version == a.version or version in a.aliases
                ):
                    return a
        raise FakeNotFound(f"artifact {name!r} not found")


def checkpoint_artifact(
    run_id: str,
    step: int,
    path: Path,
    *,
    metadata: dict[str, Any] | None = None,
    created_at: str = "2025-01-01T00:00:00Z",
    version: str = "v0",
    entity: str = "team",
    project: str = "proj",
) -> FakeArtifact:
    """A checkpoint artifact as WandbLogger logs it."""
    meta = {"step": step, "file": path.name, **(metadata or {})}
    return FakeArtifact(
        collection=f"checkpoint-{run_id}-step-{step}",
        files={path.name: path},
        metadata=meta,
        aliases=["latest", f"step-{step}"],
        created_at=created_at,
        version=version,
        entity=entity,
        project=project,
    )


# --------------------------------------------------------------------------- offline runs
_BLOCK = 32768
_HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version


def read_records(path: str | Path) -> list[Any]:
    """All ``wandb.proto`` Records of a ``.wandb`` file (LevelDB log format, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (header {data[:7]!r})")
    pos, chunks, partial = _HEADER, [], b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # FULL
            chunks.append(chunk)
        elif kind == 2:  # FIRST
            partial = chunk
        elif kind == 3:  # MIDDLE
            partial += chunk
        elif kind == 4:  # LAST
            chunks.append(partial + chunk)
            partial = b""
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    run_id: str
    project: str
    entity: str
    name: str
    notes: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    exit_code: int | None
    run_dir: Path


def read_offline_run(run_dir: str | Path, timeout: float = 15.0) -> OfflineRun:
    """What an offline run directory recorded: config, history rows, artifacts, exit code.

    wandb's service may still be flushing the file right after ``run.finish()`` returns, so
    this waits (up to ``timeout`` seconds) until the file holds the run and exit records.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = _read_offline_run_once(Path(run_dir))
        if (run is not None and run.exit_code is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if run is None:
        raise ValueError(f"{run_dir} holds no run record")
    return run


def _read_offline_run_once(run_dir: Path) -> OfflineRun | None:
    files = list(run_dir.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb file in {run_dir}, found {files}")
    run_rec = None
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    exit_code = None
    for record in read_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_rec = record.run
            for item in record.run.config.update:
                config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            a = record.artifact
            artifacts.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata) if a.metadata else {},
                    "files": {e.path: e.local_path for e in a.manifest.contents},
                    "digests": {e.path: e.digest for e in a.manifest.contents},
                    "refs": {e.path: e.ref for e in a.manifest.contents if e.ref},
                }
            )
        elif kind == "exit":
            exit_code = record.exit.exit_code
    if run_rec is None:
        return None
    config.pop("_wandb", None)
    return OfflineRun(
        run_id=run_rec.run_id,
        project=run_rec.project,
        entity=run_rec.entity,
        name=run_rec.display_name,
        notes=run_rec.notes,
        tags=list(run_rec.tags),
        config=config,
        history=history,
        artifacts=artifacts,
        exit_code=exit_code,
        run_dir=run_dir,
    )


def offline_run_dirs(wandb_dir: str | Path) -> list[Path]:
    """Offline run directories under ``WANDB_DIR`` (oldest first)."""
    return sorted(Path(wandb_dir).glob("**/offline-run-*"))


def fake_run_from_offline(
    run: OfflineRun, *, entity: str = "team", project: str | None = None
) -> FakeRun:
    """What the run would look like on the server after ``wandb sync``.

    An artifact holds exactly the bytes W&B staged when it was logged (the manifest's
    ``local_path``, checked against its digest on download), never a file found elsewhere:
    a checkpoint the logger did not hand to W&B cannot be loaded back.
    """
    project = project or run.project or "proj"
    artifacts = []
    for i, a in enumerate(run.artifacts):
        files = {}
        for name, local in a["files"].items():
            if not local or not Path(local).is_file():
                raise FileNotFoundError(
                    f"artifact {a['name']!r}: W&B staged no copy of {name!r} "
                    f"(local_path={local!r}, ref={a['refs'].get(name)!r}), so a synced run "
                    "would not hold its bytes"
                )
            files[name] = Path(local)
        artifacts.append(
            FakeArtifact(
                collection=a["name"],
                files=files,
                digests=a["digests"],
                metadata=a["metadata"],
                aliases=a["aliases"],
                type=a["type"],
                created_at=f"2025-01-01T00:00:{i:02d}Z",
                entity=entity,
                project=project,
            )
        )
    return FakeRun(
        id=run.run_id,
        name=run.name or run.run_id,
        config=run.config,
        tags=run.tags,
        artifacts=artifacts,
        entity=entity,
        project=project,
    )


# --------------------------------------------------------------------------- isolation
_SCRUB = (
    "WANDB_API_KEY",
    "WANDB_IDENTITY_TOKEN_FILE",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_BASE_URL",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_INIT_TIMEOUT",
    "WANDB_NAME",
    "WANDB_NOTES",
    "WANDB_TAGS",
)


def isolate_wandb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Point every W&B location at tmp, drop credentials, default to offline; returns WANDB_DIR.

    wandb reads some settings once per process (data/cache/config dirs), so those live in one
    directory per test session; WANDB_DIR is per test.
    """
    shared = tmp_path_factory.getbasetemp() / "wandb-shared"
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_SILENT": "true",
        "WANDB_DATA_DIR": str(shared / "data"),
        "WANDB_CACHE_DIR": str(shared / "cache"),
        "WANDB_CONFIG_DIR": str(shared / "config"),
        "WANDB_ARTIFACT_DIR": str(shared / "artifacts"),
        "WANDB_DISABLE_CODE": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_X_DISABLE_STATS": "true",
        "WANDB_X_DISABLE_MACHINE_INFO": "true",
        "NETRC": str(shared / "no-netrc"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return wandb_dir
