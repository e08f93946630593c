"""Compiling the training step without letting the compile eat the run.

Three measures, each answering a way a short GPU run used to train nothing (issue 23):

- **One compiled function per process.** The loss is a module-level function of
  ``(net, x, y, ...)`` compiled once per (mode, backend, dynamic); TorchDynamo lifts the
  parameters to graph inputs, so a second ``train()`` in the same process (a fresh model of
  the same shapes) reuses the graph instead of compiling again.
- **Compile caches on disk.** Inductor's FX-graph and AOTAutograd caches live in a user
  cache directory (``pfn_cache_dir()/inductor``) unless ``TORCHINDUCTOR_CACHE_DIR`` is set,
  so a second ``pfn train`` with the same shapes loads its kernels instead of rebuilding them.
- **"auto" compiles only where it pays.** It first runs ``PROBE_STEPS`` eager steps, then
  compiles only if the steps (or seconds) left, at the eager step time measured, save more
  than the compile is expected to cost (the last compile of the same signature recorded in
  ``compile_times.json``, else ``COLD_COMPILE_S``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..persistence.files import write_json_atomic

# H200, the spec's Example-1 step (d_model 128, 4 layers, seq 64, batch 32), torch 2.11:
# compiled ("reduce-overhead") 0.0109 s against 0.0195 s eager, after a 75.6 s cold compile.
COMPILED_STEP_RATIO = 0.56
COLD_COMPILE_S = 75.0
# eager steps "auto" times before deciding (the first ones also warm the allocator)
PROBE_STEPS = 20
COMPILE_TIMES_FILE = "compile_times.json"

_COMPILED: dict[tuple[str, str, bool], Callable[..., Tensor]] = {}


def pfn_cache_dir() -> Path:
    """Where compiled artifacts and compile timings live: ``$PFN_CACHE_DIR`` or the user
    cache directory (``~/.cache/pfn_transformers`` on Linux)."""
    configured = os.environ.get("PFN_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pfn_transformers"))


def use_compile_cache() -> Path:
    """Point Inductor's on-disk caches at the user cache directory (unless the user chose
    one with ``TORCHINDUCTOR_CACHE_DIR``); returns the directory in use. Inductor reads the
    variable when it first compiles, so this runs before every compile."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(pfn_cache_dir() / "inductor")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def training_loss(
    net: torch.nn.Module,
    x: Tensor | None,
    y: Tensor,
    n_context: int | None,
    bf16: bool,
    device_type: str,
    hyperparameters: dict[str, Tensor] | None = None,
) -> Tensor:
    """The mean training loss of one batch under the run's autocast; with ``n_context``,
    that of the points after the first n_context (``context_split``); ``hyperparameters``
    for models with ``condition_on`` (hidden values NaN)."""
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
        extra = {} if hyperparameters is None else {"hyperparameters": hyperparameters}
        if n_context is not None:
            return net(x, y, return_type="loss", n_context=n_context, **extra)
        return net(*((y,) if x is None else (x, y)), return_type="loss", **extra)


def compiled_training_loss(mode: str, *, dynamic: bool) -> Callable[..., Tensor]:
    """``training_loss`` compiled with ``mode``, shared by every run of this process."""
    backend = os.environ.get("PFN_COMPILE_BACKEND", "inductor")  # e.g. aot_eager in tests
    key = (mode, backend, dynamic)
    if key not in _COMPILED:
        if backend == "inductor":
            use_compile_cache()
        options = {"mode": mode} if backend == "inductor" else {}
        _COMPILED[key] = torch.compile(training_loss, backend=backend, dynamic=dynamic, **options)
    return _COMPILED[key]


def compile_pays(
    eager_step_s: float,
    steps_left: int,
    seconds_left: float | None,
    expected_compile_s: float,
) -> bool:
    """Whether compiling now finishes the run's work sooner (or trains more steps within
    its time limit) than staying eager, at ``COMPILED_STEP_RATIO`` of the eager step."""
    saved_per_step = (1.0 - COMPILED_STEP_RATIO) * eager_step_s
    if saved_per_step <= 0:
        return False
    eager_time = steps_left * eager_step_s
    if seconds_left is not None and seconds_left < eager_time:
        # time-bound: compiled trains (T - C) / (r e) steps against T / e eager
        return seconds_left - expected_compile_s > COMPILED_STEP_RATIO * seconds_left
    return steps_left * saved_per_step > expected_compile_s


def compile_signature(state: Any, mode: str) -> str:
    """What makes two compiles the same work: model config, batch shape, mode, device and
    torch version (the on-disk caches hit only then)."""
    tc = state.training_config
    device = state.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    parts = {
        "model": state.model_config.to_dict() if hasattr(state.model_config, "to_dict") else {},
        "batch_size": tc.batch_size,
        "seq_len": tc.seq_len,
        "precision": tc.precision,
        "context_split": tc.context_split,
        "mode": mode,
        "device": name,
        "torch": torch.__version__,
    }
    return json.dumps(parts, sort_keys=True, default=str)


def expected_compile_s(signature: str) -> float:
    """The last recorded compile time of ``signature`` (COLD_COMPILE_S if never seen)."""
    try:
        times = json.loads((pfn_cache_dir() / COMPILE_TIMES_FILE).read_text())
    except (OSError, ValueError):
        return COLD_COMPILE_S
    value = times.get(signature) if isinstance(times, dict) else None
    return float(value) if isinstance(value, int | float) else COLD_COMPILE_S


def record_compile_s(signature: str, seconds: float) -> None:
    """Remember how long ``signature`` took to compile (best effort: a read-only cache
    directory only costs the next "auto" decision its estimate)."""
    path = pfn_cache_dir() / COMPILE_TIMES_FILE
    try:
        times = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(times, dict):
            times = {}
        times[signature] = round(seconds, 3)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, times)
    except (OSError, ValueError):
        pass


__all__ = [
    "COLD_COMPILE_S",
    "COMPILED_STEP_RATIO",
    "PROBE_STEPS",
    "compile_pays",
    "compiled_training_loss",
    "pfn_cache_dir",
    "training_loss",
    "use_compile_cache",
]
