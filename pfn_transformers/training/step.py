"""One optimisation step, entirely on the device: the unit a compiled step captures.

``TrainStep(state)(x, y)`` runs forward, backward, gradient clipping and the optimizer update
and returns the (detached) loss without reading anything back to the host. A step whose loss
or gradient norm is not finite is skipped on the device and counted: one flag, computed once
from the loss and the gradient norm (``nonfinite_flags``), is the optimizer's ``found_inf``
(fused AdamW and ``BatchedMuon`` then change no parameter, moment, momentum or step count).
``StepStats`` keeps those counts, and the share of targets outside a bounded bar
distribution, in one device tensor that a step updates with one operator; the loop reads
them at log steps, and ``NonFiniteGuard`` watches them without a host synchronisation.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator

import torch
from torch import Tensor

from ..utils import has_fast_bf16
from .compilation import compiled_training_loss, training_loss
from .state import TrainState

# A run stops when this many steps in a row, or more than this share of all steps (and at
# least MAX_SKIPPED_IN_A_ROW), were skipped for non-finite losses or gradients.
MAX_SKIPPED_IN_A_ROW = 10
MAX_SKIPPED_SHARE = 0.01


class NonFiniteLossError(FloatingPointError):
    """Training stopped because non-finite losses or gradients persisted."""


def uses_bf16(device: torch.device, precision: str) -> bool:
    """bf16 autocast for ``precision="bf16"``, or ``"auto"`` where bf16 matmuls are native."""
    return precision == "bf16" or (precision == "auto" and has_fast_bf16(device))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context ``precision`` asks for on ``device``."""
    enabled = uses_bf16(device, precision)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def tf32_matmuls(device: torch.device, enabled: bool) -> Iterator[None]:
    """TF32 for fp32 matmuls on CUDA while the block runs (``TrainingConfig.tf32``); the
    process's previous setting comes back afterwards, so predictions stay full fp32."""
    if not enabled or device.type != "cuda":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


COUNTERS = ("skipped", "skipped_in_a_row", "out_of_range", "targets", "bad_batches")


class StepStats:
    """Device-side counters of the steps since the run (or resume) started, packed in one
    float64 tensor (exact to 2**53) so that a step updates them all with one operator:
    ``skipped`` steps whose update was skipped, ``skipped_in_a_row`` the current run of
    them, ``out_of_range`` targets outside a bounded bar distribution, ``targets`` seen (the
    share's denominator), ``bad_batches`` skipped steps whose batch itself held NaN/inf."""

    def __init__(self, device: torch.device) -> None:
        self.counts = torch.zeros(len(COUNTERS), dtype=torch.float64, device=device)
        self._constants: dict[int, Tensor] = {}

    # each counter as a 0-d view of ``counts``
    skipped = property(lambda self: self.counts[0])
    skipped_in_a_row = property(lambda self: self.counts[1])
    out_of_range = property(lambda self: self.counts[2])
    targets = property(lambda self: self.counts[3])
    bad_batches = property(lambda self: self.counts[4])

    def _constant(self, value: int) -> Tensor:
        if value not in self._constants:
            self._constants[value] = torch.tensor(float(value), device=self.counts.device)
        return self._constants[value]

    def record(self, flags: Tensor, out_of_range: Tensor | None, n_targets: int) -> None:
        """Count one step: ``flags`` is ``nonfinite_flags``'s [skipped, bad batch] pair."""
        bad = flags[0]
        one = self._constant(1)
        if out_of_range is None:
            seen, n = self._constant(0), self._constant(0)
        else:
            seen, n = out_of_range.sum(), self._constant(n_targets)
        # counts * keep + add, one operator: skipped_in_a_row restarts at 0 after a good step
        keep = torch.stack([one, bad, one, one, one])
        add = torch.stack([bad, bad, seen.to(bad.dtype), n, flags[1] * bad])
        torch.addcmul(add, self.counts, keep, out=self.counts)

    def read(self) -> dict[str, int]:
        """The counters as Python ints (a host read: call at log steps only)."""
        return {k: int(v) for k, v in zip(COUNTERS, self.counts.tolist(), strict=True)}


