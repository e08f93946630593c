"""OmegaConf resolvers that let a model config agree with the chosen prior.

Registered by every pfn Hydra app (and by ``register_resolvers()`` for the compose API):

``${pfn.prior:ATTR}``
    An attribute of the instantiated prior (``input_dim``, ``num_classes``, ...). The prior
    is built from the config's own ``prior`` node (cached per prior config).
``${pfn.y_range:min}`` / ``${pfn.y_range:max}``
    The prior's ``suggested_y_range`` (central 99.9% of its targets, padded by 10% of that
    width on each side); priors without one get the same rule applied to 20,000 draws.
``${pfn.riemann_borders:BUCKET_TYPE,N}``
    ``N`` Riemann (quantile) buckets estimated from the prior's ``sample_targets`` when
    BUCKET_TYPE is ``riemann`` (fixed seed: the same borders every time), else null.
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
_RIEMANN_SAMPLES = 50_000
_RIEMANN_SEED = 0


# ---------------------------------------------------------------------------- priors
def prior_cache_key(node: DictConfig) -> str:
    return OmegaConf.to_yaml(node, resolve=True)


def instantiate_prior(node: DictConfig, choice: str | None = None) -> Any:
    """Build the generator a ``prior`` config node describes (cached), with clear errors."""
    from hydra.utils import instantiate

    if node is None:
        raise CliError("no prior is configured; choose one with prior=NAME (see --help).")
    label = f"prior={choice}" if choice else "prior"
    try:
        key = prior_cache_key(node)
    except Exception as exc:
        raise CliError(f"{label}: its config does not resolve: {describe_exception(exc)}") from None
    if key in _PRIOR_CACHE:
        return _PRIOR_CACHE[key]
    if "_target_" not in node:
        raise CliError(
            f"{label}: the prior config has no _target_; a prior YAML names the class or "
            "function that builds the generator, e.g. "
            "`_target_: pfn_transformers.priors.GPPrior`."
        )
    try:
        prior = instantiate(node, _convert_="all")
    except Exception as exc:
        target = node.get("_target_")
        raise CliError(
            f"{label}: could not build {target}: {describe_exception(exc)}. Check the prior's "
            "fields (`pfn train --cfg job` shows them) and that its module is importable "
            "(run pfn from the folder that holds it, or add it to PYTHONPATH)."
        ) from None
    from pfn_transformers.data.protocol import batch_source

    try:
        batch_source(prior)
    except TypeError as exc:
        raise CliError(f"{label}: {node.get('_target_')} returned {exc}") from None
    _PRIOR_CACHE[key] = prior
    return prior


def _root_prior(root: DictConfig) -> Any:
    node = root.get("prior") if isinstance(root, DictConfig) else None
    if node is None:
        raise CliError("this config has no `prior` node for ${pfn.prior:...} to read from.")
    return instantiate_prior(node)


def prior_targets(prior: Any, n: int) -> Any:
    """``n`` draws of y from the prior predictive (fixed seed, caller's RNG untouched)."""
    from pfn_transformers.priors._common import prior_targets as draw

    return draw(prior, n, seed=_RIEMANN_SEED)


def prior_y_range(prior: Any) -> tuple[float, float]:
    """The prior's suggested y range (the library's rule, ``priors.suggested_y_range``)."""
    from pfn_transformers.priors import suggested_y_range

    return suggested_y_range(prior)


# ---------------------------------------------------------------------------- resolvers
def _prior_attr(attr: str, *, _root_: DictConfig) -> Any:
    """An attribute of the prior; ``input_dim`` and ``num_classes`` come from its TaskSpec
    (its attributes, else one sample), so a plain class with only ``generate`` works."""
    prior = _root_prior(_root_)
    attr = str(attr)
    if attr in ("input_dim", "num_classes"):
        from pfn_cli.compat import describe_prior

        spec = describe_prior(prior, None)
        value = getattr(spec, attr)
        if value is None and attr == "num_classes" and spec.discrete:
            raise CliError(
                f"the prior {type(prior).__name__} draws discrete values but does not say how "
                "many classes/tokens there are; give it a num_classes attribute, or set the "
                "model's size yourself (model.num_classes=K or model.d_vocab=K)."
            )
        return value
    value = getattr(prior, attr, None)
    if hasattr(value, "tolist"):
        value = value.tolist()
    return value


def _y_range(which: str, *, _root_: DictConfig) -> float:
    if which not in ("min", "max"):
        raise CliError(f"${{pfn.y_range:{which}}}: use min or max.")
    lo, hi = prior_y_range(_root_prior(_root_))
    return lo if which == "min" else hi


def _riemann_borders(bucket_type: Any, num_buckets: Any, *, _root_: DictConfig) -> Any:
    if bucket_type != "riemann":
        return None
    from pfn_transformers import estimate_riemann_borders

    try:
        n = int(num_buckets)
    except (TypeError, ValueError):
        raise CliError(
            f"model.d_vocab={num_buckets!r}: Riemann buckets need an integer number of buckets."
        ) from None
    y = prior_targets(_root_prior(_root_), _RIEMANN_SAMPLES)
    return [float(b) for b in estimate_riemann_borders(y, n).tolist()]


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
