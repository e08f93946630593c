"""``Prior`` over parameters and ``Likelihood`` p(y | x, theta) for Bayesian generators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution


def _sample_params(source: Any, n: int) -> Tensor:
    """n parameter draws from a torch Distribution, a ``Prior`` or a callable ``f(n)``."""
    if isinstance(source, Distribution):
        return source.sample((n,))
    if hasattr(source, "sample"):
        return source.sample(n)
    if callable(source):
        return torch.as_tensor(source(n))
    raise TypeError(
        f"prior={source!r} is not valid; pass a torch.distributions.Distribution, a "
        "pfn_transformers.bayes.Prior or a callable n -> tensor of n draws."
    )


class Prior:
    """A prior over parameters theta, wrapping a torch distribution (or a sampler ``f(n)``)."""

    def __init__(self, distribution: Distribution | Callable[[int], Tensor]) -> None:
        if not isinstance(distribution, Distribution) and not callable(distribution):
            raise TypeError(
                f"Prior(distribution={distribution!r}) is not valid; pass a "
                "torch.distributions.Distribution or a callable n -> tensor."
            )
        self.distribution = distribution

    def sample(self, n: int) -> Tensor:
        """n independent draws, shape [n, *event_shape]."""
        return _sample_params(self.distribution, n)

    def log_prob(self, theta: Tensor) -> Tensor:
        if not isinstance(self.distribution, Distribution):
            raise TypeError("log_prob needs a Prior built from a torch Distribution.")
        return self.distribution.log_prob(theta)

    def __repr__(self) -> str:
        return f"Prior({self.distribution!r})"


class Likelihood:
    """p(y | x, theta): a torch distribution class whose arguments a parameterizer computes.

    ``parameterizer(theta, x)`` maps one parameter draw and one sequence of inputs x
    ``[seq, input_dim]`` to the distribution's keyword arguments (tensors of shape [seq] or
    scalars). It is written for one sequence and vectorised with ``torch.func.vmap``.
    ``distribution_class`` may also be passed positionally or as ``base_distribution``.
    """

    def __init__(
        self,
        distribution_class: type[Distribution] | None = None,
        parameterizer: Callable[[Tensor, Tensor], dict[str, Any]] | None = None,
        input_dim: int = 1,
        *,
        base_distribution: type[Distribution] | None = None,
    ) -> None:
        cls = distribution_class if distribution_class is not None else base_distribution
        if cls is None or not (isinstance(cls, type) and issubclass(cls, Distribution)):
            raise TypeError(
                f"Likelihood(distribution_class={cls!r}) is not valid; pass a "
                "torch.distributions class such as torch.distributions.Normal."
            )
        if parameterizer is None or not callable(parameterizer):
            raise TypeError(
                f"Likelihood(parameterizer={parameterizer!r}) is not valid; pass a function "
                "(theta, x) -> dict of distribution arguments."
            )
        if not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(
                f"Likelihood(input_dim={input_dim!r}) is not valid; it must be a positive int."
            )
        self.distribution_class = cls
        self.parameterizer = parameterizer
        self.input_dim = input_dim

    def distribution(self, params: dict[str, Any]) -> Distribution:
        """The distribution of y given already-computed (batched) parameters."""
        return self.distribution_class(**params)

    def __repr__(self) -> str:
        return f"Likelihood({self.distribution_class.__name__}, input_dim={self.input_dim})"
