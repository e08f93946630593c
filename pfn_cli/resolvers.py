"""OmegaConf resolvers of the pfn Hydra apps (registered by every app, and by
``register_resolvers()`` for the compose API).

``${pfn.prior:input_dim}``, ``${pfn.prior:num_classes}``, ``${pfn.y_range:min|max}`` and
``${pfn.riemann_borders:BUCKET_TYPE,N}``
    Kept for model configs written before the library fitted model configs to priors: they
    resolve to null, which ``pfn_transformers.data.fitting.fit_model_fields`` fills from the
    prior (as it does for the built-in model configs, which write null). No prior is built
    while Hydra composes a config. ``${pfn.prior:OTHER_ATTR}`` (any other attribute) still
    reads the instantiated prior.
``${pfn.run_dir:RESUME,ROOT,NAME}`` / ``${pfn.output_subdir:RESUME,ROOT,STAMP}`` / ``${pfn.slug:S}``
    / ``${pfn.stamp:}``
    Run-directory naming for the Hydra output settings in train.yaml (the stamp holds the
    start time and the process id: unique per process).

torch and pfn_transformers are imported only when a resolver that needs them runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pfn_cli.errors import CliError, describe_exception

_PRIOR_CACHE: dict[str, Any] = {}


# ---------------------------------------------------------------------------- priors
def prior_cache_key(node: DictConfig) -> str:
    return OmegaConf.to_yaml(node, resolve=True)


def instantiate_prior(node: DictConfig, choice: str | None = None) -> Any:
    """Build the generator a ``prior`` config node describes (cached), with clear errors
    (``pfn_transformers.data.building.build_prior`` does the building)."""
    if node is None:
        raise CliError("no prior is configured; choose one with prior=NAME (see --help).")
    label = f"prior={choice}" if choice else "prior"
    try:
        key = prior_cache_key(node)
    except Exception as exc:
        raise CliError(f"{label}: its config does not resolve: {describe_exception(exc)}") from None
    if key in _PRIOR_CACHE:
        return _PRIOR_CACHE[key]
    from pfn_transformers.data.building import PriorConfigError, build_prior

    try:
        prior = build_prior(node, label)
    except PriorConfigError as exc:
        raise CliError(f"{exc} (`pfn train --cfg job` shows the prior's fields).") from None
    _PRIOR_CACHE[key] = prior
    return prior


def describe_prior(prior: Any, prior_choice: str | None) -> Any:
    """The prior's ``TaskSpec``; a prior that draws malformed data is a CliError."""
    from pfn_transformers.data.base import PriorShapeError
    from pfn_transformers.data.protocol import describe_generator

    label = f"prior={prior_choice}" if prior_choice else "the prior"
    try:
        return describe_generator(prior)
    except (PriorShapeError, TypeError) as exc:
        raise CliError(f"{label}: {exc}") from None


def _root_prior(root: DictConfig) -> Any:
    node = root.get("prior") if isinstance(root, DictConfig) else None
    if node is None:
        raise CliError("this config has no `prior` node for ${pfn.prior:...} to read from.")
    return instantiate_prior(node)


# ---------------------------------------------------------------------------- resolvers
def _prior_attr(attr: str, *, _root_: DictConfig) -> Any:
    """null for the fields the library fits (input_dim, num_classes); any other attribute
    of the instantiated prior as it is."""
    attr = str(attr)
    if attr in ("input_dim", "num_classes"):
        return None  # fit_model_fields derives it from the prior
    value = getattr(_root_prior(_root_), attr, None)
    if hasattr(value, "tolist"):
        value = value.tolist()
    return value


def _y_range(which: str, *, _root_: DictConfig) -> None:
    if which not in ("min", "max"):
        raise CliError(f"${{pfn.y_range:{which}}}: use min or max.")
    return None  # fit_model_fields derives the y range from the prior


def _riemann_borders(bucket_type: Any, num_buckets: Any, *, _root_: DictConfig) -> None:
    return None  # fit_model_fields estimates Riemann borders from the prior


_STAMP: list[str] = []


def run_stamp() -> str:
    """This process's start stamp for run folder names: time to the microsecond and the
    process id, so two ``pfn train`` started in the same instant never share a folder."""
    if not _STAMP:
        import os
        from datetime import datetime

        _STAMP.append(f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}-p{os.getpid()}")
    return _STAMP[0]


def slug(value: Any) -> str:
    """A folder-name-safe version of ``value`` (choices may contain '/')."""
    return re.sub(r"[^\w.=+,-]+", "-", str(value)).strip("-") or "run"


def resume_target(resume: Any, root: Any) -> Path | None:
    """The run directory ``resume`` names, or None when unset or not a run directory."""
    if resume in (None, "", "null"):
        return None
    from pfn_cli.runs import resolve_run

    try:
        return resolve_run(str(resume), Path(str(root)), what="resume")
    except CliError:
        return None  # pfn train reports it clearly (Hydra would print a traceback here)


def _run_dir(resume: Any, root: Any, name: Any) -> str:
    target = resume_target(resume, root)
    if target is not None:
        return str(target)
    return str(Path(str(root)) / slug(name))


def _output_subdir(resume: Any, root: Any, stamp: Any) -> str:
    if resume_target(resume, root) is None:
        return ".hydra"
    return f".hydra/resume-{slug(stamp)}"


_RESOLVERS = {
    "pfn.prior": _prior_attr,
    "pfn.y_range": _y_range,
    "pfn.riemann_borders": _riemann_borders,
    "pfn.slug": slug,
    "pfn.stamp": run_stamp,
    "pfn.run_dir": _run_dir,
    "pfn.output_subdir": _output_subdir,
}


def register_resolvers() -> None:
    """Register the pfn.* resolvers (idempotent)."""
    for name, fn in _RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
