"""Data generators under short names: ``from pfn_transformers.generators import Bayesian``."""

from .data.base import DataGenerator
from .data.generators import (
    BayesianGenerator,
    DatasetGenerator,
    DeterministicGenerator,
    UnsupervisedBayesian,
    sample_batch,
)

Deterministic = DeterministicGenerator
Bayesian = BayesianGenerator
Dataset = DatasetGenerator

__all__ = [
    "Bayesian",
    "BayesianGenerator",
    "DataGenerator",
    "Dataset",
    "DatasetGenerator",
    "Deterministic",
    "DeterministicGenerator",
    "UnsupervisedBayesian",
    "sample_batch",
]
