"""One rule for what a data generator is, used by training, evaluation, sampling and the CLI.

``batch_source(generator)`` accepts any object with ``generate(seq_len)`` or
``generate_batch(batch_size, seq_len)`` (see ``data/base.py``) and gives:

- ``sample(batch_size, seq_len, device=None)``: a validated batch ``(x [B, S, D] | None,
  y [B, S])`` with float32 x, float32 (continuous) or int64 (discrete) y. ``generate_batch``
  is used when the object has it; otherwise the one-sequence ``generate`` is vectorised with
  ``torch.func.vmap`` when that is safe (all randomness from torch, rows independent) and
  called once per row when it is not.
- ``spec``: the generator's ``TaskSpec`` (supervised, ``input_dim``, target type,
  ``num_classes``), read from attributes when present and otherwise from one sample drawn
  without touching the caller's random state.

A ``generate_batch`` that takes a ``device`` argument (every built-in prior and generator)
is asked to draw on ``device`` directly; other generators draw on the CPU and are moved.

A wrong shape or dtype is a ``PriorShapeError`` naming the generator, never a silently wrong
tensor.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..task import TARGET_TYPES, TaskSpec, check_compatible

_PROBE_BATCH = 4
# set on DataGenerator's fill-in methods: a generator "provides" a method only when its own
# is not one of those (this module never imports data/base.py, which builds on it)
FILL_IN_MARK = "_pfn_fill_in"


class PriorShapeError(ValueError):
    """A prior or generator produced samples of the wrong shape or dtype."""


def fill_in(method: Callable) -> Callable:
    """Mark a base-class method that derives itself from the other way of drawing data."""
    setattr(method, FILL_IN_MARK, True)
    return method


_PROBE_SEQ = 8
_VMAP_CHECK_SEED = 20_240_531


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing torch's global random state (CPU and current CUDA)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


@dataclass
class _Batching:
    """What was learnt about one generator: its spec and how to batch its ``generate``."""

    spec: TaskSpec | None = None
    use_vmap: bool | None = None  # None: not decided yet
    takes_device: bool | None = None  # does generate_batch accept device=? (None: not read)


_STATE: dict[int, tuple[weakref.ref, _Batching]] = {}


def _state_for(generator: Any) -> _Batching:
    key = id(generator)
    hit = _STATE.get(key)
    if hit is not None and hit[0]() is generator:
        return hit[1]
    state = _Batching()
    try:
        ref = weakref.ref(generator, lambda _ref, k=key: _STATE.pop(k, None))
    except TypeError:  # not weak-referenceable: learn again next time
        return state
    _STATE[key] = (ref, state)
    return state


def _overrides(generator: Any, name: str) -> bool:
    """Does the generator provide ``name`` itself (not only DataGenerator's default)?"""
    method = getattr(type(generator), name, None)
    if method is None:
        return callable(getattr(generator, name, None))
    return not getattr(method, FILL_IN_MARK, False)


def _accepts_device(fn: Callable) -> bool:
    try:
        return "device" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _as_pair(out: Any, name: str, method: str) -> tuple[Tensor | None, Tensor]:
    """``(x, y)`` / ``(None, y)`` / ``y`` -> ``(x | None, y)`` as tensors."""
    if isinstance(out, tuple | list):
        if len(out) != 2:
            raise PriorShapeError(
                f"{name}.{method} returned a {type(out).__name__} of {len(out)} items; return "
                "(x, y) for supervised data or y alone (or (None, y)) for sequences without x."
            )
        x, y = out
        return (None if x is None else torch.as_tensor(x)), torch.as_tensor(y)
    return None, torch.as_tensor(out)


class BatchSource:
    """Any data generator behind one interface (see the module doc)."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.name = type(generator).__name__
        self.has_batch = _overrides(generator, "generate_batch")
        self.has_generate = _overrides(generator, "generate")
        if not (self.has_batch or self.has_generate):
            raise TypeError(
                f"{self.name} is not a data generator: it needs generate(seq_len) -> "
                "(x [seq, input_dim], y [seq]) or y [seq], or generate_batch(batch_size, "
                "seq_len) -> (x [batch, seq, input_dim] | None, y [batch, seq])."
            )
        self._state = _state_for(generator)
        if self._state.takes_device is None:  # inspect.signature is slow: read it once
            self._state.takes_device = self.has_batch and _accepts_device(generator.generate_batch)
        self.batch_takes_device = self._state.takes_device

    # ------------------------------------------------------------------ drawing
    def _raw(
        self, batch_size: int, seq_len: int, device: Any = None
    ) -> tuple[Tensor | None, Tensor]:
        if self.has_batch:
            if self.batch_takes_device and device is not None:
                out = self.generator.generate_batch(batch_size, seq_len, device=device)
            else:
                out = self.generator.generate_batch(batch_size, seq_len)
            return _as_pair(out, self.name, "generate_batch")
        return self.draw_from_generate(batch_size, seq_len)

    def _one(self, seq_len: int) -> tuple[Tensor | None, Tensor]:
        return _as_pair(self.generator.generate(seq_len), self.name, "generate")

    def _vmapped(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        def one(_: Tensor) -> Any:
            x, y = self._one(seq_len)
            return y if x is None else (x, y)

        out = torch.func.vmap(one, randomness="different")(torch.zeros(batch_size))
        return out if isinstance(out, tuple) else (None, out)

    def _looped(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        rows = [self._one(seq_len) for _ in range(batch_size)]
        ys = [r[1] for r in rows]
        shapes = {tuple(y.shape) for y in ys}
        if len(shapes) > 1:
            raise PriorShapeError(
                f"{self.name}.generate({seq_len}) returned y of different shapes across calls: "
                f"{sorted(shapes)}; each call must return y of shape [seq_len] = [{seq_len}]."
            )
        if rows[0][0] is None:
            return None, torch.stack(ys)
        xs = [r[0] for r in rows]
        if any(x is None for x in xs) or len({tuple(x.shape) for x in xs}) > 1:
            raise PriorShapeError(
                f"{self.name}.generate({seq_len}) returned x of different shapes across calls; "
                f"each call must return x of shape [seq_len, input_dim]."
            )
        return torch.stack(xs), torch.stack(ys)

    def _vmap_is_safe(self, seq_len: int) -> bool:
        """vmap draws a batch in one call, which is right only when every random number comes
        from torch (numpy or Python's ``random`` would be drawn once for all rows) and the
        call keeps no state. Checked once: the same seed must give the same batch twice, and
        the rows must differ."""
        try:
            with preserved_rng():
                torch.manual_seed(_VMAP_CHECK_SEED)
                first = self._vmapped(_PROBE_BATCH, seq_len)
                torch.manual_seed(_VMAP_CHECK_SEED)
                second = self._vmapped(_PROBE_BATCH, seq_len)
        except Exception:  # code vmap cannot trace: .item(), data-dependent branches, numpy
            return False
        parts = [(a, b) for a, b in zip(first, second, strict=True) if a is not None]
        if not all(a.shape == b.shape and torch.equal(a, b) for a, b in parts):
            return False
        return any(not torch.equal(a[1:], a[:1].expand_as(a[1:])) for a, _ in parts)

    def draw_from_generate(self, batch_size: int, seq_len: int) -> tuple[Tensor | None, Tensor]:
        """A batch from the one-sequence ``generate``: vectorised when safe, else looped."""
        if not self.has_generate:
            raise TypeError(f"{self.name} has no generate(seq_len) method.")
        state = self._state
        if state.use_vmap is None:
            state.use_vmap = self._vmap_is_safe(seq_len)
        if state.use_vmap:
            try:
                return self._vmapped(batch_size, seq_len)
            except Exception:  # e.g. a shape vmap could not batch at this seq_len
                state.use_vmap = False
        return self._looped(batch_size, seq_len)

    # ------------------------------------------------------------------ spec
    @property
    def spec(self) -> TaskSpec:
        """What the generator produces (cached; inferred from one sample where needed)."""
        state = self._state
        if state.spec is None:
            state.spec = self._infer_spec()
        return state.spec

    def _infer_spec(self) -> TaskSpec:
        with preserved_rng():
            x, y = self._raw(_PROBE_BATCH, _PROBE_SEQ)
        x, y = self._fix_shapes(x, y, _PROBE_BATCH, _PROBE_SEQ)
        gen = self.generator
        declared_dim = getattr(gen, "input_dim", None)
        input_dim = None
        if x is not None:
            input_dim = int(x.shape[-1])
            if _is_int(declared_dim) and declared_dim != input_dim:
                raise PriorShapeError(
                    f"{self.name} has input_dim={declared_dim} but produced x of shape "
                    f"{tuple(x.shape)} (input_dim {input_dim}); make them agree."
                )
        declared_type = getattr(gen, "target_type", None)
        if declared_type is not None and declared_type not in TARGET_TYPES:
            raise PriorShapeError(
                f"{self.name}.target_type={declared_type!r} is not valid; choose one of "
                f"{list(TARGET_TYPES)}."
            )
        target_type = declared_type or ("continuous" if y.is_floating_point() else "discrete")
        num_classes = None
        if target_type == "discrete":
            if y.is_floating_point() and not bool((y == y.round()).all()):
                raise PriorShapeError(
                    f"{self.name} has target_type='discrete' but produced non-integer y (e.g. "
                    f"{y.flatten()[0].item():.4g}); return integer class/token ids."
                )
            if y.numel() and int(y.min()) < 0:
                raise PriorShapeError(
                    f"{self.name} produced the class/token id {int(y.min())}; ids must be >= 0."
                )
            declared_classes = getattr(gen, "num_classes", None)
            if _is_int(declared_classes):
                num_classes = int(declared_classes)
                if y.numel() and int(y.max()) >= num_classes:
                    raise PriorShapeError(
                        f"{self.name} has num_classes={num_classes} but produced the id "
                        f"{int(y.max())}; ids must lie in [0, {num_classes})."
                    )
        return TaskSpec(
            supervised=x is not None,
            target_type=target_type,
            input_dim=input_dim,
            num_classes=num_classes,
        )

    # ------------------------------------------------------------------ checked batches
    def _fix_shapes(
        self, x: Tensor | None, y: Tensor, batch_size: int, seq_len: int
    ) -> tuple[Tensor | None, Tensor]:
        if y.ndim == 3 and y.shape[-1] == 1:
            y = y.squeeze(-1)
        if y.ndim == 1 and batch_size == 1 and y.shape[0] == seq_len:
            y = y.unsqueeze(0)
        if tuple(y.shape) != (batch_size, seq_len):
            raise PriorShapeError(
                f"{self.name} produced y of shape {tuple(y.shape)}; expected [batch_size, seq_len]"
                f" = [{batch_size}, {seq_len}] (one sequence: y of shape [seq_len])."
            )
        if x is not None:
            if x.ndim == 2 and tuple(x.shape) == (batch_size, seq_len):
                x = x.unsqueeze(-1)  # scalar inputs: input_dim 1
            if x.ndim != 3 or tuple(x.shape[:2]) != (batch_size, seq_len):
                raise PriorShapeError(
                    f"{self.name} produced x of shape {tuple(x.shape)}; expected [batch_size, "
                    f"seq_len, input_dim] = [{batch_size}, {seq_len}, input_dim] (one sequence: "
                    "[seq_len, input_dim])."
                )
        return x, y

    def sample(
        self, batch_size: int, seq_len: int, device: Any = None
    ) -> tuple[Tensor | None, Tensor]:
        """A validated batch ``(x [B, S, D] float32 | None, y [B, S])``, on ``device`` if given."""
        _check_sizes(batch_size, seq_len)
        self.spec  # noqa: B018 - inferred (RNG untouched) before the draw, as always
        return self._checked(self._raw(batch_size, seq_len, device), batch_size, seq_len, device)

    @property
    def has_draw(self) -> bool:
        """Does the generator report each dataset's latent values (``draw``)?"""
        return callable(getattr(self.generator, "draw", None))

    def sample_with_params(
        self, batch_size: int, seq_len: int, device: Any = None
    ) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
        """``sample``'s batch from the generator's ``draw(batch_size, seq_len)``, with the
        ``params`` it reports (name -> tensor with leading dim B, on ``device`` if given)."""
        if not self.has_draw:
            raise TypeError(
                f"{self.name} has no draw(batch_size, seq_len) method reporting each dataset's "
                "hyperparameters (PriorDraw(x, y, params))."
            )
        _check_sizes(batch_size, seq_len)
        self.spec  # noqa: B018
        draw = self.generator.draw
        if device is not None and _accepts_device(draw):
            out = draw(batch_size, seq_len, device=device)
        else:
            out = draw(batch_size, seq_len)
        x, y = self._checked((out.x, out.y), batch_size, seq_len, device)
        params = {k: torch.as_tensor(v) for k, v in dict(out.params).items()}
        if device is not None:
            params = {k: _move(v, device) for k, v in params.items()}
        return x, y, params

    def _checked(
        self, raw: tuple[Tensor | None, Tensor], batch_size: int, seq_len: int, device: Any
    ) -> tuple[Tensor | None, Tensor]:
        spec = self.spec
        x, y = self._fix_shapes(*raw, batch_size, seq_len)
        if spec.supervised != (x is not None):
            raise PriorShapeError(
                f"{self.name} produced {'(x, y)' if x is not None else 'y without x'} but its "
                f"first sample was {'(x, y)' if spec.supervised else 'y without x'}."
            )
        if x is not None:
            if x.shape[-1] != spec.input_dim:
                raise PriorShapeError(
                    f"{self.name} produced x of shape {tuple(x.shape)}; expected input_dim="
                    f"{spec.input_dim} as in its first sample."
                )
            x = x.float()
        y = y.long() if spec.discrete else y.float()
        if device is not None:
            x, y = _move(x, device), _move(y, device)
        return x, y


def _move(t: Tensor | None, device: Any) -> Tensor | None:
    """``t`` on ``device``. A CPU batch bound for a GPU goes through pinned memory, so the
    copy runs asynchronously while the GPU computes (no per-step host stall)."""
    if t is None or t.device == torch.device(device):
        return t
    if t.device.type == "cpu" and torch.device(device).type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def _check_sizes(batch_size: Any, seq_len: Any) -> None:
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{name}={value!r} is not valid; it must be a positive int.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def batch_source(generator: Any) -> BatchSource:
    """The ``BatchSource`` of any data generator (a BatchSource is returned as is)."""
    if isinstance(generator, BatchSource):
        return generator
    return BatchSource(generator)


def checked_source(
    generator: Any, model_task: TaskSpec, *, model_name: str, data_name: str
) -> BatchSource:
    """The generator's ``BatchSource`` after ``task.check_compatible`` has passed the model's
    task against it (one probe sample, caller's RNG untouched). ``data_name`` may use
    ``{name}`` for the generator's class name."""
    source = batch_source(generator)
    check_compatible(
        model_task,
        source.spec,
        model_name=model_name,
        data_name=data_name.format(name=source.name),
    )
    return source


def describe_generator(generator: Any) -> TaskSpec:
    """The ``TaskSpec`` of any data generator (see the module doc)."""
    return batch_source(generator).spec


def sample_batch(
    data_generator: Any, batch_size: int, seq_len: int
) -> tuple[Tensor | None, Tensor]:
    """``(x [B, S, D] or None, y [B, S])`` from any data generator (see the module doc)."""
    return batch_source(data_generator).sample(batch_size, seq_len)


__all__ = [
    "BatchSource",
    "batch_source",
    "checked_source",
    "describe_generator",
    "preserved_rng",
    "sample_batch",
]