class NonFiniteGuard:
    """Stops a run whose non-finite steps persist, reading the counters without a sync.

    Every step the counters are copied to a (pinned, on CUDA) host buffer without
    blocking; the guard reads whatever has arrived, so on a GPU it may lag a few steps behind.
    """

    def __init__(self, stats: StepStats, num_steps: int) -> None:
        self.stats = stats
        self.max_share = max(MAX_SKIPPED_IN_A_ROW, math.ceil(MAX_SKIPPED_SHARE * num_steps))
        pin = stats.counts.device.type == "cuda"
        self.host = torch.zeros_like(stats.counts, device="cpu", pin_memory=pin)

    def check(self, state: TrainState, *, final: bool = False) -> None:
        """Raise NonFiniteLossError when skipped steps persist; ``final=True`` (after the last
        step) reads exact counts and also refuses a run none of whose steps updated the model."""
        self.host.copy_(self.stats.counts, non_blocking=not final)
        counts = dict(zip(COUNTERS, map(int, self.host.tolist()), strict=True))
        skipped, in_a_row = counts["skipped"], counts["skipped_in_a_row"]
        bad_batches = counts["bad_batches"]
        steps = state.step - state.start_step
        all_skipped = final and steps > 0 and skipped == steps
        if in_a_row < MAX_SKIPPED_IN_A_ROW and skipped <= self.max_share and not all_skipped:
            return
        ckpt = state.last_checkpoint
        kept = (
            f"The last good checkpoint is {ckpt}."
            if ckpt is not None
            else "No checkpoint was written before this."
        )
        stopped = (
            f"training stopped at step {state.step}: {in_a_row} step(s) in a row and {skipped} in "
            f"all had a non-finite loss or gradient (limit: {MAX_SKIPPED_IN_A_ROW} in a row or "
            f"{self.max_share} in all) and were skipped. "
        )
        if bad_batches:
            advice = (
                f"In {bad_batches} of them the batch itself was not finite: the data generator "
                "drew NaN or inf values in x or y, so the data, not the learning rate, is the "
                "cause. Check the prior (e.g. sample_batch(prior, 4, seq_len)) for NaN/inf. "
            )
        else:
            advice = (
                f"The batches were finite: lower the learning rate (learning_rate="
                f"{state.training_config.learning_rate}), enable gradient clipping, or check "
                "for class ids outside the model's range. "
            )
        raise NonFiniteLossError(stopped + advice + kept)


def nonfinite_flags(loss: Tensor, norm: Tensor, x: Tensor | None, y: Tensor) -> Tensor:
    """Two device flags (float32, 1.0 = yes), computed together without a host sync: is the
    step's loss or gradient norm not finite (skip the update), and does the batch itself
    (its floating-point x and y) hold NaN/inf. ``v * 0`` is 0 for finite v and NaN for NaN
    and inf, and a max-norm is NaN or inf exactly when an element is."""
    checks = [loss.detach().float() + norm]
    batch = [t for t in (x, y) if t is not None and t.is_floating_point()]
    if batch:
        norms = torch._foreach_norm(batch, math.inf)
        checks.append(norms[0] if len(norms) == 1 else norms[0] + norms[1])
    else:
        checks.append(torch.zeros_like(checks[0]))
    return torch.nan_to_num(torch.stack(checks) * 0, nan=1.0)


def compile_mode(setting: bool | str, device: torch.device) -> str | None:
    """The torch.compile mode a ``TrainingConfig.compile`` value asks for (None: eager).

    "auto" compiles on CUDA only, with CUDA graphs ("reduce-overhead"): at small batches a
    GPU step is bound by kernel launches. On CPU compiling did not pay (350 ms against
    380 ms per step after a 58 s warm-up on 2 cores).
    """
    if setting is False or (setting == "auto" and device.type != "cuda"):
        return None
    if setting in (True, "auto"):
        return "reduce-overhead" if device.type == "cuda" else "default"
    return str(setting)


