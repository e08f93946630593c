"""The data-generator contract every generator and prior follows.

A generator draws whole datasets (sequences) from a prior. ``generate(seq_len)`` keeps the
spec's one-sequence shapes; ``generate_batch(batch_size, seq_len)`` is the vectorised path
that training, ``sample_batch`` and evaluation use. Randomness comes from torch's global
generator, so ``torch.manual_seed`` makes draws reproducible.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

# Values of ``DataGenerator.target_type``: what y holds.
TARGET_TYPES = ("continuous", "discrete")


class PriorShapeError(ValueError):
    """A prior or generator produced samples of the wrong shape or dtype."""


class DataGenerator(ABC):
    """Base class: draws datasets of (x, y) pairs, or y alone when unsupervised.

    Attributes subclasses set:
        input_dim: feature dimension of x, or None when unsupervised.
        target_type: "continuous" (float y) or "discrete" (long y in [0, num_classes)).
        num_classes: number of classes/tokens for discrete y, else None.
    """

    input_dim: int | None = None
    target_type: str = "continuous"
    num_classes: int | None = None

    @property
    def is_supervised(self) -> bool:
        return self.input_dim is not None

    @abstractmethod
    def generate_batch(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        """Draw ``batch_size`` independent datasets.

        Returns ``(x, y)`` with x ``[batch, seq, input_dim]`` float32 (None when
        unsupervised) and y ``[batch, seq]`` (float32, or int64 when discrete).
        """

    def generate(self, seq_len: int) -> tuple[Tensor, Tensor] | Tensor:
        """One dataset: ``(x [seq, input_dim], y [seq])``, or ``y [seq]`` when unsupervised."""
        x, y = self.generate_batch(1, seq_len)
        return y[0] if x is None else (x[0], y[0])

    def check_batch(self, x: Tensor | None, y: Tensor, batch_size: int, seq_len: int) -> None:
        """Raise PriorShapeError naming the generator when a batch has the wrong shape."""
        name = type(self).__name__
        if tuple(y.shape) != (batch_size, seq_len):
            raise PriorShapeError(
                f"{name} produced y of shape {tuple(y.shape)}; expected "
                f"[batch_size, seq_len] = [{batch_size}, {seq_len}]."
            )
        if self.input_dim is None:
            if x is not None:
                raise PriorShapeError(f"{name} is unsupervised (input_dim=None) but produced x.")
            return
        if x is None or tuple(x.shape) != (batch_size, seq_len, self.input_dim):
            got = None if x is None else tuple(x.shape)
            raise PriorShapeError(
                f"{name} produced x of shape {got}; expected [batch_size, seq_len, input_dim] = "
                f"[{batch_size}, {seq_len}, {self.input_dim}]."
            )


class ExactPosteriorMixin:
    """Priors with a closed-form posterior predictive implement this.

    ``exact_log_predictive(x, y)`` returns ``[batch, seq]``: entry n is
    log p(y_n | x_n, D_<n) under the exact Bayesian posterior predictive (x is None for
    unsupervised priors). Evaluation compares a PFN's per-position log density against it.
    """

    def exact_log_predictive(self, x: Tensor | None, y: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def has_exact_posterior(generator: object) -> bool:
    """True when the generator provides an exact posterior predictive."""
    method = getattr(type(generator), "exact_log_predictive", None)
    return method is not None and method is not ExactPosteriorMixin.exact_log_predictive
