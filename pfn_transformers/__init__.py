"""pfn_transformers: train Prior-Fitted Networks, transformers that do Bayesian inference in context.

The public API follows the spec (``spec/pfn_transformers_api.md``). ``WandbLogger`` and the
``wandb`` submodule (and the scikit-learn estimators ``PFNRegressor``/``PFNClassifier``) are
imported lazily so ``import pfn_transformers`` stays light.
"""

from __future__ import annotations

from typing import Any

from . import bayes, checkpointing, configs, generators
from .context import CachedContext
from .data.base import DataGenerator
from .data.generators import (
    BayesianGenerator,
    DatasetGenerator,
    DeterministicGenerator,
    UnsupervisedBayesian,
)
from .data.protocol import describe_generator, sample_batch
from .model.bucketizer import Bucketizer, estimate_riemann_borders
from .model.configs import ClassificationConfig, RegressionConfig, UnsupervisedConfig
from .model.pfn import PFN, PFNModel
from .predictive import BarDistribution
from .task import IncompatibleTaskError, TaskSpec, check_compatible
from .training.config import TrainingConfig
from .training.loop import train

__version__ = "0.1.0"


_LAZY = ("WandbLogger", "PFNRegressor", "PFNClassifier", "wandb", "priors", "evaluation")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str) -> Any:
    if name == "WandbLogger":
        from .wandb import WandbLogger

        return WandbLogger
    if name in ("PFNRegressor", "PFNClassifier"):  # scikit-learn is an optional extra
        from . import estimators

        return getattr(estimators, name)
    if name in ("wandb", "priors", "evaluation"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pfn_transformers' has no attribute {name!r}")


__all__ = [
    "PFN",
    "BarDistribution",
    "BayesianGenerator",
    "Bucketizer",
    "CachedContext",
    "ClassificationConfig",
    "DataGenerator",
    "DatasetGenerator",
    "DeterministicGenerator",
    "IncompatibleTaskError",
    "PFNClassifier",
    "PFNModel",
    "PFNRegressor",
    "RegressionConfig",
    "TaskSpec",
    "TrainingConfig",
    "UnsupervisedBayesian",
    "UnsupervisedConfig",
    "WandbLogger",
    "bayes",
    "check_compatible",
    "checkpointing",
    "configs",
    "describe_generator",
    "estimate_riemann_borders",
    "generators",
    "sample_batch",
    "train",
    "wandb",
]
