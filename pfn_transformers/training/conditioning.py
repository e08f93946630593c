"""Training batches with hyperparameters, for models with ``condition_on``.

Each step draws its datasets with the prior's ``draw`` (which reports the hyperparameters
every dataset was drawn with) and hides each value from the model with probability
``condition_drop_prob``, independently per hyperparameter and dataset, so one model learns
the predictive given any subset of them, the marginal (none known) included. The hiding
draws come from torch's global RNG after the batch, which checkpoints save: a resumed run
hides the same values.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..data.protocol import BatchSource, preserved_rng
from ..model.conditioning import check_prior_exposes, drop_hyperparameters

_PROBE = (2, 4)  # batch and length of the draw that checks what the prior reports


class ConditionedBatches:
    """``sample(B, S, device)`` -> ``(x, y, hyperparameters)`` with hidden values as NaN."""

    def __init__(self, source: BatchSource, names: list[str], drop_prob: float) -> None:
        self.source = source
        self.names = list(names)
        self.drop_prob = float(drop_prob)
        params = None
        if source.has_draw:
            with preserved_rng():  # the caller's (and the run's) random state is untouched
                params = source.sample_with_params(*_PROBE)[2]
        check_prior_exposes(source.generator, self.names, params)

    def sample(
        self, batch_size: int, seq_len: int, device: Any = None
    ) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
        x, y, params = self.source.sample_with_params(batch_size, seq_len, device=device)
        return x, y, drop_hyperparameters(params, self.names, self.drop_prob)


def training_batches(source: BatchSource, model_config: Any) -> BatchSource | ConditionedBatches:
    """What a run samples its batches from: the plain source, or for a model with
    ``condition_on`` the conditioned one (refusing a prior that cannot report them)."""
    names = list(getattr(model_config, "condition_on", None) or [])
    if not names:
        return source
    return ConditionedBatches(source, names, model_config.condition_drop_prob)


__all__ = ["ConditionedBatches", "training_batches"]
