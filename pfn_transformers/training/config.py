"""``TrainingConfig``: every field of the spec's table plus a few documented extras."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("muon", "adamw")
MUON_SCOPES = ("mlp", "attention")  # which weights Muon steps (training/optim.py)
PRECISIONS = ("auto", "fp32", "bf16")
CONTEXT_SPLITS = ("auto", "all", "random")  # how a supervised batch is scored (class doc)
# context_split="auto" takes "random" from this sequence length on: at S=1,024 it reached
# 0.83x the excess NLL of "all" in equal time, at S=256 1.43x (`make bench-context-split`)
RANDOM_SPLIT_FROM = 1024
# torch.compile modes accepted by TrainingConfig.compile besides True / False / "auto"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
WANDB_MODES = (None, "online", "offline", "disabled")
# device strings TrainingConfig accepts (whether the device is present is checked by train())
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")
DEVICES_HINT = "'auto', 'cpu', 'cuda', 'cuda:N', 'mps', 'xpu' or 'xpu:N'"


@dataclass
class TrainingConfig:
    """How to train. The extras beyond the spec:

    seed: seeds model init and data (a DDP run seeds each rank's draws at each step from
        (seed, rank, step), so ranks draw independently and a resumed run exactly).
    optimizer: "muon" (default) = Muon on the hidden weight matrices at
        ``muon_lr_ratio * learning_rate`` and fused AdamW on the other parameters at
        ``adamw_lr_ratio * learning_rate``; "adamw" = fused AdamW on everything at
        ``learning_rate`` (see ``training/optim.py`` and the README for the measurements).
    muon_scope: the matrices Muon steps: "attention" (default) = the 2-D hidden matrices and
        the attention weights; "mlp" = the 2-D ones alone (checkpoints without the field).
    lr_schedule: after warmup, "cosine" decays to ``min_lr_ratio * learning_rate``;
        "constant" keeps it.
    precision: "auto" = bf16 autocast where bf16 matmuls are native (CUDA with bf16, CPUs
        with AMX or AVX512-BF16), fp32 elsewhere; "bf16" forces autocast; "fp32" disables it.
    compile: compile the training step with torch.compile. "auto" = on CUDA (with CUDA
        graphs, mode "reduce-overhead") when it pays: after 20 timed eager steps it compiles
        only if the steps (or seconds) left save more than the compile is expected to take
        (the last compile of the same shapes, else 75 s); off elsewhere (on 2 CPU cores a
        compiled step won 8% after a minute of compiling). True / False force it; a
        torch.compile mode string ("default", "reduce-overhead", ...) picks the mode.
        Compiling never counts against ``max_time_s``; its seconds are reported
        (``compile_s`` in metrics, status.json, the summary). Compiled kernels are cached
        on disk (``$PFN_CACHE_DIR``, default the user cache directory, unless
        ``TORCHINDUCTOR_CACHE_DIR`` is set), so a second run with the same shapes starts
        within seconds. Steps run uncompiled while hooks are attached to the model.
    tf32: on CUDA, fp32 matmuls use TF32 tensor cores while ``train()`` runs
        (``torch.set_float32_matmul_precision("high")``, restored afterwards); False keeps
        full fp32. bf16-autocast matmuls and CPU runs are unaffected.
    progress_bar: Rich progress bar on rank 0.
    metrics_path: JSONL file receiving one line per log step and per evaluation.
    max_time_s: stop (and checkpoint) after this many seconds of training (compiling
        excluded). A run it stops inside its warmup or before 10% of ``num_steps`` warns
        (``ShortTrainingWarning``) and says so in its summary.
    wandb_mode: "online" | "offline" | "disabled"; None reads WANDB_MODE (default online).
    context_split: how a supervised batch is scored. "all" = every position i given the i
        points before it, all context sizes in one pass over 2S+1 tokens; "random" =
        automl/PFNs' recipe: one context size n ~ U{0..S-1} per step, the first n points as
        context and the loss on the S-n others, one pass over S+1 tokens; "auto" (default)
        = "random" from seq_len 1,024 on, "all" below, where each won per training second
        (``make bench-context-split``; docs/guides/long-contexts.md). Unsupervised models always
        score every position. A resumed run saved before this field keeps "all".
    """

    batch_size: int = 32
    seq_len: int = 64
    num_steps: int = 10000
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    use_warmup: bool = True
    warmup_steps: int = 500
    use_grad_clip: bool = True
    grad_clip: float = 1.0
    log_every: int = 100
    save_checkpoint: bool = True
    save_every: int = 1000
    checkpoint_dir: str = "checkpoints"
    eval_every: int | None = None
    eval_batches: int = 10
    device: str = "auto"
    use_wandb: bool = False
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_run_name: str | None = None
    wandb_log_model: bool = True
    wandb_tags: list[str] | None = None
    wandb_notes: str | None = None
    wandb_mode: str | None = None
    seed: int = 0
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    optimizer: str = "muon"
    muon_scope: str = "attention"
    muon_lr_ratio: float = 4.0
    adamw_lr_ratio: float = 3.0
    precision: str = "auto"
    compile: bool | str = "auto"
    tf32: bool = True
    progress_bar: bool = True
    metrics_path: str | None = None
    max_time_s: float | None = None
    context_split: str = "auto"

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "seq_len",
            "num_steps",
            "log_every",
            "save_every",
            "eval_batches",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"TrainingConfig.{name}={value!r} is not valid; it must be a positive int."
                )
        if self.eval_every is not None and (
            not isinstance(self.eval_every, int) or self.eval_every <= 0
        ):
            raise ValueError(
                f"TrainingConfig.eval_every={self.eval_every!r} is not valid; use a positive int or None."
            )
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(
                f"TrainingConfig.warmup_steps={self.warmup_steps!r} is not valid; it must be an int >= 0."
            )
        if not self.learning_rate > 0:
            raise ValueError(
                f"TrainingConfig.learning_rate={self.learning_rate!r} is not valid; it must be > 0."
            )
        if self.weight_decay < 0:
            raise ValueError(
                f"TrainingConfig.weight_decay={self.weight_decay!r} is not valid; it must be >= 0."
            )
        if self.use_grad_clip and not self.grad_clip > 0:
            raise ValueError(
                f"TrainingConfig.grad_clip={self.grad_clip!r} is not valid; it must be > 0."
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"TrainingConfig.min_lr_ratio={self.min_lr_ratio!r} is not valid; use a value in [0, 1]."
            )
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(
                f"TrainingConfig.max_time_s={self.max_time_s!r} is not valid; use a value > 0 or None."
            )
        for name in ("muon_lr_ratio", "adamw_lr_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"TrainingConfig.{name}={value!r} is not valid; it must be > 0.")
        for name, value, valid in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("muon_scope", self.muon_scope, MUON_SCOPES),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("precision", self.precision, PRECISIONS),
            ("wandb_mode", self.wandb_mode, WANDB_MODES),
            ("context_split", self.context_split, CONTEXT_SPLITS),
        ):
            if value not in valid:
                raise ValueError(
                    f"TrainingConfig.{name}={value!r} is not valid; choose one of {list(valid)}."
                )
        if not isinstance(self.tf32, bool):
            raise ValueError(f"TrainingConfig.tf32={self.tf32!r} is not valid; use True or False.")
        if self.compile not in (True, False, "auto", *COMPILE_MODES):
            raise ValueError(
                f"TrainingConfig.compile={self.compile!r} is not valid; use True, False, 'auto' "
                f"or a torch.compile mode {list(COMPILE_MODES)}."
            )
        if hasattr(self.device, "type"):  # a torch.device
            self.device = str(self.device)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise ValueError(
                f"TrainingConfig.device={self.device!r} is not valid; use {DEVICES_HINT} "
                "('auto' picks cuda > mps > cpu)."
            )
        if self.wandb_tags is not None:
            self.wandb_tags = [str(t) for t in self.wandb_tags]

    @property
    def splits_context(self) -> bool:
        """Whether supervised steps score one random context/query split (see the doc)."""
        if self.context_split == "auto":
            return self.seq_len >= RANDOM_SPLIT_FROM
        return self.context_split == "random"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"TrainingConfig got unknown fields {unknown}; valid fields are {sorted(known)}."
            )
        return cls(**data)
