"""train(): checkpoints, resume, errors, evaluation during training, and that PFNs learn."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pfn_transformers import (
    PFN,
    DeterministicGenerator,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedBayesian,
    UnsupervisedConfig,
    checkpointing,
    train,
)
from pfn_transformers.bayes import Likelihood, Prior
from pfn_transformers.checkpointing import CheckpointError, CheckpointNotFoundError
from pfn_transformers.task import IncompatibleTaskError
from pfn_transformers.training import NonFiniteLossError, lr_factor

TINY = RegressionConfig(d_model=32, n_layers=2, n_heads=2, input_dim=1, d_vocab=20)


def linear_gen(input_dim=1, noise=0.1):
    return DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=lambda x, w: (w * x).sum(-1),
        input_dim=input_dim,
        noise_std=noise,
    )


def coin_gen():
    return UnsupervisedBayesian(
        prior=Prior(torch.distributions.Beta(1.0, 1.0)),
        likelihood=Likelihood(
            torch.distributions.Bernoulli, lambda p, x: {"probs": p.expand(x.shape[0])}, 1
        ),
    )


def tc(**kw):
    base = {"batch_size": 8, "seq_len": 12, "num_steps": 6, "log_every": 1, "progress_bar": False}
    return TrainingConfig(**{**base, **kw})


def read_metrics(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_resumed_run_follows_the_uninterrupted_trajectory(tmp_path):
    full = tc(
        num_steps=8,
        checkpoint_dir=str(tmp_path / "a"),
        save_every=4,
        metrics_path=str(tmp_path / "a.jsonl"),
    )
    train(linear_gen(), TINY, full)
    # a run that stops at step 4 (its own final checkpoint), then resumes to 8
    part = tc(
        num_steps=4, checkpoint_dir=str(tmp_path / "b"), metrics_path=str(tmp_path / "b.jsonl")
    )
    train(linear_gen(), TINY, part)
    resumed = tc(
        num_steps=8,
        checkpoint_dir=str(tmp_path / "b"),
        save_every=4,
        metrics_path=str(tmp_path / "b.jsonl"),
    )
    # the schedule must be the full run's: resume with the full config
    model = train(linear_gen(), TINY, resumed, resume_from=str(tmp_path / "b"))
    a = [m["loss"] for m in read_metrics(tmp_path / "a.jsonl")]
    b = [m["loss"] for m in read_metrics(tmp_path / "b.jsonl")]
    assert len(a) == len(b) == 8
    # first 4 steps ran under a shorter cosine schedule in run b; steps are compared after resume
    # only where the schedule agrees: warmup (500 steps) dominates both, so lrs are equal.
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    final_a, _, _ = checkpointing.load_checkpoint(tmp_path / "a" / "step-8.pt")
    for (k, va), vb in zip(final_a.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_checkpoint_is_plain_data_and_atomic(tmp_path):
    train(linear_gen(), TINY, tc(num_steps=4, save_every=2, checkpoint_dir=str(tmp_path / "ck")))
    path = tmp_path / "ck" / "step-4.pt"
    payload = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert payload["step"] == 4 and payload["model_config"]["kind"] == "regression"
    assert set(payload) >= {"optimizer_state", "scheduler_state", "rng_state", "training_config"}
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.endswith(".tmp")]
    model, opt, meta = checkpointing.load_checkpoint(path, load_optimizer=True)
    assert meta.step == 4 and opt is not None and meta.model_config == TINY


def test_step_lookup_is_exact_not_substring(tmp_path):
    model = PFN(TINY)
    for step in (5, 500, 5000):
        checkpointing.save_checkpoint(tmp_path / f"step-{step}.pt", step, model.state_dict(), TINY)
    assert checkpointing.find_checkpoint(tmp_path, 500).name == "step-500.pt"
    assert checkpointing.find_checkpoint(tmp_path).name == "step-5000.pt"
    with pytest.raises(
        CheckpointNotFoundError, match=r"no checkpoint for step 50 .*\[5, 500, 5000\]"
    ):
        checkpointing.find_checkpoint(tmp_path, 50)


def test_missing_truncated_and_foreign_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        checkpointing.load_checkpoint(tmp_path / "nope.pt")
    model = PFN(TINY)
    good = checkpointing.save_checkpoint(tmp_path / "good.pt", 1, model.state_dict(), TINY)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        checkpointing.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a pfn_transformers checkpoint"):
        checkpointing.load_checkpoint(foreign)
    with pytest.raises(CheckpointNotFoundError, match="resume_from="):
        train(linear_gen(), TINY, tc(), resume_from=str(tmp_path / "missing"))


def test_incompatible_generator_and_model_fail_before_training():
    with pytest.raises(
        IncompatibleTaskError,
        match="input_dim=1 but the data generator DeterministicGenerator produces x with input_dim=3",
    ):
        train(linear_gen(input_dim=3), TINY, tc())
    with pytest.raises(IncompatibleTaskError, match="unsupervised"):
        train(linear_gen(), UnsupervisedConfig(d_model=32, n_layers=1, d_vocab=2), tc())
    with pytest.raises(IncompatibleTaskError, match="discrete"):
        train(coin_gen(), UnsupervisedConfig(d_model=32, n_layers=1, input_type="continuous"), tc())


def nan_every(period: int | None):
    """A linear prior whose every ``period``-th training batch is NaN (None: every batch)."""

    class Poisoned(DeterministicGenerator):
        calls = 0

        def generate_batch(self, batch_size, seq_len):
            x, y = super().generate_batch(batch_size, seq_len)
            if batch_size == 8:  # training batches (tc() uses 8), not the probe
                Poisoned.calls += 1
                if period is None or Poisoned.calls % period == 0:
                    y = y * float("nan")
            return x, y

    return Poisoned(torch.distributions.Normal(0.0, 1.0), lambda x, w: (w * x).sum(-1), 1, 0.1)


def test_persistent_nan_losses_stop_with_a_clear_error_naming_the_last_checkpoint(tmp_path):
    ckpts = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError) as info:
        train(nan_every(None), TINY, tc(num_steps=40, save_every=5, checkpoint_dir=str(ckpts)))
    msg = str(info.value)
    assert "stopped at step 10: 10 step(s) in a row" in msg
    assert f"last good checkpoint is {ckpts / 'step-5.pt'}" in msg
    model, _, meta = checkpointing.load_checkpoint(ckpts / "step-5.pt")
    assert meta.step == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_run_whose_every_step_is_non_finite_fails_at_the_end(tmp_path):
    with pytest.raises(FloatingPointError, match="6 in all had a non-finite loss"):
        train(nan_every(None), TINY, tc(checkpoint_dir=str(tmp_path / "c")))


def test_occasional_non_finite_batches_are_skipped_and_counted(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    model = train(
        nan_every(7),
        TINY,
        tc(num_steps=40, log_every=10, metrics_path=str(metrics), checkpoint_dir=str(tmp_path)),
    )
    records = read_metrics(metrics)
    assert [r["skipped_steps"] for r in records] == [1, 2, 4, 5]  # batches 7, 14, 21, 28, 35
    assert all(r["loss_avg"] is not None and math.isfinite(r["loss_avg"]) for r in records)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    _, opt_state, meta = checkpointing.load_checkpoint(tmp_path / "step-40.pt", load_optimizer=True)
    steps = {int(s["step"]) for s in opt_state["state"].values()}
    assert steps == {35}  # AdamW counted only the 35 real updates


def test_keyboard_interrupt_saves_a_resumable_checkpoint(tmp_path):
    class InterruptAt3(DeterministicGenerator):
        calls = 0

        def generate_batch(self, batch_size, seq_len):
            InterruptAt3.calls += batch_size == 8  # count training batches, not the probe
            if InterruptAt3.calls == 4:
                raise KeyboardInterrupt
            return super().generate_batch(batch_size, seq_len)

    gen = InterruptAt3(torch.distributions.Normal(0.0, 1.0), lambda x, w: (w * x).sum(-1), 1, 0.1)
    with pytest.raises(KeyboardInterrupt):
        train(gen, TINY, tc(checkpoint_dir=str(tmp_path / "int")))
    assert checkpointing.find_checkpoint(tmp_path / "int").name == "step-3.pt"
    train(
        linear_gen(),
        TINY,
        tc(checkpoint_dir=str(tmp_path / "int")),
        resume_from=str(tmp_path / "int"),
    )
    assert checkpointing.find_checkpoint(tmp_path / "int").name == "step-6.pt"


def test_eval_during_training_and_metrics_file(tmp_path):
    metrics = tmp_path / "m.jsonl"
    train(
        linear_gen(), TINY,
        tc(num_steps=4, log_every=2, eval_every=2, eval_batches=2, save_checkpoint=False, metrics_path=str(metrics)),
        eval_data_generator=linear_gen(noise=0.5),
    )  # fmt: skip
    records = read_metrics(metrics)
    evals = [r for r in records if "eval_loss" in r]
    logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(math.isfinite(r["eval_mse"]) for r in evals)
    assert [r["step"] for r in logs] == [2, 4] and all(r["seq_per_s"] > 0 for r in logs)
    assert 0 <= logs[-1]["data_share"] <= 1


def test_learning_rate_schedule_warmup_then_cosine():
    cfg = TrainingConfig(num_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    const = TrainingConfig(num_steps=100, use_warmup=False, lr_schedule="constant")
    assert lr_factor(0, const) == lr_factor(99, const) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"lr_schedule": "linear"}, "lr_schedule='linear'"),
        ({"precision": "fp16"}, "precision='fp16'"),
        ({"eval_every": -1}, "eval_every=-1"),
        ({"wandb_mode": "sometimes"}, "wandb_mode='sometimes'"),
    ],
)
def test_training_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


def coin_exact_nll(y):
    """Exact Beta(1,1)-Bernoulli posterior predictive NLL per position."""
    ones_before = torch.cumsum(y, 1) - y
    n = torch.arange(y.shape[1])
    p1 = (1 + ones_before) / (2 + n)
    return -torch.where(y == 1, p1, 1 - p1).log()


def test_coin_flip_pfn_gets_within_005_nats_of_exact_posterior():
    torch.manual_seed(0)
    cfg = UnsupervisedConfig(d_model=64, n_layers=2, n_heads=4, input_type="discrete", d_vocab=2)
    model = train(
        coin_gen(), cfg,
        TrainingConfig(batch_size=64, seq_len=32, num_steps=300, learning_rate=3e-3, warmup_steps=30,
                       log_every=100, save_checkpoint=False, progress_bar=False),
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(123)
        _, y = coin_gen().generate_batch(2048, 32)
    with torch.no_grad():
        pfn_nll = -model.log_prob(model(y), y)
    excess = (pfn_nll - coin_exact_nll(y.float())).mean().item()
    assert excess < 0.05, f"excess NLL {excess:.4f} nats"


def test_linear_regression_pfn_beats_the_prior_predictive():
    torch.manual_seed(0)
    cfg = RegressionConfig(
        d_model=64, n_layers=2, n_heads=4, input_dim=1, d_vocab=50, y_min=-4, y_max=4
    )
    model = train(
        linear_gen(), cfg,
        TrainingConfig(batch_size=64, seq_len=20, num_steps=250, learning_rate=3e-3, warmup_steps=25,
                       log_every=50, save_checkpoint=False, progress_bar=False),
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(7)
        x, y = linear_gen().generate_batch(1024, 20)
    with torch.no_grad():
        nll = -model.log_prob(model(x, y), y)
    # exact prior predictive of this generator: y | x ~ N(0, x^2 + 0.1^2)
    prior_nll = -torch.distributions.Normal(0.0, (x[..., 0] ** 2 + 0.01).sqrt()).log_prob(y)
    late, prior = nll[:, 10:].mean().item(), prior_nll[:, 10:].mean().item()
    assert late < prior - 0.5, (late, prior)


@pytest.mark.slow
def test_ddp_two_process_gloo_run(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(
        textwrap.dedent(f"""
        import torch
        from pfn_transformers import DeterministicGenerator, RegressionConfig, TrainingConfig, train
        gen = DeterministicGenerator(torch.distributions.Normal(0.0, 1.0), lambda x, w: (w * x).sum(-1), 1, 0.1)
        cfg = RegressionConfig(d_model=32, n_layers=1, n_heads=2, input_dim=1, d_vocab=20)
        train(gen, cfg, TrainingConfig(batch_size=8, seq_len=8, num_steps=6, log_every=2, device="cpu",
              progress_bar=False, checkpoint_dir={str(tmp_path / "ck")!r}, metrics_path={str(tmp_path / "m.jsonl")!r}))
    """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", str(script)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpointing.find_checkpoint(tmp_path / "ck").name == "step-6.pt"
    lines = read_metrics(tmp_path / "m.jsonl")
    assert [r["step"] for r in lines] == [2, 4, 6]  # rank 0 alone writes


# ----------------------------------------------------------------------------- compiled step
def test_compile_setting_picks_the_mode_per_device():
    from pfn_transformers.training.step import compile_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compile_mode("auto", cpu) is None and compile_mode(False, cuda) is None
    assert compile_mode("auto", cuda) == "reduce-overhead"
    assert compile_mode(True, cpu) == "default" and compile_mode(True, cuda) == "reduce-overhead"
    assert compile_mode("max-autotune", cpu) == "max-autotune"
    with pytest.raises(ValueError, match="compile='fast' is not valid"):
        TrainingConfig(compile="fast")


def _losses_and_weights(tmp_path, name, **kw):
    metrics = tmp_path / f"{name}.jsonl"
    model = train(
        linear_gen(),
        TINY,
        tc(metrics_path=str(metrics), checkpoint_dir=str(tmp_path / name), precision="fp32", **kw),
    )
    return [r["loss"] for r in read_metrics(metrics)], model.state_dict()


def test_compiled_step_follows_the_eager_trajectory(tmp_path, monkeypatch):
    monkeypatch.setenv("PFN_COMPILE_BACKEND", "aot_eager")  # dynamo + AOTAutograd, no codegen
    torch._dynamo.reset()
    eager, w_eager = _losses_and_weights(tmp_path, "eager", compile=False)
    compiled, w_compiled = _losses_and_weights(tmp_path, "compiled", compile=True)
    assert compiled == pytest.approx(eager, abs=1e-5)
    for key, value in w_eager.items():
        torch.testing.assert_close(w_compiled[key], value, atol=1e-5, rtol=1e-4)


def test_hooked_models_take_the_eager_step(monkeypatch):
    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    monkeypatch.setenv("PFN_COMPILE_BACKEND", "aot_eager")
    state = build_state(TINY, tc(compile=True), DistributedContext.from_env(torch.device("cpu")))
    step = TrainStep(state)
    assert step.compiled_loss is not None

    def refuse(*args):
        raise AssertionError("the compiled loss ran while a hook was attached")

    step.compiled_loss = refuse
    patterns = []
    hook = ("blocks.0.attn.hook_pattern", lambda p, hook: patterns.append(p.shape))
    x, y = linear_gen().generate_batch(8, 12)
    with state.model.hooks(fwd_hooks=[hook]):
        loss = step(x, y)
    assert torch.isfinite(loss) and len(patterns) == 1


@pytest.mark.slow
def test_inductor_compiled_step_on_cpu(tmp_path):
    torch._dynamo.reset()
    eager, _ = _losses_and_weights(tmp_path, "eager", compile=False)
    compiled, _ = _losses_and_weights(tmp_path, "compiled", compile=True)
    assert compiled == pytest.approx(eager, abs=1e-4)


def test_compiled_step_is_one_graph_without_breaks_or_recompiles(monkeypatch):
    from torch._dynamo.utils import counters

    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    monkeypatch.setenv("PFN_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    state = build_state(
        TINY, tc(compile=True, precision="auto"), DistributedContext.from_env(torch.device("cpu"))
    )
    step = TrainStep(state)
    x, y = linear_gen().generate_batch(8, 12)
    for _ in range(4):
        step(x, y)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1


def test_one_checkpoint_not_found_error_for_local_and_wandb_lookups():
    from pfn_transformers import wandb as pw

    assert pw.CheckpointNotFoundError is CheckpointNotFoundError
    assert issubclass(CheckpointNotFoundError, FileNotFoundError | LookupError)
