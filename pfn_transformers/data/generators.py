"""The spec's data generators, vectorised over the batch.

User functions and parameterizers are written for one sequence; ``generate_batch`` runs
them over the whole batch with ``torch.func.vmap`` and falls back to a Python loop only
when vmap cannot trace the user's code (the fallback is remembered, so it is tried once).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .base import DataGenerator, PriorShapeError
from .bayes import Likelihood, Prior, _sample_params
from .protocol import sample_batch


class ParameterizerError(TypeError):
    """The user's parameterizer broke its contract; no loop fallback can fix that."""


class _Vectorised:
    """Calls ``fn`` over a leading batch dim with vmap, or a loop when vmap fails."""

    def __init__(self, fn: Callable, owner: str) -> None:
        self.fn = fn
        self.owner = owner
        self.use_vmap = True

    def __call__(self, *batched: Any) -> Any:
        if self.use_vmap:
            try:
                return torch.func.vmap(self.fn)(*batched)
            except ParameterizerError:
                raise
            except Exception as err:  # code vmap cannot trace: data-dependent control flow, .item()
                self.use_vmap = False
                warnings.warn(
                    f"{self.owner}: torch.func.vmap could not vectorise the user function "
                    f"({type(err).__name__}: {err}); falling back to a per-sequence loop.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        outs = [self.fn(*(a[i] for a in batched)) for i in range(len(batched[0]))]
        if isinstance(outs[0], dict):
            return {k: torch.stack([torch.as_tensor(o[k]) for o in outs]) for k in outs[0]}
        return torch.stack([torch.as_tensor(o) for o in outs])


def _sample_x(x_distribution: Any, batch_size: int, seq_len: int, input_dim: int) -> Tensor:
    """Inputs x [B, S, D]: standard normal by default, else from the given distribution."""
    if x_distribution is None:
        return torch.randn(batch_size, seq_len, input_dim)
    if isinstance(x_distribution, Distribution):
        event = tuple(x_distribution.event_shape)
        shape = (batch_size, seq_len) if event == (input_dim,) else (batch_size, seq_len, input_dim)
        return x_distribution.sample(shape).float()
    return torch.as_tensor(x_distribution(batch_size, seq_len, input_dim)).float()


def _tensor_outputs(fn: Callable) -> Callable:
    """Wrap a parameterizer so plain-number outputs become tensors (vmap needs tensors)."""

    def wrapped(theta: Tensor, x: Tensor) -> dict[str, Tensor]:
        out = fn(theta, x)
        if not isinstance(out, dict):
            raise ParameterizerError(
                f"parameterizer returned {type(out).__name__}; it must return a dict of "
                "distribution arguments, e.g. {'loc': mean, 'scale': 0.1}."
            )
        return {
            k: v if isinstance(v, Tensor) else torch.as_tensor(v, dtype=x.dtype)
            for k, v in out.items()
        }

    return wrapped


def _sample_y(likelihood: Likelihood, params: dict[str, Tensor], seq_len: int) -> Tensor:
    """Draw y [B, S] from the likelihood with batched params.

    A per-sequence scalar parameter (``{"probs": theta}``, ``"scale": 0.1``) comes out of vmap
    as [B]; it is broadcast over the sequence so every position gets a draw.
    """
    params = {
        k: v.unsqueeze(-1).expand(-1, seq_len) if v.ndim == 1 else v for k, v in params.items()
    }
    y = likelihood.distribution(params).sample()
    batch = next(iter(params.values())).shape[0] if params else 1
    if tuple(y.shape) != (batch, seq_len):
        raise PriorShapeError(
            f"the likelihood {likelihood!r} drew y of shape {tuple(y.shape)} for a batch of "
            f"{batch} sequences of length {seq_len}; the parameterizer must return per-position "
            "parameters of shape [seq] (or per-sequence scalars, broadcast over the sequence)."
        )
    return y.long() if likelihood.discrete else y.float()


class DeterministicGenerator(DataGenerator):
    """y = function(x, params) + optional Gaussian noise, params drawn from ``prior``.

    ``function(x [seq, input_dim], params) -> y [seq]`` is written for one sequence.
    """

    target_type = "continuous"

    def __init__(
        self,
        prior: Distribution | Prior | Callable[[int], Tensor],
        function: Callable[[Tensor, Tensor], Tensor],
        input_dim: int,
        noise_std: float | None = None,
        x_distribution: Any = None,
    ) -> None:
        if not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(
                f"DeterministicGenerator(input_dim={input_dim!r}) is not valid; it must be a "
                "positive int."
            )
        if noise_std is not None and noise_std < 0:
            raise ValueError(
                f"DeterministicGenerator(noise_std={noise_std!r}) is not valid; use a value >= 0 "
                "or None for noiseless data."
            )
        self.prior = prior
        self.function = function
        self.input_dim = input_dim
        self.noise_std = noise_std
        self.x_distribution = x_distribution
        self._call = _Vectorised(function, type(self).__name__)

    def generate_batch(self, batch_size: int, seq_len: int) -> tuple[Tensor, Tensor]:
        params = _sample_params(self.prior, batch_size)
        x = _sample_x(self.x_distribution, batch_size, seq_len, self.input_dim)
        y = self._call(x, params)
        if y.ndim == 3 and y.shape[-1] == 1:
            y = y.squeeze(-1)
        y = y.float()
        if self.noise_std:
            y = y + self.noise_std * torch.randn_like(y)
        return x, y


class BayesianGenerator(DataGenerator):
    """theta ~ prior, x ~ x_distribution, y ~ likelihood(theta, x)."""

    def __init__(self, prior: Prior, likelihood: Likelihood, x_distribution: Any = None) -> None:
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                f"{type(self).__name__}(likelihood={likelihood!r}) is not valid; pass a "
                "pfn_transformers.bayes.Likelihood."
            )
        self.prior = prior
        self.likelihood = likelihood
        self.input_dim: int | None = likelihood.input_dim
        self.x_distribution = x_distribution
        self.target_type = "discrete" if likelihood.discrete else "continuous"
        self._params = _Vectorised(_tensor_outputs(likelihood.parameterizer), type(self).__name__)

    def _inputs(self, batch_size: int, seq_len: int) -> Tensor:
        return _sample_x(self.x_distribution, batch_size, seq_len, self.likelihood.input_dim)

    def generate_batch(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        theta = _sample_params(self.prior, batch_size)
        x = self._inputs(batch_size, seq_len)
        y = _sample_y(self.likelihood, self._params(theta, x), seq_len)
        return (x if self.input_dim is not None else None), y


class UnsupervisedBayesian(BayesianGenerator):
    """theta ~ prior, y_1..y_S ~ likelihood(theta); the parameterizer gets a dummy x [seq, 1]."""

    def __init__(self, prior: Prior, likelihood: Likelihood) -> None:
        super().__init__(prior, likelihood)
        self.input_dim = None

    def _inputs(self, batch_size: int, seq_len: int) -> Tensor:
        return torch.zeros(batch_size, seq_len, self.likelihood.input_dim)


class DatasetGenerator(DataGenerator):
    """Sequences drawn from a fixed dataset: random rows, or consecutive windows."""

    def __init__(self, x_data: Tensor, y_data: Tensor, sequential: bool = False) -> None:
        x_data, y_data = torch.as_tensor(x_data), torch.as_tensor(y_data)
        if x_data.ndim == 1:
            x_data = x_data.unsqueeze(-1)
        if x_data.ndim != 2:
            raise ValueError(f"x_data has shape {tuple(x_data.shape)}; expected [N, input_dim].")
        if y_data.ndim != 1 or y_data.shape[0] != x_data.shape[0]:
            raise ValueError(
                f"y_data has shape {tuple(y_data.shape)}; expected [N] with N={x_data.shape[0]} "
                "rows like x_data."
            )
        if x_data.shape[0] == 0:
            raise ValueError("DatasetGenerator got an empty dataset (N=0).")
        self.x_data = x_data.float()
        self.sequential = sequential
        self.input_dim = x_data.shape[1]
        self.num_classes: int | None = None
        if y_data.is_floating_point():
            self.y_data = y_data.float()
            self.target_type = "continuous"
        else:
            self.y_data = y_data.long()
            self.target_type = "discrete"
            self.num_classes = int(self.y_data.max()) + 1

    def generate_batch(self, batch_size: int, seq_len: int) -> tuple[Tensor, Tensor]:
        n = self.x_data.shape[0]
        if self.sequential:
            if seq_len > n:
                raise PriorShapeError(
                    f"DatasetGenerator(sequential=True) cannot cut windows of seq_len={seq_len} "
                    f"from {n} rows; use seq_len <= {n} or sequential=False."
                )
            starts = torch.randint(0, n - seq_len + 1, (batch_size, 1))
            idx = starts + torch.arange(seq_len)
        else:
            idx = torch.randint(0, n, (batch_size, seq_len))
        return self.x_data[idx], self.y_data[idx]


__all__ = [
    "BayesianGenerator",
    "DatasetGenerator",
    "DeterministicGenerator",
    "UnsupervisedBayesian",
    "sample_batch",
]
