"""The continuous tasks that ``bench_peer.py`` and ``bench_ablation.py`` train and score.

Each task is a prior with an exact Gaussian posterior predictive, a sequence length and a
y range. ``SharedStream`` makes two libraries see the *same* training batches: batch k of a
run is drawn from a generator seeded with ``(seed, k)``, whichever library asks for it.
Scoring is the paired excess NLL against the exact predictive, per context size n.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers import priors as P


class NormalXLinear(P.LinearRegressionPrior):
    """Bayesian linear regression with x ~ N(0, I) (the bench-user task), exact predictive
    inherited (it conditions on whatever x was drawn)."""

    def generate_batch(self, batch_size: int, seq_len: int, device=None) -> tuple[Tensor, Tensor]:
        x = torch.randn(batch_size, seq_len, self.input_dim, device=device)
        phi = self.featurize(x)
        w = torch.randn(batch_size, 1, self.num_features, device=device)
        w = w * self.prior_variances(device=device).sqrt()
        y = (phi * w).sum(-1) + self.noise_std * torch.randn(batch_size, seq_len, device=device)
        return x, y


@dataclass
class Task:
    """A continuous prior with an exact predictive, and how it is trained."""

    name: str
    title: str
    prior: Any
    seq_len: int

    @property
    def input_dim(self) -> int:
        return self.prior.input_dim

    @property
    def y_range(self) -> tuple[float, float]:
        """Our bucket range: the prior's ``suggested_y_range``, as the CLI sets it."""
        return self.prior.suggested_y_range


TASKS: dict[str, Task] = {
    "gp": Task(
        "gp",
        "GP 1-D (RBF l=0.2, noise var 0.01, x~U[0,1])",
        P.GPPrior(lengthscale=0.2, noise_var=0.01, x_low=0.0, x_high=1.0),
        seq_len=20,
    ),
    "linear": Task(
        "linear",
        "linear 1-D (w,b~N(0,1), noise 0.1, x~N(0,1))",
        NormalXLinear(input_dim=1, weight_std=1.0, bias=True, bias_std=1.0, noise_std=0.1),
        seq_len=20,
    ),
    "blr3": Task(
        "blr3",
        "BLR 3 features (w~N(0,I), b~N(0,1), noise 0.1, x~N(0,I))",
        NormalXLinear(input_dim=3, weight_std=1.0, bias=True, bias_std=1.0, noise_std=0.1),
        seq_len=20,
    ),
    "gp2": Task(
        "gp2",
        "GP 2-D (RBF l=0.4, noise var 0.01, x~U[0,1]^2)",
        P.GPPrior(input_dim=2, lengthscale=0.4, noise_var=0.01, x_low=0.0, x_high=1.0),
        seq_len=20,
    ),
}


class SharedStream:
    """A prior whose k-th training batch (of ``batch_size`` rows) is fixed by ``(seed, k)``.

    Batches of another size (a library's shape probe) are drawn from the same seed space
    but do not advance the counter, so the training batches stay aligned across libraries.
    The caller's global random state is left untouched.
    """

    def __init__(self, prior: Any, batch_size: int, seed: int) -> None:
        self.prior = prior
        self.batch_size = batch_size
        self.seed = seed
        self.count = 0
        self.input_dim = prior.input_dim
        self.target_type = "continuous"
        self.num_classes = None

    def generate_batch(self, batch_size: int, seq_len: int, device=None) -> tuple[Tensor, Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(
                self.seed * 1_000_003 + (self.count if batch_size == self.batch_size else -1)
            )
            x, y = self.prior.generate_batch(batch_size, seq_len)
        if batch_size == self.batch_size:
            self.count += 1
        return x.to(device) if device is not None else x, y.to(device) if device is not None else y


def heldout(task: Task, num_datasets: int, seed: int = 1234) -> tuple[Tensor, Tensor]:
    """The held-out datasets every library is scored on."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.prior.generate_batch(num_datasets, task.seq_len)


def exact_log_predictive(task: Task, x: Tensor, y: Tensor) -> Tensor:
    """log p_exact(y_n | D_<n) [B, S], float64."""
    return task.prior.exact_log_predictive(x, y).double()


def summarize(excess: Tensor) -> dict[str, Any]:
    """Mean excess NLL over positions and datasets, its standard error over datasets, and
    the per-context-size means. ``excess`` is [datasets, positions]."""
    per_dataset = excess.mean(1)
    n = per_dataset.numel()
    return {
        "excess_nll": per_dataset.mean().item(),
        "stderr": per_dataset.std().item() / math.sqrt(n),
        "per_n": excess.mean(0).tolist(),
        "per_n_stderr": (excess.std(0) / math.sqrt(n)).tolist(),
    }


def add_shape_args(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """The options ``train_ours`` reads (shape, batch, schedule, buckets, seed), with the
    peer benchmark's settings as defaults; ``defaults`` (dest names) override them."""
    settings = {
        "batch_size": (int, 64),
        "d_model": (int, 64),
        "n_layers": (int, 2),
        "n_heads": (int, 4),
        "lr": (float, 1e-3),
        "warmup": (int, 100),
        "weight_decay": (float, 0.0),
        "buckets": (int, 256),
        "seed": (int, 0),
    }
    unknown = set(defaults) - set(settings)
    if unknown:
        raise ValueError(f"add_shape_args: unknown settings {sorted(unknown)}")
    for dest, (kind, value) in settings.items():
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, type=kind, default=defaults.get(dest, value))


def train_ours(
    task: Task,
    stream: SharedStream,
    args: argparse.Namespace,
    steps: int,
    model_fields: dict[str, Any] | None = None,
    train_fields: dict[str, Any] | None = None,
) -> tuple[Any, float]:
    """pfn-transformers on ``stream`` at the benchmark's shape and schedule (``args``: d_model,
    n_layers, n_heads, buckets, batch_size, lr, warmup, weight_decay, seed), the library's
    defaults otherwise; ``model_fields`` / ``train_fields`` override config fields.
    Returns the model in eval mode and its training seconds."""
    config = RegressionConfig(
        **{
            "d_model": args.d_model,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "input_dim": task.input_dim,
            "d_vocab": args.buckets,
            "y_min": task.y_range[0],
            "y_max": task.y_range[1],
            **(model_fields or {}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainingConfig(
            **{
                "batch_size": args.batch_size,
                "seq_len": task.seq_len,
                "num_steps": steps,
                "learning_rate": args.lr,
                "warmup_steps": args.warmup,
                "weight_decay": args.weight_decay,
                "log_every": max(1, steps // 10),
                "save_checkpoint": False,
                "checkpoint_dir": tmp,
                "progress_bar": False,
                "seed": args.seed,
                **(train_fields or {}),
            }
        )
        t0 = time.perf_counter()
        model = train(stream, config, tc)
        return model.eval(), time.perf_counter() - t0