def _has_hooks(model: torch.nn.Module) -> bool:
    """True while any TransformerLens hook is attached (or the explicit path is forced)."""
    if any(getattr(block.attn, "force_explicit", False) for block in model.blocks):
        return True
    return any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


class TrainStep:
    """Forward, backward, clipping and a skippable optimizer update; no host synchronisation.

    With ``TrainingConfig.compile`` the loss (forward and, through AOTAutograd, backward) is
    a ``torch.compile``d function; while hooks are attached the eager one runs instead, so
    hooked and explicit-attention runs keep working.
    """

    def __init__(self, state: TrainState) -> None:
        self.state = state
        self.tc = state.training_config
        self.params = [p for p in state.model.parameters() if p.requires_grad]
        self.stats = StepStats(state.device)
        # decided once, outside the compiled function (the CPU probes would break its graph)
        self.bf16 = uses_bf16(state.device, self.tc.precision)
        self.split_context = self.tc.splits_context
        self.mode = compile_mode(self.tc.compile, state.device)
        if self.split_context and self.tc.compile == "auto":
            self.mode = None  # every context size would be a graph of its own
        # "auto" decides after timing eager steps (the loop calls enable_compile if it pays)
        self.deferred = self.mode is not None and self.tc.compile == "auto"
        self.compiled_loss = None
        self.compiled_calls = 0
        if self.mode is not None and not self.deferred:
            self.enable_compile()

    def enable_compile(self) -> None:
        """Run the loss compiled from the next step on (one compiled function per process)."""
        self.deferred = False
        self.compiled_loss = compiled_training_loss(self.mode, dynamic=self.split_context)

    @property
    def warmup_calls(self) -> int:
        """Compiled calls that still compile or capture: CUDA graphs record on the second."""
        return 2 if self.mode == "reduce-overhead" else 1

    def compiles_next(self) -> bool:
        """Whether the next call compiles (or captures) rather than just runs."""
        uses_compiled = self.compiled_loss is not None and not _has_hooks(self.state.model)
        return uses_compiled and self.compiled_calls < self.warmup_calls

    def loss(
        self,
        x: Tensor | None,
        y: Tensor,
        n_context: int | None = None,
        hyperparameters: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """The mean training loss of one batch (under the run's autocast); with
        ``n_context``, that of the points after the first n_context (``context_split``)."""
        dev = self.state.device.type
        return training_loss(self.state.net, x, y, n_context, self.bf16, dev, hyperparameters)

    def context_size(self, x: Tensor | None, y: Tensor) -> int | None:
        """This step's context size under ``context_split="random"`` (else None): drawn from
        the seeded, checkpointed Python RNG on the host, so no device sync."""
        if not self.split_context or x is None:
            return None
        return random.randrange(y.shape[1])

    def __call__(
        self, x: Tensor | None, y: Tensor, hyperparameters: dict[str, Tensor] | None = None
    ) -> Tensor:
        """One step on a batch; ``hyperparameters`` for a model with ``condition_on``."""
        state, tc = self.state, self.tc
        model, optimizer = state.model, state.optimizer
        if self.compiled_loss is not None and not _has_hooks(model):
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            loss = self.compiled_loss(
                state.net,
                x,
                y,
                self.context_size(x, y),
                self.bf16,
                state.device.type,
                hyperparameters,
            )
            self.compiled_calls += 1
        else:
            loss = self.loss(x, y, self.context_size(x, y), hyperparameters)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        flags = nonfinite_flags(loss, norm, x, y)  # [skip this step, the batch is not finite]
        if tc.use_grad_clip:
            torch.nn.utils.clip_grads_with_norm_(self.params, tc.grad_clip, norm)
        optimizer.found_inf = flags[0]  # fused AdamW and BatchedMuon skip the update when 1
        optimizer.step()
        state.scheduler.step()
        self.stats.record(flags, model.out_of_range(y), y.numel())
        if self.mode == "reduce-overhead" and self.compiled_loss is not None:
            return loss.detach().clone()  # a CUDA-graph output is overwritten by the next replay
        return loss.detach()
