"""The one seam to the W&B public API, plus run-identifier parsing.

Every loading/listing function takes ``api=None`` and calls :func:`get_api`, which returns
the given object unchanged (tests pass a fake) or a real ``wandb.Api``. Nothing here imports
wandb at module import time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from pfn_transformers.persistence.sources import is_wandb_reference
from pfn_transformers.wandb.errors import (
    AmbiguousRunError,
    RunNotFoundError,
    WandbUnavailableError,
)

DEFAULT_API_TIMEOUT = 30  # seconds per HTTP request of the public API

_URL_RE = re.compile(
    r"https?://[^/]+/(?P<entity>[^/]+)/(?P<project>[^/]+)/runs/(?P<run_id>[^/?#]+)"
)
_PART_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def has_wandb_credentials() -> bool:
    """Whether W&B credentials are configured, checked locally (no network, no prompt)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib.wbauth import authenticate, wbnetrc

        settings = wandb_setup.singleton().settings
        host = os.environ.get("WANDB_BASE_URL") or settings.base_url
        if authenticate.session_credentials(host=host) is not None:
            return True
        if getattr(settings, "api_key", None):
            return True
        return bool(wbnetrc.read_netrc_auth(host=host))
    except (ImportError, AttributeError, TypeError):  # older wandb: its own lookup
        pass
    try:
        import wandb

        return bool(wandb.api.api_key)
    except Exception:
        return False


def get_api(api: Any = None, *, timeout: int | None = None) -> Any:
    """``api`` itself when given, else a ``wandb.Api`` (fails fast without credentials)."""
    if api is not None:
        return api
    try:
        import wandb
    except ImportError as e:  # pragma: no cover - wandb is a dependency
        raise WandbUnavailableError(
            "Reading runs from W&B needs the wandb package: pip install wandb."
        ) from e
    if not has_wandb_credentials():
        raise WandbUnavailableError(
            "Reading runs from W&B needs credentials and none are configured: set "
            "WANDB_API_KEY or run `wandb login` (runs trained offline must first be uploaded "
            "with `wandb sync <run dir>`)."
        )
    try:
        return wandb.Api(timeout=timeout or DEFAULT_API_TIMEOUT)
    except Exception as e:
        raise WandbUnavailableError(
            f"Could not open the W&B public API ({type(e).__name__}: {e}). Check the network, "
            "WANDB_BASE_URL and your credentials."
        ) from e


def resolve_project(project: str | None, *, what: str = "this W&B lookup") -> str:
    """``project``, else env WANDB_PROJECT, else a ValueError saying how to set one."""
    project = project or os.environ.get("WANDB_PROJECT")
    if not project:
        raise ValueError(
            f"project=None is not valid for {what}: pass project='my-project' or set the "
            "WANDB_PROJECT environment variable."
        )
    return project


def resolve_entity(entity: str | None) -> str | None:
    """``entity``, else env WANDB_ENTITY, else None (W&B then uses your default entity)."""
    return entity or os.environ.get("WANDB_ENTITY") or None


def project_path(project: str | None, entity: str | None, *, what: str) -> str:
    """``"entity/project"`` (or ``"project"`` when no entity is known)."""
    project = resolve_project(project, what=what)
    entity = resolve_entity(entity)
    return f"{entity}/{project}" if entity else project


@dataclass(frozen=True)
class WandbRunRef:
    """A W&B run: ``entity`` (None: your default entity), ``project``, ``run_id``.

    ``step`` is an optional checkpoint step given as ``...@500`` (None: not given).
    """

    entity: str | None
    project: str
    run_id: str
    step: int | None = None

    @property
    def path(self) -> str:
        """Path for ``wandb.Api().run``: ``entity/project/run_id`` or ``project/run_id``."""
        parts = [self.entity] if self.entity else []
        return "/".join([*parts, self.project, self.run_id])

    @property
    def project_path(self) -> str:
        return f"{self.entity}/{self.project}" if self.entity else self.project

    def __str__(self) -> str:
        suffix = f"@{self.step}" if self.step is not None else ""
        return f"wandb:{self.path}{suffix}"


def is_wandb_run_spec(spec: Any) -> bool:
    """True for ``wandb:...`` specs and W&B run URLs (what the CLI's ``run=`` accepts)."""
    return is_wandb_reference(spec)


