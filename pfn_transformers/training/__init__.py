"""Training: ``TrainingConfig``, the ``train`` loop, its step function and callbacks."""

from .callbacks import Callback
from .config import TrainingConfig
from .loop import check_generator, evaluate_loss, train
from .signals import TrainingInterrupted
from .state import TrainState, build_state, lr_factor
from .step import NonFiniteLossError, TrainStep

__all__ = [
    "Callback",
    "NonFiniteLossError",
    "TrainState",
    "TrainStep",
    "TrainingConfig",
    "TrainingInterrupted",
    "build_state",
    "check_generator",
    "evaluate_loss",
    "lr_factor",
    "train",
]
