"""WandbLogger: the W&B run behind ``train(..., TrainingConfig(use_wandb=True))``.

One logger is one W&B run. ``train()`` creates it, calls :meth:`WandbLogger.log` every step,
:meth:`WandbLogger.log_checkpoint` after each saved checkpoint and always
:meth:`WandbLogger.finish` (also on errors). Modes: ``online`` (needs credentials and a
network; fails fast with a clear message otherwise), ``offline`` (a real local run under
``WANDB_DIR``/``dir``, uploaded later with ``wandb sync``) and ``disabled`` (no-op run).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pfn_transformers.wandb.client import has_wandb_credentials
from pfn_transformers.wandb.errors import WandbUnavailableError

VALID_MODES = ("online", "offline", "disabled")
DEFAULT_INIT_TIMEOUT = 30.0  # seconds wandb.init may wait for the server (online mode)


def resolve_mode(mode: str | None) -> str:
    """``mode``, else env WANDB_MODE, else ``"online"`` (``"dryrun"`` means offline)."""
    source = "TrainingConfig.wandb_mode"
    if mode is None:
        mode, source = os.environ.get("WANDB_MODE") or "online", "WANDB_MODE"
    mode = str(mode).strip().lower()
    if mode == "dryrun":
        mode = "offline"
    if mode not in VALID_MODES:
        raise ValueError(f"{source}={mode!r} is not valid; choose one of {list(VALID_MODES)}.")
    return mode


def _init_timeout() -> float:
    text = os.environ.get("WANDB_INIT_TIMEOUT")
    if not text:
        return DEFAULT_INIT_TIMEOUT
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"WANDB_INIT_TIMEOUT={text!r} is not valid; use a number of seconds."
        ) from None


def to_plain(value: Any) -> Any:
    """JSON-friendly copy: dataclasses/mappings to dicts, tensors/arrays to lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if _is_omegaconf(value):
        from omegaconf import OmegaConf

        return to_plain(OmegaConf.to_container(value, resolve=True))
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and callable(value.tolist):  # torch / numpy
        return to_plain(value.tolist())
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_plain(value.to_dict())
    return repr(value)


def _is_omegaconf(value: Any) -> bool:
    return type(value).__module__.startswith("omegaconf")


def config_to_dict(config: Any) -> dict[str, Any] | None:
    """A config (dataclass, mapping, DictConfig, object with ``to_dict``) as a plain dict."""
    if config is None:
        return None
    if hasattr(config, "to_dict") and callable(config.to_dict):
        return to_plain(config.to_dict())
    if dataclasses.is_dataclass(config) or isinstance(config, Mapping) or _is_omegaconf(config):
        return to_plain(config)
    if hasattr(config, "__dict__"):
        return {k: to_plain(v) for k, v in vars(config).items() if not k.startswith("_")}
    raise TypeError(
        f"data_config of type {type(config).__name__} is not valid; pass a dataclass, a dict or "
        "an object with to_dict()."
    )


def checkpoint_artifact_name(run_id: str, step: int) -> str:
    """Artifact name of the checkpoint at ``step``: ``checkpoint-{run_id}-step-{step}``."""
    return f"checkpoint-{run_id}-step-{int(step)}"


