"""Does a model config fit a prior? One clear paragraph when it does not, before training.

A prior is described by two facts: supervised (it draws x) or not, and continuous or
discrete targets. Each model kind needs one combination.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from pfn_cli.errors import CliError

# (supervised, target_type) -> the built-in model and prior choices of that kind
KINDS: dict[tuple[bool, str], dict[str, Any]] = {
    (True, "continuous"): {
        "desc": "supervised with continuous targets",
        "models": ["regression", "regression_point"],
        "priors": ["linear", "polynomial", "gp", "mlp", "step_sine", "csv"],
    },
    (True, "discrete"): {
        "desc": "supervised with discrete labels",
        "models": ["classification"],
        "priors": ["logistic"],
    },
    (False, "discrete"): {
        "desc": "unsupervised (no x) with discrete tokens",
        "models": ["unsupervised_discrete"],
        "priors": ["coin", "categorical", "markov"],
    },
    (False, "continuous"): {
        "desc": "unsupervised (no x) with continuous values",
        "models": ["unsupervised_continuous"],
        "priors": ["nig"],
    },
}

_MODEL_DESC = {
    "regression": "a regression head (continuous y given x)",
    "classification": "a classification head (one of num_classes labels given x)",
    "unsupervised": "a next-token model over sequences without x",
}


def model_kind_from_target(target: str | None, input_type: str | None) -> tuple | None:
    """(family, supervised, target_type) for a model config ``_target_``, None if unknown."""
    if not target:
        return None
    name = str(target).rsplit(".", 1)[-1]
    if name in ("RegressionConfig", "Regression"):
        return ("regression", True, "continuous")
    if name in ("ClassificationConfig", "Classification"):
        return ("classification", True, "discrete")
    if name in ("UnsupervisedConfig", "Unsupervised"):
        return ("unsupervised", False, input_type or "discrete")
    return None


def model_kind_from_config(model_config: Any) -> tuple | None:
    """Same, for an instantiated model config (e.g. from a checkpoint)."""
    target = type(model_config).__name__
    return model_kind_from_target(target, getattr(model_config, "input_type", None))


def prior_kind(prior: Any) -> tuple[bool, str]:
    supervised = getattr(prior, "input_dim", None) is not None
    target = getattr(prior, "target_type", "continuous") or "continuous"
    return supervised, str(target)


def _describe_prior(prior: Any) -> str:
    supervised, target = prior_kind(prior)
    return KINDS.get((supervised, target), {}).get("desc", f"{target} targets")


def check_compatible(
    model_kind: tuple | None,
    prior: Any,
    *,
    model_choice: str | None,
    prior_choice: str | None,
    model_label: str | None = None,
) -> None:
    """Raise CliError (one paragraph naming both choices) when the model cannot fit the prior."""
    if model_kind is None:
        return  # a user's own model config class: trust it
    family, m_sup, m_target = model_kind
    p_sup, p_target = prior_kind(prior)
    if (m_sup, m_target) == (p_sup, p_target):
        return
    model_name = f"model={model_choice}" if model_choice else (model_label or "the model")
    prior_name = f"prior={prior_choice}" if prior_choice else "the prior"
    needs = KINDS.get((m_sup, m_target), {})
    has = KINDS.get((p_sup, p_target), {})
    model_desc = _MODEL_DESC.get(family, family)
    if family == "unsupervised":
        model_desc = f"an unsupervised next-token model over {m_target} values"
    msg = (
        f"Incompatible choices: {model_name} is {model_desc}, so it needs a prior that is "
        f"{needs.get('desc', 'of another kind')}, but {prior_name} "
        f"({type(prior).__name__}) is {_describe_prior(prior)}. "
    )
    if has.get("models"):
        msg += f"For {prior_name} use " + " or ".join(f"model={m}" for m in has["models"]) + "; "
    if needs.get("priors"):
        msg += f"with {model_name} use a prior such as " + ", ".join(
            f"prior={p}" for p in needs["priors"]
        )
        msg += "."
    raise CliError(msg.strip())


def check_resolved_fields(
    model_fields: dict[str, Any], prior: Any, *, model_choice: str | None, prior_choice: str | None
) -> None:
    """Explicit sizes in the model config must match the prior (input_dim, classes, vocab)."""
    model_name = f"model={model_choice}" if model_choice else "model"
    prior_name = f"prior={prior_choice}" if prior_choice else "the prior"
    p_dim = getattr(prior, "input_dim", None)
    m_dim = model_fields.get("input_dim")
    if p_dim is not None and m_dim is not None and int(m_dim) != int(p_dim):
        raise CliError(
            f"{model_name} has input_dim={m_dim} but {prior_name} draws x with input_dim="
            f"{p_dim}; drop the override (model.input_dim follows the prior by default) or "
            f"set prior.input_dim={m_dim}."
        )
    p_classes = getattr(prior, "num_classes", None)
    if p_classes is None:
        return
    m_classes = model_fields.get("num_classes")
    if m_classes is not None and int(m_classes) != int(p_classes):
        raise CliError(
            f"{model_name} has num_classes={m_classes} but {prior_name} draws labels from "
            f"{p_classes} classes; drop the override (model.num_classes follows the prior) "
            "or change the prior."
        )
    if model_fields.get("input_type") == "discrete":
        vocab = model_fields.get("d_vocab")
        if vocab is not None and int(vocab) < int(p_classes):
            raise CliError(
                f"{model_name} has d_vocab={vocab} but {prior_name} draws {p_classes} distinct "
                "tokens; d_vocab must be at least that (it follows the prior by default)."
            )


def model_kind_from_node(node: DictConfig) -> tuple | None:
    """Kind of a ``model`` config node, read without resolving its interpolations."""
    if node is None:
        return None
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    input_type = None
    if isinstance(node, DictConfig) and "input_type" in node:
        raw = node._get_node("input_type")
        input_type = None if raw is None else raw._value()
        if isinstance(input_type, str) and input_type.startswith("${"):
            input_type = node.get("input_type")
    return model_kind_from_target(target, input_type)
