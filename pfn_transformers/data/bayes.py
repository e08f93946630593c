"""``Prior`` over parameters and ``Likelihood`` p(y | x, theta) for Bayesian generators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution


def _sample_params(source: Any, n: int) -> Tensor:
    """n parameter draws from a torch Distribution, a ``Prior`` or a callable ``f(n)``."""
    if isinstance(source, Distribution | Prior):
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
    """A prior over parameters theta, wrapping a torch distribution (or a sampler ``f(n)``).

    ``base_distribution=`` is accepted as well (the earlier implementation's spelling).
    """

    def __init__(
        self,
        distribution: Distribution | Callable[[int], Tensor] | None = None,
        *,
        base_distribution: Distribution | None = None,
    ) -> None:
        if distribution is None:
            distribution = base_distribution
        if not isinstance(distribution, Distribution) and not callable(distribution):
            raise TypeError(
                f"Prior(distribution={distribution!r}) is not valid; pass a "
                "torch.distributions.Distribution or a callable n -> tensor."
            )
        self.distribution = distribution

    @property
    def base_distribution(self) -> Distribution | Callable[[int], Tensor]:
        return self.distribution

    def sample(self, sample_shape: int | tuple[int, ...] | torch.Size = ()) -> Tensor:
        """Draws of shape ``[*sample_shape, *event_shape]`` (an int n means ``(n,)``)."""
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        shape = tuple(sample_shape)
        if isinstance(self.distribution, Distribution):
            return self.distribution.sample(shape)
        n = 1
        for s in shape:
            n *= s
        draws = torch.as_tensor(self.distribution(n))
        return draws.reshape(*shape, *draws.shape[1:])

    def log_prob(self, theta: Tensor) -> Tensor:
        if not isinstance(self.distribution, Distribution):
            raise TypeError("log_prob needs a Prior built from a torch Distribution.")
        return self.distribution.log_prob(theta)

    def __repr__(self) -> str:
        return f"Prior({self.distribution!r})"


class Likelihood:
    """p(y | x, theta): a torch distribution class whose arguments a parameterizer computes.

    ``parameterizer(theta, x)`` maps one parameter draw and one sequence of inputs x
    ``[seq, input_dim]`` to the distribution's keyword arguments (tensors of shape [seq], or
    per-sequence scalars, which are broadcast over the sequence). It is written for one
    sequence and vectorised with ``torch.func.vmap``. The distribution may be given as a
    class (``distribution_class=torch.distributions.Normal``, also positionally) or, as in
    the earlier implementation, as an instance whose class is used
    (``base_distribution=torch.distributions.Normal(0, 1)``).
    """

    def __init__(
        self,
        distribution_class: type[Distribution] | Distribution | None = None,
        parameterizer: Callable[[Tensor, Tensor], dict[str, Any]] | None = None,
        input_dim: int = 1,
        *,
        base_distribution: type[Distribution] | Distribution | None = None,
    ) -> None:
        cls = distribution_class if distribution_class is not None else base_distribution
        if isinstance(cls, Distribution):
            cls = type(cls)
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

    @property
    def discrete(self) -> bool:
        """True when the distribution draws integers (Bernoulli, Categorical, Poisson, ...)."""
        support = getattr(self.distribution_class, "support", None)
        return bool(getattr(support, "is_discrete", False))

    def distribution(self, params: dict[str, Any]) -> Distribution:
        """The distribution of y given already-computed (batched) parameters."""
        return self.distribution_class(**params)

    def __repr__(self) -> str:
        return f"Likelihood({self.distribution_class.__name__}, input_dim={self.input_dim})"
