"""The spec's data generators, vectorised over the batch.

User functions and parameterizers are written for one sequence; ``generate_batch`` runs
them over the whole batch with ``torch.func.vmap`` and falls back to a Python loop only
when vmap cannot trace the user's code (the fallback is remembered, so it is tried once).

``generate_batch(..., device=...)`` draws on the training device: parameters come from the
user's prior where its parameters live (usually the CPU; B small draws) and are moved, x
and noise are drawn on the device and the user's code runs there. User code that cannot run
on the device (it builds CPU tensors inside, say) makes that generator draw on the CPU and
move the batch from then on (``_DeviceFallback``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeAlias

import torch
from torch import Tensor
from torch.distributions import Distribution

from .base import DataGenerator, PriorShapeError
from .bayes import Likelihood, Prior, _sample_params
from .protocol import sample_batch

Device: TypeAlias = torch.device | str | None


class ParameterizerError(TypeError):
    """The user's parameterizer broke its contract; no loop fallback can fix that."""


class _Vectorised:
    """Calls ``fn`` over a leading batch dim with vmap, or a loop when vmap fails."""

    def __init__(self, fn: Callable, owner: str) -> None:
        self.fn = fn
        self.owner = owner
        self.use_vmap = True

    def __call__(self, *batched: Any) -> Any:
        if not self.use_vmap:
            return self._loop(*batched)
        try:
            return torch.func.vmap(self.fn)(*batched)
        except ParameterizerError:
            raise
        except Exception as err:  # code vmap cannot trace: data-dependent control flow, .item()
            vmap_error = err
        # Switch to the loop only when the loop works: an error the loop shares (e.g. CPU
        # tensors made next to device inputs) is no reason to give up vmap for good.
        out = self._loop(*batched)
        self.use_vmap = False
        warnings.warn(
            f"{self.owner}: torch.func.vmap could not vectorise the user function "
            f"({type(vmap_error).__name__}: {vmap_error}); falling back to a per-sequence loop.",
            RuntimeWarning,
            stacklevel=3,
        )
        return out

    def _loop(self, *batched: Any) -> Any:
        outs = [self.fn(*(a[i] for a in batched)) for i in range(len(batched[0]))]
        if isinstance(outs[0], dict):
            return {k: torch.stack([torch.as_tensor(o[k]) for o in outs]) for k in outs[0]}
        return torch.stack([torch.as_tensor(o) for o in outs])


