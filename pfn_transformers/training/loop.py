"""``train()``: the PFN training loop.

Each step draws a fresh batch from the prior (no dataset, no epochs). The loop avoids
per-step host synchronisation: losses stay on the device and are read only at logging
steps. Under ``torchrun`` it runs DDP (gloo on CPU, nccl on GPU); rank 0 alone logs and
writes checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checkpointing
from ..data.base import DataGenerator
from ..data.generators import sample_batch
from ..model.configs import ClassificationConfig, ConfigError, ModelConfig, UnsupervisedConfig
from ..model.pfn import PFN, PFNModel
from ..utils import has_fast_bf16, resolve_device
from .config import TrainingConfig
from .distributed import DistributedContext
from .progress import TrainingProgress


class IncompatibleGeneratorError(ConfigError):
    """The data generator's samples do not fit the model config."""


def check_compatible(data_generator: DataGenerator, model_config: ModelConfig) -> None:
    """Raise a one-paragraph error when generator and model cannot train together.

    Draws one tiny probe batch, so a prior whose samples have the wrong shape fails here,
    before any training, with the generator's own shape error.
    """
    gen = type(data_generator).__name__
    cfg = type(model_config).__name__
    unsupervised_model = isinstance(model_config, UnsupervisedConfig)
    if unsupervised_model == data_generator.is_supervised:
        want = "unsupervised (y only)" if unsupervised_model else "supervised (x, y)"
        raise IncompatibleGeneratorError(
            f"{cfg} needs a {want} generator, but {gen} has input_dim="
            f"{data_generator.input_dim!r}; pair supervised configs with supervised generators."
        )
    if not unsupervised_model and data_generator.input_dim != model_config.input_dim:
        raise IncompatibleGeneratorError(
            f"{cfg}.input_dim={model_config.input_dim} but {gen} produces x with input_dim="
            f"{data_generator.input_dim}; set input_dim={data_generator.input_dim}."
        )
    discrete_model = isinstance(model_config, ClassificationConfig) or (
        unsupervised_model and model_config.input_type == "discrete"
    )
    # A probe batch checks shapes and dtype without consuming the run's RNG.
    with torch.random.fork_rng():
        _, y_probe = sample_batch(data_generator, 2, 4)
    discrete_data = data_generator.target_type == "discrete" or not y_probe.is_floating_point()
    if discrete_model and not discrete_data:
        raise IncompatibleGeneratorError(
            f"{cfg} predicts discrete classes/tokens but {gen} produces continuous y; use a "
            "regression (or continuous unsupervised) config for this generator."
        )
    if discrete_data and not discrete_model:
        raise IncompatibleGeneratorError(
            f"{cfg} predicts continuous y but {gen} produces discrete y; use a "
            "ClassificationConfig or UnsupervisedConfig(input_type='discrete')."
        )
    n_classes = data_generator.num_classes
    if discrete_model and n_classes is not None and n_classes > model_config.d_vocab:
        raise IncompatibleGeneratorError(
            f"{gen} produces {n_classes} classes/tokens but {cfg} has d_vocab="
            f"{model_config.d_vocab}; set it to at least {n_classes}."
        )


