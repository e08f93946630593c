"""Does a model choice fit a prior? The library decides; the CLI adds the user's choice names.

``pfn_transformers.task.compatibility_problem`` is the one rule (also used by ``train`` and
evaluation). The CLI asks it twice: before the model config is resolved (from the config
class and its literal fields, so a classification head on a GP prior is refused before its
sizes are computed), and after (sizes such as ``input_dim`` and ``num_classes``). Its only
additions are the ``model=``/``prior=`` names and which built-in options would fit.
"""

from __future__ import annotations

import functools
from typing import Any

from omegaconf import DictConfig

from pfn_cli.errors import CliError
from pfn_cli.resolvers import describe_prior, register_resolvers


@functools.lru_cache(maxsize=1)
def builtin_options() -> dict[tuple[bool, str], dict[str, list[str]]]:
    """The ``conf/model`` and ``conf/prior`` options of each (supervised, target_type), for
    "use ..." suggestions. Read from the YAML files themselves (model classes' ``task_for``,
    priors instantiated with their defaults), so a new built-in prior needs only its class
    and its YAML. Only error messages call this; options that cannot be built as they stand
    (the csv prior needs a path) are left out."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from pfn_cli.paths import conf_dir

    register_resolvers()
    kinds: dict[tuple[bool, str], dict[str, list[str]]] = {}
    for path in sorted((conf_dir() / "model").glob("*.yaml")):
        spec = model_task_from_node(OmegaConf.load(path))
        if spec is not None:
            entry = kinds.setdefault((spec.supervised, spec.target_type), {})
            entry.setdefault("models", []).append(path.stem)
    for path in sorted((conf_dir() / "prior").glob("*.yaml")):
        try:
            spec = describe_prior(instantiate(OmegaConf.load(path)), path.stem)
        except Exception:
            continue
        entry = kinds.setdefault((spec.supervised, spec.target_type), {})
        entry.setdefault("priors", []).append(path.stem)
    return kinds


def _literal_fields(node: DictConfig) -> dict[str, Any]:
    """The node's fields whose values are plain literals (interpolations left out)."""
    out: dict[str, Any] = {}
    for key in node:
        raw = node._get_node(key)._value()
        if not (isinstance(raw, str) and "${" in raw):
            out[str(key)] = raw
    return out


def model_task_from_node(node: DictConfig | None) -> Any:
    """The ``TaskSpec`` of a ``model`` config node before it is resolved, or None for a model
    config class that does not describe its task (a user's own: trusted)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    from hydra.utils import get_class

    try:
        cls = get_class(str(node._target_))
    except Exception:  # reported when the config is instantiated
        return None
    task_for = getattr(cls, "task_for", None)
    if task_for is None:
        return None
    try:
        return task_for(_literal_fields(node))
    except ValueError as exc:
        raise CliError(f"model: {exc}") from None


def check_fit(
    model_task: Any,
    prior: Any,
    *,
    model_choice: str | None,
    prior_choice: str | None,
    model_label: str | None = None,
    size_hint: str = "Model sizes follow the prior unless overridden.",
) -> None:
    """Raise CliError (one paragraph naming both choices) when the model cannot fit the prior.

    ``size_hint`` ends a message about mismatched sizes (input_dim, classes).
    """
    if model_task is None:
        return
    from pfn_transformers.task import compatibility_problem

    data_task = describe_prior(prior, prior_choice)
    model_name = f"model={model_choice}" if model_choice else (model_label or "the model")
    prior_name = f"prior={prior_choice}" if prior_choice else "the prior"
    problem = compatibility_problem(
        model_task,
        data_task,
        model_name=model_name,
        data_name=f"{prior_name} ({type(prior).__name__})",
    )
    if problem is None:
        return
    kind_differs = (model_task.supervised, model_task.target_type) != (
        data_task.supervised,
        data_task.target_type,
    )
    if not kind_differs:
        raise CliError(f"{problem} {size_hint}")
    msg = f"Incompatible choices: {problem}"
    kinds = builtin_options()
    fits = kinds.get((data_task.supervised, data_task.target_type), {})
    wanted = kinds.get((model_task.supervised, model_task.target_type), {})
    if fits.get("models"):
        msg += f" Built-in options for {prior_name}: " + " or ".join(
            f"model={m}" for m in fits["models"]
        )
        msg += "."
    if wanted.get("priors"):
        msg += f" Priors that fit {model_name}: " + ", ".join(
            f"prior={p}" for p in wanted["priors"]
        )
        msg += "."
    raise CliError(msg)