def _rng_states(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The CPU generator's state and, for a CUDA device, that device's (to rewind a draw)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_states(states: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state(states[1], device)


class _DeviceFallback:
    """Runs a generator's draw on the requested device, or on the CPU once that failed.

    User functions are written for one sequence and may build CPU tensors inside
    (``torch.tensor([...])``, numpy), which fails next to device inputs. The first draw that
    fails on a device but works on the CPU switches this generator to CPU draws moved to the
    device (one RuntimeWarning). The random state is rewound before the CPU draw, so the batch
    is the one the CPU gives for the same seed, first call or later.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.cpu_only = False

    def __call__(
        self, draw: Callable[[Device], tuple[Tensor | None, Tensor]], device: Device
    ) -> tuple[Tensor | None, Tensor]:
        if device is None:
            return draw(None)
        device = torch.device(device)
        cpu = torch.device("cpu")
        if device.type == "cpu":
            return draw(device)
        if not self.cpu_only:
            states = _rng_states(device)
            try:
                return draw(device)
            except (ParameterizerError, PriorShapeError, torch.cuda.OutOfMemoryError):
                raise  # broken contracts fail everywhere; memory may be free next time
            except Exception as err:
                reason = f"{type(err).__name__}: {err}"
            _set_rng_states(states, device)
            x, y = draw(cpu)  # the user's own error, raised here, if the code fails on CPU too
            self.cpu_only = True
            warnings.warn(
                f"{self.owner}: the user code could not run on {device} ({reason}); drawing on "
                "the CPU and moving each batch instead (create tensors with x.new_tensor / "
                "device=x.device to draw on the device).",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            x, y = draw(cpu)
        return (None if x is None else x.to(device)), y.to(device)


def _to_device(t: Tensor, device: Device) -> Tensor:
    """A draw made where the user's prior lives (usually the CPU), moved to ``device``."""
    return t if device is None else torch.as_tensor(t).to(device)


def _sample_x(
    x_distribution: Any, batch_size: int, seq_len: int, input_dim: int, device: Device = None
) -> Tensor:
    """Inputs x [B, S, D] on ``device``: standard normal drawn there by default, else drawn
    from the given distribution where its parameters live and moved."""
    if x_distribution is None:
        return torch.randn(batch_size, seq_len, input_dim, device=device)
    if isinstance(x_distribution, Distribution):
        event = tuple(x_distribution.event_shape)
        shape = (batch_size, seq_len) if event == (input_dim,) else (batch_size, seq_len, input_dim)
        x = x_distribution.sample(shape).float()
    else:
        x = torch.as_tensor(x_distribution(batch_size, seq_len, input_dim)).float()
    return _to_device(x, device)


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
            k: v if isinstance(v, Tensor) else torch.as_tensor(v, dtype=x.dtype, device=x.device)
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
        self._device = _DeviceFallback(type(self).__name__)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: Device = None
    ) -> tuple[Tensor, Tensor]:
        """A batch on ``device`` (None: CPU); see the module doc for where each part is drawn."""
        return self._device(lambda dev: self._draw(batch_size, seq_len, dev), device)

    def _draw(self, batch_size: int, seq_len: int, device: Device) -> tuple[Tensor, Tensor]:
        params = _to_device(_sample_params(self.prior, batch_size), device)
        x = _sample_x(self.x_distribution, batch_size, seq_len, self.input_dim, device)
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
        self._device = _DeviceFallback(type(self).__name__)

    def _inputs(self, batch_size: int, seq_len: int, device: Device = None) -> Tensor:
        return _sample_x(
            self.x_distribution, batch_size, seq_len, self.likelihood.input_dim, device
        )

    def generate_batch(
        self, batch_size: int, seq_len: int, device: Device = None
    ) -> tuple[Tensor | None, Tensor]:
        """A batch on ``device`` (None: CPU); see the module doc for where each part is drawn."""
        return self._device(lambda dev: self._draw(batch_size, seq_len, dev), device)

    def _draw(self, batch_size: int, seq_len: int, device: Device) -> tuple[Tensor | None, Tensor]:
        theta = _to_device(_sample_params(self.prior, batch_size), device)
        x = self._inputs(batch_size, seq_len, device)
        y = _sample_y(self.likelihood, self._params(theta, x), seq_len)
        return (x if self.input_dim is not None else None), y


class UnsupervisedBayesian(BayesianGenerator):
    """theta ~ prior, y_1..y_S ~ likelihood(theta); the parameterizer gets a dummy x [seq, 1]."""

    def __init__(self, prior: Prior, likelihood: Likelihood) -> None:
        super().__init__(prior, likelihood)
        self.input_dim = None

    def _inputs(self, batch_size: int, seq_len: int, device: Device = None) -> Tensor:
        return torch.zeros(batch_size, seq_len, self.likelihood.input_dim, device=device)


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
        self._on_device: dict[torch.device, tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def _data_on(self, device: Device) -> tuple[Tensor, Tensor]:
        """``(x_data, y_data)`` on ``device``: copied there once and cached, so a batch is only
        an index draw and a gather on the device (a new x_data/y_data is copied again)."""
        if device is None:
            return self.x_data, self.y_data
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        hit = self._on_device.get(device)
        if hit is None or hit[0] is not self.x_data or hit[1] is not self.y_data:
            hit = (self.x_data, self.y_data, self.x_data.to(device), self.y_data.to(device))
            self._on_device[device] = hit
        return hit[2], hit[3]

    def generate_batch(
        self, batch_size: int, seq_len: int, device: Device = None
    ) -> tuple[Tensor, Tensor]:
        """Random rows (or windows) gathered on ``device`` (None: CPU)."""
        x_data, y_data = self._data_on(device)
        n = x_data.shape[0]
        if self.sequential:
            if seq_len > n:
                raise PriorShapeError(
                    f"DatasetGenerator(sequential=True) cannot cut windows of seq_len={seq_len} "
                    f"from {n} rows; use seq_len <= {n} or sequential=False."
                )
            starts = torch.randint(0, n - seq_len + 1, (batch_size, 1), device=device)
            idx = starts + torch.arange(seq_len, device=device)
        else:
            idx = torch.randint(0, n, (batch_size, seq_len), device=device)
        return x_data[idx], y_data[idx]


__all__ = [
    "BayesianGenerator",
    "DatasetGenerator",
    "DeterministicGenerator",
    "UnsupervisedBayesian",
    "sample_batch",
]
