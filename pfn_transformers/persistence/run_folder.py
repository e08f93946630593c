"""Run folders: what one training run leaves on disk, read without loading a model.

A run folder (one ``pfn train`` job, or any folder laid out the same way) holds::

    .hydra/config.yaml     the composed config (Hydra): model, prior, training, eval
    resolved_config.yaml   the values train() received (borders, sizes, ...)
    status.json            {"status": running|finished|failed|interrupted, "step", ...}
    metrics.jsonl          one JSON line per log step (and per evaluation)
    checkpoints/           step-{N}.pt (plain data, loaded with weights_only=True)
    eval.json              the latest evaluation against the prior (exact posterior)
    error.txt              the traceback of a failed run

:class:`RunFolder` reads one lazily; ``pfn_transformers.runs.Run`` adds ``model()``. The
module imports only the standard library (OmegaConf and psutil load inside the functions
that need them), so ``pfn list-runs`` answers quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunNotFoundError
from .files import find_step_file, list_step_files, read_json, write_json_atomic, write_text_atomic
from .sources import CHECKPOINT_DIR, EVAL_FILE, HYDRA_DIR, STATUS_FILE, is_run_dir

METRICS_FILE = "metrics.jsonl"
RESOLVED_FILE = "resolved_config.yaml"
ERROR_FILE = "error.txt"
# killed: status.json says running but the process is gone (kill -9, a crash, a lost node,
# or its process id now belongs to another process); damaged: status.json cannot be read
STATUSES = ("running", "finished", "failed", "interrupted", "killed", "damaged", "unknown")

# folders inside a run (or the store) that never hold runs
_SKIP_DIRS = {CHECKPOINT_DIR, "figures", "samples", "wandb", HYDRA_DIR, "__pycache__"}
# a process whose start time differs from the recorded one by more than this is another one
_START_TIME_TOLERANCE_S = 1.0


# ---------------------------------------------------------------------------- writing
def update_status(run_dir: str | os.PathLike, /, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run_dir/status.json`` (atomically) and return the result."""
    path = Path(run_dir) / STATUS_FILE
    data = read_json(path) or {}
    data.update(fields)
    data["updated"] = now_iso()
    write_json_atomic(path, data)
    return data


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------------------- processes
def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when unknown."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # no such process, no permission, psutil missing
        return None


def process_marker() -> dict[str, Any]:
    """Who is running this job: lets list-runs tell a live run from one that died, even when
    its process id was given to another process since (the start times differ)."""
    marker: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    started = process_start_time(os.getpid())
    if started is not None:
        marker["pid_started"] = started
    return marker


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether the process that wrote a marker still runs on this host: ``pid`` exists and,
    when ``started`` was recorded, it is the same process (same start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        pass  # exists, owned by someone else
    if started is None:
        return True
    now = process_start_time(pid)
    return now is None or abs(now - float(started)) <= _START_TIME_TOLERANCE_S


# ---------------------------------------------------------------------------- provenance
def source_commit() -> str | None:
    """The git commit of this pfn-transformers checkout (``-dirty`` with local changes), or
    None when the package is not a git checkout (an installed wheel)."""
    import subprocess  # here, not at the top: list-runs never needs it

    here = Path(__file__).resolve().parents[1]  # the pfn_transformers package

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10
        )

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() / here.name != here:
            return None
        commit = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if commit and dirty else (commit or None)


def environment() -> dict[str, Any]:
    """The library version and source commit that trained a run (for its model card)."""
    from .. import __version__

    return {"library_version": __version__, "commit": source_commit()}


# ---------------------------------------------------------------------------- reading
def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """Sorted steps of the ``step-{N}.pt`` files in ``run_dir/checkpoints``."""
    return [step for step, _ in list_step_files(Path(run_dir) / CHECKPOINT_DIR)]


