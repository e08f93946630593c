"""Quality at a long context: the PFN paper's Figure 4a prior at S = 512 (``bench_scaling.py
--quality``).

RBF GP with 5 features, lengthscale 0.6, noise variance 1e-4, outputscale 1, x ~ U[0,1]^5
(Müller et al. 2022, Figure 4a). Trained for a fixed wall-time budget with the library's
defaults (its step count set from a timed probe so the cosine schedule ends on time), then
scored with ``evaluate``: excess NLL against the exact GP posterior per context size n,
beside the bucket floor (the best the head's borders allow), so approximation and bucket
error are told apart.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers import priors as P
from pfn_transformers.evaluation import evaluate

POINTS = 512
MARKS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def figure4a_prior() -> P.GPPrior:
    return P.GPPrior(input_dim=5, lengthscale=0.6, outputscale=1.0, noise_var=1e-4,
                     x_low=0.0, x_high=1.0)  # fmt: skip


def _train(prior: Any, steps: int, device: str, batch: int, budget: float | None) -> Any:
    lo, hi = prior.suggested_y_range
    config = RegressionConfig(d_model=128, n_layers=4, n_heads=4, input_dim=5, d_vocab=256,
                              y_min=lo, y_max=hi)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainingConfig(
            batch_size=batch, seq_len=POINTS, num_steps=steps, learning_rate=1e-3,
            warmup_steps=max(1, steps // 10), log_every=max(1, steps // 10),
            save_checkpoint=False, checkpoint_dir=tmp, progress_bar=False, device=device,
            max_time_s=budget, compile=False,
        )  # fmt: skip
        return train(prior, config, tc)


def figure4a_quality(device: str, seconds: float, batch: int = 16) -> dict[str, Any]:
    prior = figure4a_prior()
    probes = []
    for n in (5, 15):  # differenced, so set-up and first-step costs cancel
        t0 = time.perf_counter()
        _train(prior, n, device, batch, None)
        probes.append(time.perf_counter() - t0)
    per_step = max(probes[1] - probes[0], 1e-6) / 10
    steps = max(10, int((seconds - probes[0]) / per_step + 5))
    t0 = time.perf_counter()
    model = _train(prior, steps, device, batch, seconds * 1.5)  # a cap, not the plan
    train_s = time.perf_counter() - t0
    res = evaluate(model, prior, num_datasets=128, seq_len=POINTS, batch_size=16)
    excess, floor = res["excess_nll"], res["floor_excess_nll"]
    return {
        "prior": "RBF GP, 5 features, lengthscale 0.6, noise var 1e-4, x~U[0,1]^5 (Fig. 4a)",
        "points": POINTS,
        "batch": batch,
        "steps": steps,
        "train_seconds": round(train_s, 1),
        "device": device,
        "excess_nll": excess["mean"],
        "excess_stderr": excess["stderr"],
        "floor_excess_nll": floor["mean"],
        "per_n": {str(n): excess["per_n"][n] for n in MARKS},
        "floor_per_n": {str(n): floor["per_n"][n] for n in MARKS},
        "per_n_all": excess["per_n"],
    }
