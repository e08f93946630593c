"""A model config fitted to a prior, in the library: the fields a prior decides are derived
from it, and the fit is checked once.

``fit_model_config(RegressionConfig, prior, d_model=64)`` is what ``pfn train`` does for a
model choice: every field the prior decides that is not given (or given as None) is
derived from the prior, then the model's task is checked against the prior's, once:

- ``input_dim``: the dimension of the prior's x (supervised models);
- ``num_classes`` (classification) / ``d_vocab`` (unsupervised discrete): its classes/tokens;
- ``y_min``/``y_max`` (bar heads with uniform buckets): the prior's suggested y range
  (central 99.9% of its targets, padded by 10% of that width on each side);
- ``riemann_borders`` (``bucket_type="riemann"``): ``d_vocab`` quantile buckets estimated
  from its targets (fixed seed: the same borders every time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..task import IncompatibleTaskError, compatibility_problem
from .protocol import describe_generator

# the fields a prior decides (each only on the config classes that have it)
FITTED_FIELDS = ("input_dim", "num_classes", "d_vocab", "y_min", "y_max", "riemann_borders")


def _field_names(config_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}


def fit_model_fields(
    config_class: type,
    fields: Mapping[str, Any],
    prior: Any,
    *,
    model_name: str = "the model",
    data_name: str | None = None,
) -> dict[str, Any]:
    """``fields`` with the prior-decided fields that are missing or None filled in (see the
    module doc). IncompatibleTaskError (one paragraph naming both) when the model cannot
    learn from the prior; ValueError for a discrete prior that does not say its number of
    classes when the model needs it."""
    from .building import prior_y_range, riemann_borders_for

    names = _field_names(config_class)
    out = dict(fields)
    spec = describe_generator(prior)
    data_name = data_name or f"the prior ({type(prior).__name__})"

    def unset(name: str) -> bool:
        return name in names and out.get(name) is None

    kind = config_class.task_for(out)
    same_kind = (kind.supervised, kind.target_type) == (spec.supervised, spec.target_type)
    if same_kind:
        if unset("input_dim") and spec.supervised:
            out["input_dim"] = spec.input_dim
        count = "num_classes" if "num_classes" in names else "d_vocab"
        if spec.discrete and unset(count):
            if spec.num_classes is None:
                raise ValueError(
                    f"the prior {type(prior).__name__} draws discrete values but does not say "
                    "how many classes/tokens there are; give it a num_classes attribute, or set "
                    f"the model's size yourself ({count}=K)."
                )
            out[count] = spec.num_classes
    problem = compatibility_problem(
        config_class.task_for(out), spec, model_name=model_name, data_name=data_name
    )
    if problem is not None:
        raise IncompatibleTaskError(problem)
    if spec.target_type == "continuous" and out.get("prediction_type", "distribution") != "point":
        if out.get("bucket_type", "uniform") == "riemann":
            if unset("riemann_borders"):
                out["riemann_borders"] = riemann_borders_for(prior, _num_buckets(out))
        elif unset("y_min") or unset("y_max"):
            lo, hi = prior_y_range(prior)
            out["y_min"] = lo if out.get("y_min") is None else out["y_min"]
            out["y_max"] = hi if out.get("y_max") is None else out["y_max"]
    return {k: v for k, v in out.items() if not (k in FITTED_FIELDS and v is None)}


def _num_buckets(fields: Mapping[str, Any]) -> int:
    value = fields.get("d_vocab")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"d_vocab={value!r}: Riemann buckets need an integer number of buckets."
        ) from None


def fit_model_config(config_class: type, prior: Any, **fields: Any) -> Any:
    """``config_class(**fields)`` fitted to ``prior`` (see the module doc)::

    config = fit_model_config(RegressionConfig, prior, d_model=64, n_layers=4)
    """
    return config_class(**fit_model_fields(config_class, fields, prior))


__all__ = ["FITTED_FIELDS", "fit_model_config", "fit_model_fields"]