def last_metrics(
    run_dir: str | os.PathLike,
    key: str = "loss",
    tail_bytes: int = 16384,
    torn: list[str] | None = None,
) -> dict | None:
    """The last line of metrics.jsonl that has ``key`` (reads only the file's tail).

    Unreadable lines are skipped; when ``torn`` is given, the file's name is appended to it
    if any line of the tail could not be read."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            chunk = fh.read()
    except OSError:
        return None
    lines = chunk.decode("utf-8", errors="replace").splitlines()
    if size > tail_bytes and lines:
        lines = lines[1:]  # the first line may be cut
    found = None
    for line in reversed(lines):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if torn is None:
                continue
            if METRICS_FILE not in torn:
                torn.append(METRICS_FILE)
            if found is not None:
                break
            continue
        if found is None and isinstance(rec, dict) and key in rec:
            found = rec
            if torn is None:
                break
    return found


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every readable line of metrics.jsonl (torn or garbled lines are skipped)."""
    out = []
    try:
        data = (Path(run_dir) / METRICS_FILE).read_bytes()
    except OSError:
        return out
    for line in data.split(b"\n"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def iter_run_dirs(root: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Every run directory under ``root`` (runs and sweep jobs), not descending into runs."""
    found: list[Path] = []

    def walk(directory: str, depth: int) -> None:
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                continue
            if os.path.isfile(os.path.join(entry.path, STATUS_FILE)) or os.path.isfile(
                os.path.join(entry.path, HYDRA_DIR, "config.yaml")
            ):
                found.append(Path(entry.path))
            elif depth < max_depth:
                walk(entry.path, depth + 1)

    walk(str(root), 1)
    return found


@dataclass
class RunInfo:
    """One row of ``pfn list-runs``: a run summarised from its small files."""

    name: str
    path: str
    status: str = "unknown"
    model: str | None = None
    prior: str | None = None
    step: int | None = None
    num_steps: int | None = None
    last_loss: float | None = None
    excess_nll: float | None = None
    excess_nll_stderr: float | None = None
    nll: float | None = None
    started: str | None = None
    sweep: str | None = None
    error: str | None = None
    objective: float | None = None
    overrides: list[str] = field(default_factory=list)  # the command line's key=value ones
    damaged: list[str] = field(default_factory=list)  # files that could not be read whole
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choices_from_hydra_yaml(run_dir: Path) -> dict[str, str]:
    """Fallback for runs without status.json: the group choices Hydra recorded."""
    path = run_dir / HYDRA_DIR / "hydra.yaml"
    choices: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return choices
    # A tiny scan instead of a YAML parse: "    choices:\n      model: regression\n ..."
    m = re.search(r"^(\s*)choices:\s*\n((?:\1\s+\S.*\n?)*)", text, re.M)
    if m:
        for line in m.group(2).splitlines():
            k, _, v = line.strip().partition(":")
            choices[k.strip()] = v.strip()
    return choices


def _num_steps_from_config(run_dir: Path) -> int | None:
    try:
        text = (run_dir / HYDRA_DIR / "config.yaml").read_text()
    except OSError:
        return None
    m = re.search(r"^training:\n(?:[ \t]+.*\n)*?[ \t]+num_steps: (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def load_run_info(run_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> RunInfo:
    """Summarise one run directory from its small files (never loads a checkpoint)."""
    run_dir = Path(run_dir)
    status_path = run_dir / STATUS_FILE
    st = read_json(status_path)
    info = RunInfo(name=run_dir.name, path=str(run_dir))
    if st is None:
        st = {}
        if status_path.exists():
            info.damaged.append(STATUS_FILE)
    if root is not None:
        with contextlib.suppress(ValueError):
            rel = run_dir.relative_to(root)
            if len(rel.parts) > 1:
                info.sweep = str(Path(*rel.parts[:-1]))
    info.status = "damaged" if info.damaged else st.get("status", "unknown")
    objective = st.get("objective")
    info.objective = float(objective) if isinstance(objective, int | float) else None
    overrides = st.get("overrides")
    info.overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    info.model = st.get("model")
    info.prior = st.get("prior")
    info.num_steps = st.get("num_steps")
    info.step = st.get("step")
    info.started = st.get("started")
    info.error = st.get("error")
    if info.model is None or info.prior is None:
        choices = _choices_from_hydra_yaml(run_dir)
        info.model = info.model or choices.get("model")
        info.prior = info.prior or choices.get("prior")
    if info.num_steps is None:
        info.num_steps = _num_steps_from_config(run_dir)
    if info.started is None:
        with contextlib.suppress(OSError):
            info.started = time.strftime(
                "%Y-%m-%dT%H:%M:%S%z",
                time.localtime((run_dir / HYDRA_DIR / "config.yaml").stat().st_mtime),
            )
    last = last_metrics(run_dir, torn=info.damaged)
    if last is not None:
        loss = last.get("loss")
        info.last_loss = float(loss) if isinstance(loss, int | float) else None
        if info.status == "running" and isinstance(last.get("step"), int):
            info.step = max(info.step or 0, last["step"])
    if info.step is None:
        steps = checkpoint_steps(run_dir)
        info.step = steps[-1] if steps else (last or {}).get("step")
    if info.status == "running" and st.get("host") == socket.gethostname():
        pid, started = st.get("pid"), st.get("pid_started")
        started = float(started) if isinstance(started, int | float) else None
        if isinstance(pid, int) and not process_alive(pid, started):
            info.status = "killed"  # died without saying so (kill -9, a crash), pid reused
    ev = read_json(run_dir / EVAL_FILE)
    if ev:
        ex = ev.get("excess_nll")
        if isinstance(ex, dict):
            info.excess_nll = ex.get("mean")
            info.excess_nll_stderr = ex.get("stderr")
        elif isinstance(ex, int | float):
            info.excess_nll = float(ex)
        nll = ev.get("nll")
        info.nll = nll.get("mean") if isinstance(nll, dict) else nll
    return info


# ---------------------------------------------------------------------------- lookup
def _started_key(run_dir: Path) -> float:
    st = read_json(run_dir / STATUS_FILE) or {}
    ts = st.get("started_ts")
    if isinstance(ts, int | float):
        return float(ts)
    for p in (run_dir / HYDRA_DIR / "config.yaml", run_dir):
        with contextlib.suppress(OSError):
            return p.stat().st_mtime
    return 0.0


def find_run(
    spec: str | os.PathLike | None, root: str | os.PathLike = "outputs", *, what: str = "run"
) -> Path:
    """A run directory from a path (absolute, or relative to the working directory or to
    ``root``) or ``latest`` / None (the newest run under ``root``).

    Raises RunNotFoundError naming ``what=spec`` and what would be valid.
    """
    root = Path(root)
    if spec is None or str(spec).strip() in ("", "latest"):
        runs = iter_run_dirs(root) if root.is_dir() else []
        if not runs:
            raise RunNotFoundError(
                f"{what}=latest: there are no runs under {root}/ (a run is a folder with "
                f"{STATUS_FILE} or {HYDRA_DIR}/config.yaml, made by `pfn train`). Train one "
                f"with `pfn train`, pass {what}=PATH to a run directory, or point "
                f"outputs_root/$PFN_OUTPUTS at the folder holding your runs."
            )
        return max(runs, key=_started_key)
    path = Path(spec).expanduser()
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        path = root / path
    if not path.exists():
        raise RunNotFoundError(
            f"{what}={spec}: the run directory does not exist. Pass the folder of a run made "
            f"by `pfn train` (see `pfn list-runs --dir {root}`) or {what}=latest."
        )
    if not path.is_dir() or not is_run_dir(path):
        raise RunNotFoundError(
            f"{what}={spec}: {path} is not a pfn run directory (it has neither {STATUS_FILE} "
            f"nor {HYDRA_DIR}/config.yaml). Pass the folder of a run made by `pfn train` "
            f"(see `pfn list-runs`), or {what}=latest."
        )
    return path


class RunFolder:
    """One run folder, read lazily: nothing is loaded until asked for.

    ``run.status``, ``run.info`` (the list-runs row), ``run.checkpoint_steps``,
    ``run.metrics()``, ``run.evaluation`` (eval.json), ``run.config`` (the composed Hydra
    config as a dict), ``run.prior_config``, ``run.training_config``, ``run.parent`` (the
    run or folder it was fine-tuned from) and ``run.prior()``; ``pfn_transformers.runs.Run``
    adds ``run.model(step=None)``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> dict[str, Any]:
        return read_json(self.path / STATUS_FILE) or {}

    @property
    def info(self) -> RunInfo:
        return load_run_info(self.path)

    @property
    def checkpoint_steps(self) -> list[int]:
        return checkpoint_steps(self.path)

    def checkpoint(self, step: int | None = None) -> Path:
        """The checkpoint file of ``step`` (None: the newest); CheckpointNotFoundError
        names the steps there are."""
        return find_step_file(self.path / CHECKPOINT_DIR, step)

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """The run's eval.json (its latest evaluation on its own prior), if any."""
        return read_json(self.path / EVAL_FILE)

    @property
    def config(self) -> dict[str, Any] | None:
        """``.hydra/config.yaml`` as plain data (interpolations left as written)."""
        return _load_yaml(self.path / HYDRA_DIR / "config.yaml")

    @property
    def resolved_config(self) -> dict[str, Any] | None:
        """``resolved_config.yaml``: the model, prior and training values train() got."""
        return _load_yaml(self.path / RESOLVED_FILE)

    @property
    def prior_config(self) -> dict[str, Any] | None:
        """The prior's config (``_target_`` and arguments): rebuilds it with ``prior()``."""
        for source in (self.resolved_config, self.config):
            node = (source or {}).get("prior")
            if isinstance(node, dict) and "_target_" in node:
                return node
        return None

    @property
    def training_config(self) -> dict[str, Any] | None:
        node = (self.resolved_config or {}).get("training") or (self.config or {}).get("training")
        return node if isinstance(node, dict) else None

    @property
    def parent(self) -> dict[str, Any] | None:
        """What this run was fine-tuned from (``init_from``), or None for a fresh start."""
        parent = self.status.get("parent")
        return parent if isinstance(parent, dict) else None

    def prior(self) -> Any:
        """The run's own prior, rebuilt from its config (PriorConfigError if it cannot be:
        a missing module, a data file that moved)."""
        from ..data.building import PriorConfigError, build_prior

        node = self.prior_config
        if node is None:
            raise PriorConfigError(
                f"run {self.path}: no prior config was saved ({HYDRA_DIR}/config.yaml or "
                f"{RESOLVED_FILE}); pass the prior yourself."
            )
        return build_prior(node, f"the prior of run {self.name}")


def _load_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return data if isinstance(data, dict) else None


__all__ = [
    "CHECKPOINT_DIR",
    "EVAL_FILE",
    "HYDRA_DIR",
    "METRICS_FILE",
    "RESOLVED_FILE",
    "STATUSES",
    "STATUS_FILE",
    "RunFolder",
    "RunInfo",
    "RunNotFoundError",
    "checkpoint_steps",
    "environment",
    "find_run",
    "is_run_dir",
    "iter_run_dirs",
    "last_metrics",
    "load_run_info",
    "now_iso",
    "process_alive",
    "process_marker",
    "read_json",
    "read_metrics",
    "update_status",
    "write_json_atomic",
    "write_text_atomic",
]