def lr_factor(step: int, tc: TrainingConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (linear warmup, then the schedule)."""
    warmup = tc.warmup_steps if tc.use_warmup else 0
    if step < warmup:
        return (step + 1) / warmup
    if tc.lr_schedule == "constant":
        return 1.0
    span = max(1, tc.num_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resolve_resume(resume_from: str | Path) -> Path:
    path = Path(resume_from)
    if path.is_dir():
        return checkpointing.find_checkpoint(path)
    if not path.is_file():
        raise checkpointing.CheckpointNotFoundError(
            f"resume_from={str(resume_from)!r} does not exist; pass a checkpoint file or a folder "
            "of step-N.pt files."
        )
    return path


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and has_fast_bf16(device))
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)


@torch.no_grad()
def evaluate_loss(
    model: PFNModel,
    data_generator: DataGenerator,
    batch_size: int,
    seq_len: int,
    num_batches: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """Mean loss over fresh batches, plus MSE (continuous) or accuracy (discrete)."""
    was_training = model.training
    model.eval()
    device = model.device
    totals = {"loss": 0.0, "mse" if not model.discrete_y else "accuracy": 0.0}
    for _ in range(num_batches):
        x, y = sample_batch(data_generator, batch_size, seq_len)
        x = None if x is None else x.to(device)
        y = y.to(device)
        with _autocast(device, precision):
            logits = model(y) if x is None else model(x, y)
        logits = logits.float()
        totals["loss"] += model.loss(logits, y).mean().item()
        pred = model.point_prediction(logits)
        if model.discrete_y:
            totals["accuracy"] += (pred == y).float().mean().item()
        else:
            totals["mse"] += ((pred - y) ** 2).mean().item()
    model.train(was_training)
    return {k: v / num_batches for k, v in totals.items()}


def _make_logger(tc: TrainingConfig, model_config: ModelConfig, data_config: Any):
    if not tc.use_wandb:
        return None
    from ..wandb import WandbLogger

    return WandbLogger(tc, model_config, data_config=data_config)


def train(
    data_generator: DataGenerator,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    *,
    resume_from: str | Path | None = None,
    eval_data_generator: DataGenerator | None = None,
    data_config: Any = None,
) -> PFNModel:
    """Train a PFN on fresh samples from ``data_generator``; returns the trained model.

    ``resume_from`` (a checkpoint file or folder) restores model, optimizer, scheduler, step
    and RNG states, so the resumed run follows the uninterrupted run's trajectory.
    On Ctrl-C a checkpoint of the current step is written before KeyboardInterrupt is re-raised.
    """
    tc = training_config
    if not isinstance(tc, TrainingConfig):
        raise TypeError(f"training_config must be a TrainingConfig, got {type(tc).__name__}.")
    if not isinstance(data_generator, DataGenerator):
        raise TypeError(
            f"data_generator must be a pfn_transformers DataGenerator, got {type(data_generator).__name__}."
        )
    check_compatible(data_generator, model_config)
    if eval_data_generator is not None:
        check_compatible(eval_data_generator, model_config)

    dist = DistributedContext.from_env(resolve_device(tc.device))
    device = dist.device
    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    model = PFN(model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
    start_step = 0
    if resume_from is not None:
        payload = checkpointing.read_checkpoint(_resolve_resume(resume_from))
        model.load_state_dict(payload["model_state"])
        if payload.get("optimizer_state"):
            optimizer.load_state_dict(payload["optimizer_state"])
        if payload.get("scheduler_state"):
            scheduler.load_state_dict(payload["scheduler_state"])
        start_step = int(payload["step"])
        _set_rng_state(payload.get("rng_state"))
    else:
        torch.manual_seed(tc.seed + dist.rank)  # different data per rank, same init
    net = dist.wrap(model)

    ckpt_dir = Path(tc.checkpoint_dir)
    logger = _make_logger(tc, model_config, data_config) if dist.is_main else None
    progress = TrainingProgress(tc, enabled=tc.progress_bar and dist.is_main, start_step=start_step)
    metrics_file = Path(tc.metrics_path) if tc.metrics_path and dist.is_main else None
    if metrics_file:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)

    def write_metrics(record: dict[str, Any]) -> None:
        if metrics_file:
            with metrics_file.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def save(step: int, metrics: dict[str, Any] | None = None) -> None:
        if not (tc.save_checkpoint and dist.is_main):
            return
        path = checkpointing.save_checkpoint(
            ckpt_dir / checkpointing.checkpoint_filename(step),
            step,
            model.state_dict(),
            model_config,
            tc,
            optimizer.state_dict(),
            scheduler_state=scheduler.state_dict(),
            rng_state=_rng_state(),
            data_config=data_config,
            metrics=metrics,
        )
        if logger is not None and tc.wandb_log_model:
            logger.log_checkpoint(path, step)

    eval_gen = eval_data_generator or data_generator
    step = start_step
    pending: list[Tensor] = []
    last_log = {"time": time.perf_counter(), "step": step, "data_s": 0.0}
    started = time.perf_counter()
    last_metrics: dict[str, Any] = {}
    exit_code = 1
    model.train()
    try:
        progress.start()
        while step < tc.num_steps:
            t0 = time.perf_counter()
            x, y = sample_batch(data_generator, tc.batch_size, tc.seq_len)
            x = None if x is None else x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            last_log["data_s"] += time.perf_counter() - t0
            with _autocast(device, tc.precision):
                logits = net(y) if x is None else net(x, y)
            loss = model.loss(logits.float(), y).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.use_grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            pending.append(loss.detach())

            timed_out = tc.max_time_s is not None and time.perf_counter() - started > tc.max_time_s
            if step % tc.log_every == 0 or step == tc.num_steps or timed_out:
                losses = dist.mean(torch.stack(pending)).tolist()  # the one host sync per log step
                pending.clear()
                if not all(math.isfinite(v) for v in losses):
                    raise FloatingPointError(
                        f"training loss became {losses[-1]} at step {step} (learning_rate="
                        f"{tc.learning_rate}); lower the learning rate, enable grad clipping, or "
                        "check the prior for NaN/inf samples. The last good checkpoint is kept."
                    )
                now = time.perf_counter()
                elapsed = now - last_log["time"]
                n_steps = step - last_log["step"]
                last_metrics = {
                    "step": step,
                    "loss": losses[-1],
                    "loss_avg": sum(losses) / len(losses),
                    "lr": scheduler.get_last_lr()[0],
                    "seq_per_s": n_steps * tc.batch_size * dist.world_size / max(elapsed, 1e-9),
                    "data_share": last_log["data_s"] / max(elapsed, 1e-9),
                    "elapsed_s": now - started,
                }
                last_log.update(time=now, step=step, data_s=0.0)
                write_metrics(last_metrics)
                progress.update(step, last_metrics)
                if logger is not None:
                    first = step - len(losses) + 1
                    for i, value in enumerate(losses):
                        logger.log({"train/loss": value}, step=first + i)
                    logger.log(
                        {f"train/{k}": v for k, v in last_metrics.items() if k != "step"}, step=step
                    )

            if tc.eval_every and step % tc.eval_every == 0 and dist.is_main:
                eval_metrics = evaluate_loss(
                    model, eval_gen, tc.batch_size, tc.seq_len, tc.eval_batches, tc.precision
                )
                write_metrics({"step": step, **{f"eval_{k}": v for k, v in eval_metrics.items()}})
                progress.update(step, {**last_metrics, "eval_loss": eval_metrics["loss"]})
                if logger is not None:
                    logger.log({f"eval/{k}": v for k, v in eval_metrics.items()}, step=step)

            if step % tc.save_every == 0 and step < tc.num_steps and not timed_out:
                save(step, last_metrics)
            if timed_out:
                break
        save(step, last_metrics)
        exit_code = 0
    except KeyboardInterrupt:
        save(step, last_metrics)
        exit_code = 130
        raise
    finally:
        progress.stop()
        if logger is not None:
            logger.finish(exit_code)
        dist.close()
    model.eval()
    return model
