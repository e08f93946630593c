"""Training: ``TrainingConfig`` and the ``train`` loop."""

from .config import TrainingConfig
from .loop import check_compatible, evaluate_loss, train

__all__ = ["TrainingConfig", "check_compatible", "evaluate_loss", "train"]
