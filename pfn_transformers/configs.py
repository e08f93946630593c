"""Model configs under short names: ``from pfn_transformers.configs import Regression``."""

from .model.configs import (
    ClassificationConfig,
    RegressionConfig,
    UnsupervisedConfig,
    config_from_dict,
)

Regression = RegressionConfig
Classification = ClassificationConfig
Unsupervised = UnsupervisedConfig

__all__ = [
    "Classification",
    "ClassificationConfig",
    "Regression",
    "RegressionConfig",
    "Unsupervised",
    "UnsupervisedConfig",
    "config_from_dict",
]
