"""``train()``: set a run up, step it, and let the callbacks log and checkpoint.

Each step draws a fresh batch from the prior (no dataset, no epochs). Device values are read
only at log steps (one host synchronisation there). Under ``torchrun`` it runs DDP (gloo on
CPU, nccl on GPU); rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.protocol import BatchSource, batch_source, checked_source
from ..model.configs import ModelConfig
from ..model.pfn import PFNModel
from ..persistence.files import ensure_writable_dir, remove_partial_files
from ..persistence.provenance import Provenance
from ..persistence.run_folder import environment
from ..utils import resolve_device
from . import finetune
from .callbacks import (
    Callback,
    CallbackList,
    Checkpointer,
    MetricsFile,
    ProgressBar,
    WandbTracking,
)
from .compilation import (
    PROBE_STEPS,
    compile_pays,
    compile_signature,
    expected_compile_s,
    record_compile_s,
)
from .conditioning import ConditionedBatches, training_batches
from .config import TrainingConfig
from .distributed import DistributedContext, seed_draws
from .outcome import ShortTrainingWarning, TrainingOutcome
from .progress import TrainingProgress
from .signals import StopSignals, TrainingInterrupted
from .state import TrainState, build_state
from .step import NonFiniteGuard, StepStats, TrainStep, autocast, tf32_matmuls


def nominal_lr(scheduler: torch.optim.lr_scheduler.LRScheduler, tc: TrainingConfig) -> float:
    """The schedule's current rate on ``tc.learning_rate``'s scale: the optimizer's groups may
    run at multiples of it (``muon_lr_ratio``, ``adamw_lr_ratio``)."""
    return scheduler.get_last_lr()[0] * tc.learning_rate / scheduler.base_lrs[0]


def check_generator(
    data_generator: Any, model_config: ModelConfig, model_name: str | None = None
) -> BatchSource:
    """The generator's ``BatchSource``, after checking the model can learn from it.

    Draws one small probe batch (the caller's random state is left untouched), so a prior
    whose samples have the wrong shape fails here, before any training, with a clear error.
    """
    return checked_source(
        data_generator,
        model_config.task,
        model_name=model_name or f"the model ({type(model_config).__name__})",
        data_name="the data generator {name}",
    )


@torch.no_grad()
def evaluate_loss(
    model: PFNModel,
    data_generator: Any,
    batch_size: int,
    seq_len: int,
    num_batches: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """Mean loss over fresh batches, plus MSE (continuous) or accuracy (discrete)."""
    was_training = model.training
    model.eval()
    device = model.device
    source = batch_source(data_generator)
    totals = {"loss": 0.0, "mse" if not model.discrete_y else "accuracy": 0.0}
    for _ in range(num_batches):
        x, y = source.sample(batch_size, seq_len, device=device)
        with autocast(device, precision):
            logits = model.predictive_logits(y) if x is None else model.predictive_logits(x, y)
        logits = logits.float()
        totals["loss"] += model.loss(logits, y).mean().item()
        pred = model.point_prediction(logits)
        if model.discrete_y:
            totals["accuracy"] += (pred == y).float().mean().item()
        else:
            totals["mse"] += ((pred - y) ** 2).mean().item()
    model.train(was_training)
    return {k: v / num_batches for k, v in totals.items()}


def _make_callbacks(state: TrainState) -> CallbackList:
    tc = state.training_config
    logger = None
    if tc.use_wandb:
        from ..wandb import WandbLogger

        logger = WandbLogger(tc, state.model_config, data_config=state.data_config)
    callbacks: list[Callback] = []
    if tc.save_checkpoint:
        artifacts = logger if tc.wandb_log_model else None
        callbacks.append(Checkpointer(tc.checkpoint_dir, tc.save_every, artifacts))
    if tc.metrics_path:
        callbacks.append(MetricsFile(tc.metrics_path))
    progress = TrainingProgress(tc, enabled=tc.progress_bar, start_step=state.step)
    callbacks.append(ProgressBar(progress))
    if logger is not None:
        callbacks.append(WandbTracking(logger))
    return CallbackList(callbacks)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class _LogWindow:
    """Losses and timings since the last log step; ``close`` turns them into metrics."""

    def __init__(self, state: TrainState, stats: StepStats) -> None:
        self.state = state
        self.stats = stats
        self.losses: list[Tensor] = []
        self.data_s = 0.0
        self.started = self.opened = time.perf_counter()
        self.opened_step = state.step
        self.warned_out_of_range = False

    def close(self, *flags: bool) -> tuple[dict[str, Any], list[bool]]:
        """Metrics of the window, and ``flags`` as agreed by every rank (True if any rank's
        is), read in the same host synchronisation."""
        state, tc = self.state, self.state.training_config
        counters = torch.stack(
            [self.stats.skipped, self.stats.out_of_range, self.stats.targets]
        ).float()
        local = torch.tensor([float(f) for f in flags], device=counters.device)
        values = state.dist.mean(torch.cat([torch.stack(self.losses).float(), counters, local]))
        values = values.tolist()  # the one host sync
        agreed = [v > 0 for v in values[len(values) - len(flags) :]]
        *losses, skipped, out_of_range, targets = values[: len(values) - len(flags)]
        finite = [v for v in losses if math.isfinite(v)]
        now = time.perf_counter()
        elapsed = max(now - self.opened, 1e-9)
        metrics: dict[str, Any] = {
            "step": state.step,
            "loss": _finite_or_none(losses[-1]),
            "loss_avg": sum(finite) / len(finite) if finite else None,
            "lr": nominal_lr(state.scheduler, tc),
            "seq_per_s": (state.step - self.opened_step)
            * tc.batch_size
            * state.dist.world_size
            / elapsed,
            "data_share": self.data_s / elapsed,
            "elapsed_s": now - self.started,
            "skipped_steps": int(skipped),
            "compile_s": state.compile_s,
        }
        if targets:
            metrics["out_of_range_frac"] = out_of_range / targets
            if out_of_range and not self.warned_out_of_range:
                self.warned_out_of_range = True
                borders = state.model.bucketizer.borders
                warnings.warn(
                    f"{out_of_range / targets:.3%} of the training targets so far lie outside "
                    f"the bounded bar distribution's range [{borders[0].item():.4g}, "
                    f"{borders[-1].item():.4g}]; they count as the edge buckets. Widen "
                    "y_min/y_max or use bucket_support='unbounded' to model them.",
                    RuntimeWarning,
                    stacklevel=4,
                )
        state.recent_losses = losses
        state.last_metrics = metrics
        self.losses.clear()
        self.data_s = 0.0
        self.opened, self.opened_step = now, state.step
        return metrics, agreed


class _CompileClock:
    """Seconds the compiled step spent compiling (kept out of the ``max_time_s`` budget),
    and the decision of ``compile="auto"`` after ``PROBE_STEPS`` timed eager steps."""

    def __init__(
        self, state: TrainState, step_fn: TrainStep, callbacks: CallbackList, started: float
    ) -> None:
        self.state, self.step_fn, self.callbacks = state, step_fn, callbacks
        self.started = started  # the run's clock (time.perf_counter) at its first step
        self.seconds = 0.0
        self.compiled = False
        self.probe_from: tuple[int, float] | None = None
        self.signature = compile_signature(state, step_fn.mode) if step_fn.mode else ""

    def _sync(self) -> float:
        if self.state.device.type == "cuda":
            torch.cuda.synchronize(self.state.device)
        return time.perf_counter()

    def step(
        self, x: Tensor | None, y: Tensor, hyperparameters: dict[str, Tensor] | None = None
    ) -> Tensor:
        """One step; a step that compiles (or captures CUDA graphs) is timed apart."""
        step_fn = self.step_fn
        # hyperparameters only for a model with condition_on: the plain call stays as it was
        batch = (x, y) if hyperparameters is None else (x, y, hyperparameters)
        if step_fn.deferred:
            self._probe()
        if not step_fn.compiles_next():
            return step_fn(*batch)
        if not self.compiled:
            self.callbacks.on_compile(self.state, started=True)
        t0 = self._sync()
        loss = step_fn(*batch)
        self.seconds += self._sync() - t0
        if not step_fn.compiles_next():  # warm: report once and remember for "auto"
            self.compiled = True
            self.callbacks.on_compile(self.state, started=False)
            if self.state.dist.is_main:
                record_compile_s(self.signature, self.seconds)
        return loss

    def _probe(self) -> None:
        """Time eager steps PROBE_STEPS // 4 .. PROBE_STEPS of this call, then decide."""
        state, tc = self.state, self.state.training_config
        done = state.step - state.start_step
        if done == PROBE_STEPS // 4:
            self.probe_from = (done, self._sync())
        elif done >= PROBE_STEPS and self.probe_from is not None:
            start, t0 = self.probe_from
            eager_step_s = (self._sync() - t0) / (done - start)
            spent = time.perf_counter() - self.started
            seconds_left = None if tc.max_time_s is None else tc.max_time_s - spent
            pays = compile_pays(
                eager_step_s,
                tc.num_steps - state.step,
                seconds_left,
                expected_compile_s(self.signature),
            )
            # every rank takes the first rank's decision (or the graphs would differ)
            pays = bool(state.dist.mean(torch.tensor([float(pays)], device=state.device)) > 0.5)
            if pays:
                self.step_fn.enable_compile()
            else:
                self.step_fn.deferred = False


def _run_steps(
    state: TrainState,
    source: BatchSource | ConditionedBatches,
    callbacks: CallbackList,
    eval_source: BatchSource | None,
    stop: StopSignals,
) -> str:
    """Step until ``num_steps``, ``max_time_s`` or a stop signal; returns the end status.

    ``max_time_s`` budgets training: the seconds a compiled step spends compiling do not
    count (``state.compile_s``). One process stops at the first step boundary after a
    signal or the time limit. Under DDP every rank must stop at the same step (or the next
    all-reduce hangs), so the ranks agree at log steps, in the synchronisation those
    already make. A ``ConditionedBatches`` source adds each batch's (partly hidden)
    hyperparameters, for models with ``condition_on``.
    """
    tc = state.training_config
    step_fn = TrainStep(state)
    guard = NonFiniteGuard(step_fn.stats, tc.num_steps)
    window = _LogWindow(state, step_fn.stats)
    clock = _CompileClock(state, step_fn, callbacks, window.started)
    single = state.dist.world_size == 1
    timed_out = False
    state.model.train()
    while state.step < tc.num_steps:
        t0 = time.perf_counter()
        if not single:  # draws from (seed, rank, step): independent ranks, exact resume
            seed_draws(tc.seed, state.dist.rank, state.step)
        batch = source.sample(tc.batch_size, tc.seq_len, device=state.device)
        window.data_s += time.perf_counter() - t0
        window.losses.append(clock.step(*batch))
        state.step += 1
        guard.check(state)
        stopping = stop.requested is not None
        state.train_s = time.perf_counter() - window.started - clock.seconds
        state.compile_s = clock.seconds
        timed_out = tc.max_time_s is not None and state.train_s > tc.max_time_s
        at_log = state.step % tc.log_every == 0 or state.step == tc.num_steps
        if at_log or (single and (stopping or timed_out)):
            metrics, (stopping, timed_out) = window.close(stopping, timed_out)
            callbacks.on_log(state, metrics)
        elif not single:
            stopping = timed_out = False  # decided together at the next log step
        if eval_source is not None and state.step % tc.eval_every == 0 and state.dist.is_main:
            callbacks.on_eval(
                state,
                evaluate_loss(
                    state.model,
                    eval_source,
                    tc.batch_size,
                    tc.seq_len,
                    tc.eval_batches,
                    tc.precision,
                ),
            )
        callbacks.on_step_end(state)
        if stopping:
            return "interrupted"
        if timed_out:
            break
    guard.check(state, final=True)
    return "timed_out" if timed_out else "finished"


def training_outcome(state: TrainState, status: str, signal: str | None = None) -> TrainingOutcome:
    """How this ``train()`` call ended (see ``training.outcome``)."""
    tc = state.training_config
    return TrainingOutcome(
        status=status,
        planned_steps=tc.num_steps,
        trained_steps=state.step,
        warmup_steps=tc.warmup_steps if tc.use_warmup else 0,
        max_time_s=tc.max_time_s,
        train_s=round(state.train_s, 3),
        compile_s=round(state.compile_s, 3),
        signal=signal,
    )


def train(
    data_generator: Any,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    *,
    resume_from: str | Path | None = None,
    eval_data_generator: Any = None,
    data_config: Any = None,
    init_from: Any = None,
    freeze: list[str] | None = None,
    refit_buckets: bool = False,
) -> PFNModel:
    """Train a PFN on fresh samples from ``data_generator``; returns the trained model.

    ``data_generator`` is any object with ``generate(seq_len)`` or
    ``generate_batch(batch_size, seq_len)`` (see ``pfn_transformers.DataGenerator``).
    ``resume_from`` (a checkpoint file or folder) restores model, optimizer, scheduler, step
    and RNG states, so the resumed run follows the uninterrupted run's trajectory. The first
    Ctrl-C or SIGTERM stops at the next step boundary, writes a checkpoint and raises
    ``TrainingInterrupted`` (a KeyboardInterrupt); a second one raises it at once.

    Fine-tuning: ``init_from`` (anything ``PFN.from_pretrained`` takes, or a model) starts
    from those weights with a fresh optimizer and schedule; ``model_config`` may then be
    None (the source's config, buckets included, is kept). ``freeze`` lists TransformerLens
    modules or parameters to keep fixed (``["blocks.0", "W_x"]``); ``refit_buckets=True``
    re-estimates the bar distribution's borders for ``data_generator`` and re-initialises
    ``W_U``/``b_U`` (see ``training.finetune``). The parent is recorded in every checkpoint.
    """
    tc = training_config
    if not isinstance(tc, TrainingConfig):
        raise TypeError(f"training_config must be a TrainingConfig, got {type(tc).__name__}.")
    init = None
    model_name = None
    if init_from is not None:
        init = finetune.prepare(
            init_from, model_config, data_generator, refit_buckets=refit_buckets, freeze=freeze
        )
        model_config = init.config
        model_name = f"the model of init_from={init.parent['source']!r}"
    elif refit_buckets:
        raise finetune.FineTuneError("refit_buckets=True needs init_from (a model to refit).")
    if not hasattr(model_config, "task"):
        raise TypeError(
            f"model_config must be a RegressionConfig, ClassificationConfig or "
            f"UnsupervisedConfig, got {type(model_config).__name__}."
        )
    source = training_batches(
        check_generator(data_generator, model_config, model_name), model_config
    )
    eval_source = None
    if tc.eval_every:
        eval_source = check_generator(eval_data_generator or data_generator, model_config)

    dist = DistributedContext.from_env(resolve_device(tc.device))
    if dist.is_main:  # refuse unwritable outputs before any training time is spent
        if tc.save_checkpoint:
            ensure_writable_dir(tc.checkpoint_dir, "TrainingConfig.checkpoint_dir")
            remove_partial_files(tc.checkpoint_dir)  # left by a killed run
        if tc.metrics_path:
            parent = Path(tc.metrics_path).parent
            ensure_writable_dir(parent, "the folder of TrainingConfig.metrics_path")
    state = build_state(
        model_config,
        tc,
        dist,
        resume_from=resume_from,
        data_config=data_config,
        init=init,
        freeze=freeze,
    )
    state.provenance.update(prior=describe_prior(data_generator), environment=environment())
    callbacks = _make_callbacks(state) if dist.is_main else CallbackList([])
    status = "failed"
    with StopSignals() as stop:
        try:
            callbacks.on_train_start(state)
            with tf32_matmuls(state.device, tc.tf32):
                status = _run_steps(state, source, callbacks, eval_source, stop)
            outcome = training_outcome(state, status, stop.requested)
            state.provenance["outcome"] = outcome.to_dict()  # the final checkpoint keeps it
        except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be set
            status = "aborted" if stop.forced else "interrupted"
            raise
        finally:
            try:
                callbacks.on_train_end(state, status)
            finally:
                dist.close()
    state.model.eval()
    state.model.provenance = trained_provenance(state)
    note = outcome.note()
    if note is not None and dist.is_main:
        warnings.warn(
            f"{note}. The model has hardly trained: raise max_time_s (it does not count "
            "compilation) or num_steps, or resume the run.",
            ShortTrainingWarning,
            stacklevel=2,
        )
    if status == "interrupted":
        raise TrainingInterrupted(stop.requested or "SIGINT", outcome=outcome)
    return state.model


def describe_prior(data_generator: Any) -> dict[str, Any]:
    """What a model card can say about a Python data generator: its class and repr."""
    cls = type(data_generator)
    text = repr(data_generator)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "repr": text[:500]}


def trained_provenance(state: TrainState) -> dict[str, Any]:
    """``model.provenance`` of a freshly trained model (what its checkpoints record)."""
    from ..utils import to_plain

    return Provenance.from_checkpoint(
        {
            "step": state.step,
            "training_config": state.training_config.to_dict(),
            "data_config": to_plain(state.data_config),
            "metrics": state.last_metrics,
            "path": None if state.last_checkpoint is None else str(state.last_checkpoint),
            "provenance": state.provenance,
        }
    ).to_dict()
