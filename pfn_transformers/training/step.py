"""One optimisation step, entirely on the device: the unit a compiled step captures.

``TrainStep(state)(x, y)`` runs forward, backward, gradient clipping and the AdamW update and
returns the (detached) loss without reading anything back to the host. A step whose loss or
gradient norm is not finite is skipped on the device (fused AdamW's ``found_inf``: no
parameter, moment or step-count change) and counted. ``StepStats`` keeps those counts, and
the share of targets outside a bounded bar distribution, as device tensors; the loop reads
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


class StepStats:
    """Device-side counters of the steps since the run (or resume) started."""

    def __init__(self, device: torch.device) -> None:
        zero = lambda: torch.zeros((), dtype=torch.int64, device=device)  # noqa: E731
        self.skipped = zero()  # steps whose update was skipped
        self.skipped_in_a_row = zero()  # the current run of skipped steps
        self.out_of_range = zero()  # targets outside a bounded bar distribution
        self.targets = zero()  # targets seen (denominator of the share above)
        self.bad_batches = zero()  # skipped steps whose batch itself held NaN/inf

    def record(
        self,
        bad: Tensor,
        out_of_range: Tensor | None,
        n_targets: int,
        bad_batch: Tensor | None = None,
    ) -> None:
        bad = bad.to(torch.int64)
        self.skipped.add_(bad)
        self.skipped_in_a_row.add_(bad).mul_(bad)
        if bad_batch is not None:
            self.bad_batches.add_(bad_batch.to(torch.int64) * bad)
        if out_of_range is not None:
            self.out_of_range.add_(out_of_range.sum())
            self.targets.add_(n_targets)

    def read(self) -> dict[str, int]:
        """The counters as Python ints (a host read: call at log steps only)."""
        values = torch.stack(
            [self.skipped, self.skipped_in_a_row, self.out_of_range, self.targets]
        ).tolist()
        return dict(zip(("skipped", "skipped_in_a_row", "out_of_range", "targets"), values))


class NonFiniteGuard:
    """Stops a run whose non-finite steps persist, reading the counters without a sync.

    Every step the two skip counters are copied to a (pinned, on CUDA) host buffer without
    blocking; the guard reads whatever has arrived, so on a GPU it may lag a few steps behind.
    """

    def __init__(self, stats: StepStats, num_steps: int) -> None:
        self.stats = stats
        self.max_share = max(MAX_SKIPPED_IN_A_ROW, math.ceil(MAX_SKIPPED_SHARE * num_steps))
        pin = stats.skipped.device.type == "cuda"
        self.host = torch.zeros(3, dtype=torch.int64, pin_memory=pin)

    def check(self, state: TrainState, *, final: bool = False) -> None:
        """Raise NonFiniteLossError when skipped steps persist; ``final=True`` (after the last
        step) reads exact counts and also refuses a run none of whose steps updated the model."""
        counts = [self.stats.skipped, self.stats.skipped_in_a_row, self.stats.bad_batches]
        self.host.copy_(torch.stack(counts), non_blocking=not final)
        skipped, in_a_row, bad_batches = self.host.tolist()
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


def _bad_batch(x: Tensor | None, y: Tensor) -> Tensor | None:
    """A device flag: does the batch hold NaN/inf (None for integer y and no x)?"""
    flags = [~torch.isfinite(t).all() for t in (x, y) if t is not None and t.is_floating_point()]
    if not flags:
        return None
    return torch.stack(flags).any()


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
    """Forward, backward, clipping and a skippable AdamW update; no host synchronisation.

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

    def loss(self, x: Tensor | None, y: Tensor, n_context: int | None = None) -> Tensor:
        """The mean training loss of one batch (under the run's autocast); with
        ``n_context``, that of the points after the first n_context (``context_split``)."""
        return training_loss(self.state.net, x, y, n_context, self.bf16, self.state.device.type)

    def context_size(self, x: Tensor | None, y: Tensor) -> int | None:
        """This step's context size under ``context_split="random"`` (else None): drawn from
        the seeded, checkpointed Python RNG on the host, so no device sync."""
        if not self.split_context or x is None:
            return None
        return random.randrange(y.shape[1])

    def __call__(self, x: Tensor | None, y: Tensor) -> Tensor:
        state, tc = self.state, self.tc
        model, optimizer = state.model, state.optimizer
        if self.compiled_loss is not None and not _has_hooks(model):
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            loss = self.compiled_loss(
                state.net, x, y, self.context_size(x, y), self.bf16, state.device.type
            )
            self.compiled_calls += 1
        else:
            loss = self.loss(x, y, self.context_size(x, y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        bad = ~(torch.isfinite(loss) & torch.isfinite(norm))
        if tc.use_grad_clip:
            torch.nn.utils.clip_grads_with_norm_(self.params, tc.grad_clip, norm)
        optimizer.found_inf = bad.to(torch.float32)  # fused AdamW skips the update when 1
        optimizer.step()
        state.scheduler.step()
        self.stats.record(bad, model.out_of_range(y), y.numel(), _bad_batch(x, y))
        return loss.detach().clone()  # a CUDA-graph output is overwritten by the next replay
