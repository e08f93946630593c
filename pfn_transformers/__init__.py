"""pfn_transformers: train Prior-Fitted Networks, transformers that do Bayesian inference in context.

The public API follows the spec (``spec/pfn_transformers_api.md``). Every name is imported
on first use (module ``__getattr__``), so ``import pfn_transformers`` and the torch-free
modules (``pfn_transformers.runs``: run folders, read by ``pfn list-runs``) load without
torch; ``from pfn_transformers import train, PFN, ...`` works exactly as written. The
scikit-learn estimators (``PFNRegressor``/``PFNClassifier``) need the ``sklearn`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "DataGenerator": "data.base",
    "BayesianGenerator": "data.generators",
    "DatasetGenerator": "data.generators",
    "DeterministicGenerator": "data.generators",
    "UnsupervisedBayesian": "data.generators",
    "describe_generator": "data.protocol",
    "sample_batch": "data.protocol",
    "CachedContext": "context",
    "BarDistribution": "predictive",
    "PFNRegressor": "estimators",
    "PFNClassifier": "estimators",
    "Bucketizer": "model.bucketizer",
    "estimate_riemann_borders": "model.bucketizer",
    "ClassificationConfig": "model.configs",
    "RegressionConfig": "model.configs",
    "UnsupervisedConfig": "model.configs",
    "PFN": "model.pfn",
    "PFNModel": "model.pfn",
    "IncompatibleTaskError": "task",
    "TaskSpec": "task",
    "check_compatible": "task",
    "TrainingConfig": "training.config",
    "train": "training.loop",
    "WandbLogger": "wandb",
    "open_run": "runs",
    "load_model": "persistence.loading",
    "fit_model_config": "data.fitting",
    "RunLifecycle": "runs",
}
# submodules reachable as attributes (``pfn_transformers.checkpointing``) and by
# ``from pfn_transformers import checkpointing``
_SUBMODULES = (
    "bayes",
    "checkpointing",
    "configs",
    "evaluation",
    "export",
    "generators",
    "hub",
    "interp",
    "persistence",
    "priors",
    "runs",
    "wandb",
)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pfn_transformers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from . import bayes, checkpointing, configs, generators, wandb
    from .context import CachedContext
    from .data.base import DataGenerator
    from .data.fitting import fit_model_config
    from .data.generators import (
        BayesianGenerator,
        DatasetGenerator,
        DeterministicGenerator,
        UnsupervisedBayesian,
    )
    from .data.protocol import describe_generator, sample_batch
    from .estimators import PFNClassifier, PFNRegressor
    from .model.bucketizer import Bucketizer, estimate_riemann_borders
    from .model.configs import ClassificationConfig, RegressionConfig, UnsupervisedConfig
    from .model.pfn import PFN, PFNModel
    from .persistence.loading import load_model
    from .predictive import BarDistribution
    from .runs import RunLifecycle, open_run
    from .task import IncompatibleTaskError, TaskSpec, check_compatible
    from .training.config import TrainingConfig
    from .training.loop import train
    from .wandb import WandbLogger

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
    "RunLifecycle",
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
    "fit_model_config",
    "generators",
    "load_model",
    "open_run",
    "sample_batch",
    "train",
    "wandb",
]