def parse_run_identifier(
    identifier: str, project: str | None = None, entity: str | None = None
) -> WandbRunRef:
    """Parse a run identifier into a :class:`WandbRunRef`.

    Accepted: ``"abc123"``, ``"project/abc123"``, ``"entity/project/abc123"``,
    ``"entity/project/runs/abc123"``, the same prefixed with ``wandb:``, or a run URL
    (``https://wandb.ai/entity/project/runs/abc123``); an optional ``@<step>`` suffix names a
    checkpoint step. Parts missing from the identifier come from ``project``/``entity``, then
    WANDB_PROJECT/WANDB_ENTITY; a project is required. Conflicting parts raise ValueError.
    """
    if not isinstance(identifier, str) or not identifier.strip():
        raise ValueError(
            f"run_identifier={identifier!r} is not valid; pass a W&B run id such as 'abc123', "
            "'entity/project/abc123' or 'wandb:entity/project/abc123'."
        )
    text = identifier.strip()
    step: int | None = None
    m = _URL_RE.match(text)
    if m:
        id_entity, id_project, run_id = m.group("entity"), m.group("project"), m.group("run_id")
    else:
        if text.startswith("wandb:"):
            text = text[len("wandb:") :].lstrip("/")
        if "@" in text:
            text, _, step_text = text.rpartition("@")
            if not step_text.isdigit():
                raise ValueError(
                    f"run_identifier={identifier!r} is not valid: the part after '@' must be a "
                    "checkpoint step (an integer), e.g. 'wandb:entity/project/abc123@500'."
                )
            step = int(step_text)
        parts = [p for p in text.split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        if not 1 <= len(parts) <= 3 or not all(_PART_RE.fullmatch(p) for p in parts):
            raise ValueError(
                f"run_identifier={identifier!r} is not valid; use 'run_id', 'project/run_id', "
                "'entity/project/run_id' (optionally prefixed 'wandb:') or a run URL."
            )
        run_id = parts[-1]
        id_project = parts[-2] if len(parts) >= 2 else None
        id_entity = parts[-3] if len(parts) == 3 else None
    for name, given, found in (("project", project, id_project), ("entity", entity, id_entity)):
        if given and found and given != found:
            raise ValueError(
                f"run_identifier={identifier!r} names {name} {found!r} but {name}={given!r} was "
                "also passed; drop one of them."
            )
    resolved_project = resolve_project(id_project or project, what=f"run_identifier={identifier!r}")
    return WandbRunRef(
        entity=id_entity or resolve_entity(entity),
        project=resolved_project,
        run_id=run_id,
        step=step,
    )


def resolve_wandb_run(
    spec: str, project: str | None = None, entity: str | None = None
) -> WandbRunRef:
    """Parse the CLI's ``run=wandb:ENTITY/PROJECT/RUN_ID[@STEP]`` (or a run URL).

    The result feeds :func:`pfn_transformers.wandb.load_from_pretrained`
    (``load_from_pretrained(str(ref))`` or ``(ref.run_id, ref.step, ref.project, ref.entity)``).
    """
    if not is_wandb_run_spec(spec):
        raise ValueError(
            f"run={spec!r} is not a W&B run; write it as 'wandb:ENTITY/PROJECT/RUN_ID' "
            "(optionally '@STEP'), e.g. 'wandb:myteam/my-project/abc123@500'."
        )
    return parse_run_identifier(spec, project=project, entity=entity)


def fetch_run(api: Any, ref: WandbRunRef) -> Any:
    """``api.run(ref.path)``; falls back to a unique display-name match; clear errors."""
    try:
        run = api.run(ref.path)
        _ = run.id  # force loading where the client is lazy
        return run
    except Exception as first_error:
        try:
            candidates = list(api.runs(ref.project_path, filters={"display_name": ref.run_id}))
        except Exception:
            candidates = []
        candidates = [r for r in candidates if getattr(r, "name", None) == ref.run_id]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            listing = "\n".join(f"  - {r.id} ({r.name}) {r.url}" for r in candidates)
            raise AmbiguousRunError(
                f"{ref.run_id!r} is not a run id in {ref.project_path!r} and names "
                f"{len(candidates)} runs; pass one run id:\n{listing}"
            ) from first_error
        raise RunNotFoundError(
            f"No W&B run {ref.path!r} ({type(first_error).__name__}: {first_error}). Check the "
            "run id (the last part of the run URL), the project and the entity."
        ) from first_error


__all__ = [
    "DEFAULT_API_TIMEOUT",
    "WandbRunRef",
    "fetch_run",
    "get_api",
    "has_wandb_credentials",
    "is_wandb_run_spec",
    "parse_run_identifier",
    "project_path",
    "resolve_entity",
    "resolve_project",
    "resolve_wandb_run",
]