class WandbLogger:
    """A W&B run for one training job (see module docstring).

    Args:
        training_config: a TrainingConfig; reads ``wandb_project``, ``wandb_entity``,
            ``wandb_run_name``, ``wandb_tags``, ``wandb_notes``, ``wandb_mode``,
            ``wandb_log_model``. None project/entity fall back to WANDB_PROJECT/WANDB_ENTITY.
        model_config: the model config (``to_dict()``).
        data_config: optional dataclass/dict describing the data; logged under ``"data"``.
        dir: where the local run directory goes (default: WANDB_DIR or the working directory).
        job_type: W&B job type.
    """

    def __init__(
        self,
        training_config: Any,
        model_config: Any,
        data_config: Any = None,
        *,
        dir: str | os.PathLike[str] | None = None,
        job_type: str | None = "train",
    ) -> None:
        try:
            import wandb
        except ImportError as e:  # pragma: no cover - wandb is a dependency
            raise WandbUnavailableError(
                "use_wandb=True needs the wandb package: pip install wandb "
                "(or set use_wandb=False)."
            ) from e
        self._wandb = wandb
        self._finished = False
        self.mode = resolve_mode(getattr(training_config, "wandb_mode", None))
        self.log_model = bool(getattr(training_config, "wandb_log_model", True))
        self.project = getattr(training_config, "wandb_project", None) or os.environ.get(
            "WANDB_PROJECT"
        )
        self.entity = getattr(training_config, "wandb_entity", None) or os.environ.get(
            "WANDB_ENTITY"
        )
        self.config: dict[str, Any] = {
            "model": config_to_dict(model_config),
            "training": config_to_dict(training_config),
            "data": config_to_dict(data_config),
        }
        if self.mode == "online" and not has_wandb_credentials():
            raise WandbUnavailableError(
                "W&B is in online mode (wandb_mode / WANDB_MODE) but no credentials are "
                "configured: set WANDB_API_KEY or run `wandb login`, or train with "
                "wandb_mode='offline' (upload later with `wandb sync`) or 'disabled'."
            )
        tags = getattr(training_config, "wandb_tags", None)
        init_kwargs: dict[str, Any] = {
            "project": self.project,
            "entity": self.entity,
            "name": getattr(training_config, "wandb_run_name", None),
            "notes": getattr(training_config, "wandb_notes", None),
            "tags": [str(t) for t in tags] if tags else None,
            "config": self.config,
            "job_type": job_type,
            "settings": self._settings(),
        }
        # wandb reads the environment once per process; pass what matters explicitly so that
        # later jobs in the same process (Hydra multirun, tests) see current values.
        dir = dir if dir is not None else os.environ.get("WANDB_DIR") or None
        if dir is not None and self.enabled:
            Path(dir).mkdir(parents=True, exist_ok=True)
            init_kwargs["dir"] = str(dir)
        try:
            self.run = wandb.init(**init_kwargs)
        except Exception as e:
            hint = (
                "Check the network, WANDB_BASE_URL and your credentials, or train with "
                "wandb_mode='offline' (upload later with `wandb sync`) or 'disabled'."
                if self.mode == "online"
                else "Check that the W&B directory (WANDB_DIR) is writable."
            )
            raise WandbUnavailableError(
                f"Could not start a W&B run in {self.mode} mode (project={self.project!r}, "
                f"entity={self.entity!r}): {type(e).__name__}: {e}. {hint}"
            ) from e

    def _settings(self) -> Any:
        wandb = self._wandb
        # wandb reads the environment once per process: pass the current values explicitly.
        kwargs: dict[str, Any] = {"mode": self.mode, "init_timeout": _init_timeout()}
        if os.environ.get("WANDB_BASE_URL"):
            kwargs["base_url"] = os.environ["WANDB_BASE_URL"]
        # Finish any run left open (e.g. by the previous job of a Hydra multirun).
        for reinit in ("finish_previous", True):
            try:
                return wandb.Settings(reinit=reinit, **kwargs)
            except Exception:  # older wandb: reinit is a bool
                continue
        return wandb.Settings(**kwargs)  # pragma: no cover

    # ------------------------------------------------------------------ properties
    @property
    def enabled(self) -> bool:
        """False in disabled mode (nothing is recorded)."""
        return self.mode != "disabled"

    @property
    def run_id(self) -> str | None:
        return getattr(self.run, "id", None)

    @property
    def run_name(self) -> str | None:
        return getattr(self.run, "name", None)

    @property
    def run_url(self) -> str | None:
        """The run's web page (None offline/disabled: the run is not on a server yet)."""
        if self.mode != "online":
            return None
        try:
            return self.run.url
        except Exception:  # pragma: no cover
            return None

    @property
    def run_dir(self) -> Path | None:
        """The local run directory (what ``wandb sync`` takes); None when disabled."""
        if not self.enabled:
            return None
        settings = getattr(self.run, "settings", None)
        sync_dir = getattr(settings, "sync_dir", None)
        if sync_dir:
            return Path(sync_dir)
        run_files = getattr(self.run, "dir", None)
        return Path(run_files).parent if run_files else None

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------------ logging
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log scalar metrics at ``step`` (tensors are converted with ``.item()``)."""
        if self._finished:
            warnings.warn("WandbLogger.log called after finish(); ignored.", stacklevel=2)
            return
        clean: dict[str, Any] = {}
        for key, value in metrics.items():
            if value is None:
                continue
            if hasattr(value, "item") and callable(value.item):
                value = value.item()
            clean[str(key)] = value
        if clean:
            self.run.log(clean, step=int(step))

    def log_checkpoint(
        self,
        path: str | os.PathLike[str],
        step: int,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Log the checkpoint file at ``path`` as a ``model`` artifact.

        Name ``checkpoint-{run_id}-step-{step}``, aliases ``latest`` and ``step-{step}``,
        metadata ``step``, ``model_config``, ``training_config``, ``data_config`` (plus
        ``metadata``). Returns the artifact name, or None when ``wandb_log_model`` is False.
        """
        if not self.log_model or self._finished:
            return None
        step = int(step)
        name = checkpoint_artifact_name(self.run_id or "run", step)
        if not self.enabled:
            return name
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"WandbLogger.log_checkpoint: checkpoint file {str(path)!r} does not exist."
            )
        meta: dict[str, Any] = {
            "step": step,
            "model_config": self.config["model"],
            "training_config": self.config["training"],
            "data_config": self.config["data"],
            "file": path.name,
        }
        if metadata:
            meta.update(to_plain(dict(metadata)))
        artifact = self._wandb.Artifact(name, type="model", metadata=meta)
        artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact, aliases=["latest", f"step-{step}"])
        return name

    # ------------------------------------------------------------------ finishing
    def finish(self, exit_code: int = 0) -> None:
        """Finish the run (idempotent; never raises, so it is safe in ``finally``)."""
        if self._finished:
            return
        self._finished = True
        run_dir = self.run_dir
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # do not mask the training error in a finally block
            warnings.warn(f"W&B run did not finish cleanly: {type(e).__name__}: {e}", stacklevel=2)
        if self.mode == "offline" and run_dir is not None:
            print(
                f"W&B offline run saved in {run_dir}; upload it with: wandb sync {run_dir}",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> WandbLogger:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def __repr__(self) -> str:
        return (
            f"WandbLogger(mode={self.mode!r}, project={self.project!r}, run_id={self.run_id!r}, "
            f"finished={self._finished})"
        )


__all__ = [
    "DEFAULT_INIT_TIMEOUT",
    "WandbLogger",
    "checkpoint_artifact_name",
    "config_to_dict",
    "resolve_mode",
    "to_plain",
]
