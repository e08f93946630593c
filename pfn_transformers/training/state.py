"""Setting a run up: model, optimizer, schedule, random state, and resuming all of them.

``build_state`` returns the ``TrainState`` the step function and the callbacks share.
Resuming restores model, optimizer, scheduler, step and RNG states, so a resumed run follows
the uninterrupted run's trajectory.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.build import load_weights
from ..model.configs import ConfigError, ModelConfig, config_from_dict
from ..model.pfn import PFN, PFNModel
from ..persistence.checkpoint import read_checkpoint
from ..persistence.errors import CheckpointNotFoundError
from ..persistence.files import find_step_file
from .config import TrainingConfig
from .distributed import DistributedContext
from .finetune import InitSource, apply_freeze, apply_init
from .optim import make_optimizer


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


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA) and Python random states, as plain data for a checkpoint."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_resume(resume_from: str | Path) -> Path:
    """The checkpoint file ``resume_from`` names (a file, or the newest in a folder)."""
    path = Path(resume_from)
    if path.is_dir():
        return find_step_file(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"resume_from={str(resume_from)!r} does not exist; pass a checkpoint file or a folder "
            "of step-N.pt files."
        )
    return path


@dataclass
class TrainState:
    """Everything a training run mutates, shared by the step function and the callbacks."""

    model: PFNModel
    net: nn.Module  # the model, wrapped for DDP when running under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    model_config: ModelConfig
    training_config: TrainingConfig
    dist: DistributedContext
    step: int = 0
    start_step: int = 0
    data_config: Any = None
    last_metrics: dict[str, Any] = field(default_factory=dict)
    recent_losses: list[float] = field(default_factory=list)  # every step since the last log
    last_checkpoint: Path | None = None
    train_s: float = 0.0  # seconds of training in this call, compiling excluded
    compile_s: float = 0.0  # seconds the compiled step spent compiling / capturing
    # plain facts saved with every checkpoint (parent, prior, device, library version)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.dist.device


# Optimizer fields of the training config: a resumed run keeps them (its optimizer state fits
# no other optimizer); a checkpoint saved before "optimizer" existed was trained with AdamW.
OPTIMIZER_FIELDS = ("optimizer", "muon_scope", "muon_lr_ratio", "adamw_lr_ratio")
LEGACY_OPTIMIZER = {"optimizer": "adamw", "muon_scope": "mlp"}


def resumed_training_config(tc: TrainingConfig, saved: dict[str, Any] | None) -> TrainingConfig:
    """``tc`` with the optimizer fields of the checkpoint's own training config; a run saved
    before ``context_split`` existed goes on scoring every position (unless told otherwise)."""
    saved = saved or {}
    legacy = {**LEGACY_OPTIMIZER, **saved}
    keep = {k: legacy[k] for k in OPTIMIZER_FIELDS if k in legacy and legacy[k] != getattr(tc, k)}
    if "context_split" not in saved and tc.context_split == "auto":
        keep["context_split"] = "all"
    return dataclasses.replace(tc, **keep) if keep else tc


def resumed_model_config(passed: ModelConfig, saved: dict[str, Any], source: Path) -> ModelConfig:
    """The architecture a resumed run continues with: the checkpoint's own config.

    Fields the checkpoint stores must agree with ``passed`` (else the weights would not fit);
    fields it predates take their legacy values (``LEGACY_DEFAULTS``), so a run saved before a
    default changed resumes with the architecture it was trained with.
    """
    rebuilt = config_from_dict(saved)
    ours, theirs = passed.to_dict(), rebuilt.to_dict()
    clash = sorted(k for k in saved if k in ours and ours[k] != theirs[k])
    if clash:
        diffs = ", ".join(f"{k}={theirs[k]!r} (given {ours[k]!r})" for k in clash)
        raise ConfigError(
            f"resume_from={str(source)!r}: the checkpoint was trained with {diffs}; a resumed "
            "run keeps its architecture. Drop those model overrides, or start a new run."
        )
    return rebuilt


def build_state(
    model_config: ModelConfig,
    tc: TrainingConfig,
    dist: DistributedContext,
    *,
    resume_from: str | Path | None = None,
    data_config: Any = None,
    init: InitSource | None = None,
    freeze: list[str] | None = None,
) -> TrainState:
    """A fresh (or resumed) model, optimizer and schedule on ``dist.device``, RNG seeded.

    ``init`` (fine-tuning) copies a source model's weights into the fresh model; a resumed
    run takes its checkpoint's weights (and its architecture, see ``resumed_model_config``)
    instead. ``freeze`` stops gradients for those modules or parameters (also on resume, so
    the optimizer's parameter groups match).
    """
    payload = None
    last_checkpoint = None
    if resume_from is not None:
        last_checkpoint = resolve_resume(resume_from)
        payload = read_checkpoint(last_checkpoint)
        model_config = resumed_model_config(model_config, payload["model_config"], last_checkpoint)
        tc = resumed_training_config(tc, payload.get("training_config"))
    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    trained = max(model_config.trained_seq_len or 0, tc.seq_len)
    model = PFN(dataclasses.replace(model_config, trained_seq_len=trained))
    if init is not None and resume_from is None:
        apply_init(model, init)
    frozen = apply_freeze(model, freeze)
    model.to(dist.device)
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
    start_step = 0
    parent = None if init is None else init.parent
    if payload is not None:
        load_weights(model, payload["model_state"], f"resume_from={str(last_checkpoint)!r}")
        if payload.get("optimizer_state"):
            optimizer.load_state_dict(payload["optimizer_state"])
            if isinstance(optimizer, torch.optim.AdamW):  # older AdamW checkpoints: not fused
                for group in optimizer.param_groups:
                    group["fused"] = True
                    group["foreach"] = None
        if payload.get("scheduler_state"):
            scheduler.load_state_dict(payload["scheduler_state"])
        start_step = int(payload["step"])
        set_rng_state(payload.get("rng_state"))
        parent = parent or (payload.get("provenance") or {}).get("parent")
    else:
        torch.manual_seed(tc.seed + dist.rank)  # different data per rank, same init
    return TrainState(
        model=model,
        net=dist.wrap(model),
        optimizer=optimizer,
        scheduler=scheduler,
        model_config=model_config,
        training_config=tc,
        dist=dist,
        step=start_step,
        start_step=start_step,
        data_config=data_config,
        last_checkpoint=last_checkpoint,
        provenance={
            "parent": parent,
            "frozen": frozen,
            "device": str(dist.device),
            "world_size": dist.world_size,
        },
    )
