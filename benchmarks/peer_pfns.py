"""automl/PFNs (``pfns`` on PyPI) as a peer: train it on a task's ``SharedStream`` and score it.

Imported by ``bench_peer.py`` only inside the peer environment (``make bench-peer`` creates
``.venv-peer`` with ``pfns`` pinned); the default install never sees this package.

pfns' own recipe, as its README example and defaults give it: ``TableTransformer`` (per-feature
tokens with attention between features, ``features_per_group=1``), linear x and y encoders,
zero-initialised residual branches, an MLP decoder, a full-support bar distribution with
quantile borders estimated from prior draws, AdamW with cosine decay to zero after a linear
warmup, bf16 autocast on CPU. Training sequences are split at a uniformly drawn
``single_eval_pos``; the loss is on the points after it. Width, depth, heads, batch, steps,
learning rate and warmup are the benchmark's, equal to ours. Data loading runs in-process
(``num_workers=0``), as ours does: on 2 cores worker processes only compete for them.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any

import torch
from pfns.batch_shape_sampler import BatchShapeSamplerConfig
from pfns.model import bar_distribution
from pfns.optimizer import OptimizerConfig
from pfns.priors.prior import AdhocPriorConfig, Batch
from pfns.train import MainConfig, TransformerConfig
from pfns.train import train as pfns_train

STEPS_PER_EPOCH = 10  # pfns steps its schedule once per epoch: small epochs keep it smooth


def _get_batch_from(stream: Any):
    def get_batch(batch_size: int, seq_len: int, num_features: int, **_: Any) -> Batch:
        x, y = stream.generate_batch(batch_size, seq_len)
        return Batch(x=x, y=y, target_y=y.clone())

    return get_batch


def borders_from_prior(prior: Any, seq_len: int, num_buckets: int) -> torch.Tensor:
    """pfns' quantile borders from 100k prior targets (its README recipe)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4321)
        _, ys = prior.generate_batch(max(1, 100_000 // seq_len), seq_len)
    return bar_distribution.get_bucket_borders(num_buckets, ys=ys.flatten())


def train_peer(
    stream: Any,
    *,
    seq_len: int,
    num_buckets: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    batch_size: int,
    num_steps: int,
    learning_rate: float,
    warmup_steps: int,
    weight_decay: float,
    device: str = "cpu",
) -> tuple[torch.nn.Module, float]:
    """A trained pfns model and its training seconds (the whole ``pfns.train`` call)."""
    borders = borders_from_prior(stream.prior, seq_len, num_buckets)
    epochs = max(1, num_steps // STEPS_PER_EPOCH)
    config = MainConfig(
        priors=[AdhocPriorConfig(get_batch_methods=_get_batch_from(stream), prior_kwargs={})],
        optimizer=OptimizerConfig("adamw", lr=learning_rate, weight_decay=weight_decay),
        scheduler="cosine_decay",
        warmup_epochs=max(0, round(warmup_steps / STEPS_PER_EPOCH)),
        model=TransformerConfig(
            criterion=bar_distribution.BarDistributionConfig(borders.tolist(), full_support=True),
            emsize=d_model,
            nhead=n_heads,
            nhid=4 * d_model,
            nlayers=n_layers,
        ),
        batch_shape_sampler=BatchShapeSamplerConfig(
            batch_size=batch_size,
            max_seq_len=seq_len,
            min_num_features=stream.input_dim,
            max_num_features=stream.input_dim,
        ),
        epochs=epochs,
        steps_per_epoch=STEPS_PER_EPOCH,
        num_workers=0,
        verbose=False,
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = pfns_train(config, device=device, reusable_config=False)
    return result["model"].eval(), time.perf_counter() - t0


@torch.no_grad()
def log_predictive(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y_n | D_<n) [B, S] for every n: one call per context size, reading the first
    test position (pfns conditions on the points before ``single_eval_pos``)."""
    criterion = model.criterion
    out = []
    for n in range(y.shape[1]):
        logits = model(x=x[:, : n + 1], y=y[:, :n], only_return_standard_out=True)
        out.append(-criterion(logits[:, :1].float(), y[:, n : n + 1]).squeeze(1))
    return torch.stack(out, dim=1)


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
