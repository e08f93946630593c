"""The data-generator protocol's optional base class, and the exact-posterior mixin.

A data generator is *any* object with one of

- ``generate(seq_len)`` -> ``(x [seq, input_dim], y [seq])``, or ``y [seq]`` without x
  (the spec's one-sequence form), or
- ``generate_batch(batch_size, seq_len)`` -> ``(x [batch, seq, input_dim] | None, y [batch, seq])``,
  optionally with a ``device=None`` keyword: then training asks for batches drawn there.

Subclassing ``DataGenerator`` is optional: it fills in whichever of the two methods a
subclass leaves out and gives ``sample_targets`` and a readable repr. What the library needs
to know about a generator (supervised or not, ``input_dim``, continuous or discrete targets,
``num_classes``) is read from attributes when present and otherwise from one sample; see
``pfn_transformers.data.protocol``. Randomness comes from torch's global generator, so
``torch.manual_seed`` makes draws reproducible.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .protocol import PriorShapeError, batch_source, fill_in

__all__ = ["DataGenerator", "ExactPosteriorMixin", "PriorShapeError", "has_exact_posterior"]

# Values of ``target_type``: what y holds.
TARGET_TYPES = ("continuous", "discrete")


class DataGenerator:
    """Optional base class of data generators: implement ``generate`` or ``generate_batch``.

    Attributes a subclass may set (each is inferred from a sample when absent):
        input_dim: feature dimension of x, or None when there is no x.
        target_type: "continuous" (float y) or "discrete" (integer y in [0, num_classes)).
        num_classes: number of classes/tokens of a discrete y.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> DataGenerator:
        if (
            cls.generate is DataGenerator.generate
            and cls.generate_batch is DataGenerator.generate_batch
        ):
            raise TypeError(
                f"{cls.__name__} is a DataGenerator without a way to draw data; implement "
                "generate(seq_len) -> (x [seq, input_dim], y [seq]) or y [seq], or "
                "generate_batch(batch_size, seq_len) -> (x [batch, seq, input_dim] | None, "
                "y [batch, seq])."
            )
        return super().__new__(cls)

    @fill_in
    def generate_batch(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        """``batch_size`` independent datasets from the subclass's one-sequence ``generate``.

        Vectorised with ``torch.func.vmap`` where that is safe, else a loop
        (``pfn_transformers.data.protocol``).
        """
        return batch_source(self).draw_from_generate(batch_size, seq_len)

    @fill_in
    def generate(self, seq_len: int) -> tuple[Tensor, Tensor] | Tensor:
        """One dataset: ``(x [seq, input_dim], y [seq])``, or ``y [seq]`` when unsupervised."""
        x, y = batch_source(self).sample(1, seq_len)
        return y[0] if x is None else (x[0], y[0])

    def sample_targets(self, n: int) -> Tensor:
        """``n`` draws of y from the prior predictive, flattened to ``[n]``.

        Each draw is position 0 of its own dataset, which for every exchangeable prior has the
        same law as any other position.
        """
        if n <= 0:
            raise ValueError(f"{type(self).__name__}.sample_targets: n={n} must be positive.")
        _, y = batch_source(self).sample(n, 1)
        return y.reshape(-1)

    def _hparams(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hparams().items())
        return f"{type(self).__name__}({args})"


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
