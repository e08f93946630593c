"""What a model predicts and what a data generator produces: one typed description.

A ``TaskSpec`` says whether data come with inputs x (supervised) or as bare sequences,
whether y is continuous or discrete, and the sizes that must agree (``input_dim``,
``num_classes``). Model configs (``config.task``), data generators
(``pfn_transformers.data.describe_generator``) and the model (``model.task``) all speak it,
and ``check_compatible`` is the one place that decides whether a model fits a generator:
``train``, evaluation and the ``pfn`` CLI call it and differ only in the names they print.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET_TYPES = ("continuous", "discrete")
HEADS = ("bar", "point", "categorical")


class IncompatibleTaskError(ValueError):
    """A model cannot be trained or evaluated on a data generator (message says why)."""


@dataclass(frozen=True)
class TaskSpec:
    """A task, as a model sees it or as a generator produces it.

    supervised: data are (x, y) pairs; False for sequences y without x.
    target_type: "continuous" (float y) or "discrete" (integer class/token ids).
    input_dim: feature size of x (supervised only; None when unknown or unsupervised).
    num_classes: classes/tokens of a discrete y (None when unknown or continuous).
    head: for models only: "bar" (bar distribution), "point" (MSE) or "categorical".
    """

    supervised: bool
    target_type: str
    input_dim: int | None = None
    num_classes: int | None = None
    head: str | None = None

    def __post_init__(self) -> None:
        if self.target_type not in TARGET_TYPES:
            raise ValueError(
                f"TaskSpec.target_type={self.target_type!r} is not valid; choose one of "
                f"{list(TARGET_TYPES)}."
            )
        if self.head is not None and self.head not in HEADS:
            raise ValueError(
                f"TaskSpec.head={self.head!r} is not valid; choose one of {list(HEADS)}."
            )

    @property
    def discrete(self) -> bool:
        return self.target_type == "discrete"

    def describe(self) -> str:
        """Plain words, e.g. "supervised (x, y) with continuous targets"."""
        if self.supervised:
            return f"supervised (x, y) with {'discrete labels' if self.discrete else 'continuous targets'}"
        return f"unsupervised (y only) with {'discrete tokens' if self.discrete else 'continuous values'}"


def _model_words(spec: TaskSpec) -> str:
    if spec.supervised:
        if spec.discrete:
            return "a classification model (labels given x)"
        return "a regression model (continuous y given x)"
    return f"an unsupervised next-token model over {'discrete tokens' if spec.discrete else 'continuous values'}"


def compatibility_problem(
    model: TaskSpec, data: TaskSpec, *, model_name: str = "the model", data_name: str = "the data"
) -> str | None:
    """Why ``model`` cannot learn from ``data``, in one paragraph, or None when it can.

    Fields left None on either side (not yet known) are not compared.
    """
    if (model.supervised, model.target_type) != (data.supervised, data.target_type):
        fix = _fix_for(data)
        return (
            f"{model_name} is {_model_words(model)}, so it needs data that are "
            f"{model.describe()}, but {data_name} is {data.describe()}; {fix}"
        )
    dims = (model.input_dim, data.input_dim)
    if model.supervised and None not in dims and dims[0] != dims[1]:
        return (
            f"{model_name} has input_dim={model.input_dim} but {data_name} produces x with "
            f"input_dim={data.input_dim}; set input_dim={data.input_dim} in the model config."
        )
    classes = (model.num_classes, data.num_classes)
    if model.discrete and None not in classes and classes[0] < classes[1]:
        field = "num_classes" if model.supervised else "d_vocab"
        return (
            f"{model_name} has {field}={model.num_classes} (the classes/tokens it predicts) but "
            f"{data_name} produces {data.num_classes}; set {field}={data.num_classes} in the "
            "model config."
        )
    return None


def _fix_for(data: TaskSpec) -> str:
    if data.supervised and data.discrete:
        return "use a ClassificationConfig for it."
    if data.supervised:
        return "use a RegressionConfig for it."
    if data.discrete:
        return "use UnsupervisedConfig(input_type='discrete') for it."
    return "use UnsupervisedConfig(input_type='continuous') for it."


def check_compatible(
    model: TaskSpec, data: TaskSpec, *, model_name: str = "the model", data_name: str = "the data"
) -> None:
    """Raise IncompatibleTaskError when ``model`` cannot learn from ``data``."""
    problem = compatibility_problem(model, data, model_name=model_name, data_name=data_name)
    if problem is not None:
        raise IncompatibleTaskError(problem)


__all__ = [
    "HEADS",
    "TARGET_TYPES",
    "IncompatibleTaskError",
    "TaskSpec",
    "check_compatible",
    "compatibility_problem",
]
