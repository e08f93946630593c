"""train(): checkpoints, resume, errors, evaluation during training, and that PFNs learn."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
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
from pfn_transformers.training.optim import make_optimizer

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


def moving(**kw):
    """A schedule under which a few steps move the weights: learning rate 1e-3, no warmup,
    cosine decay over the run, fp32 (a CPU path that is deterministic bit for bit)."""
    base = {"learning_rate": 1e-3, "use_warmup": False, "lr_schedule": "cosine"}
    return tc(**{**base, "precision": "fp32", **kw})


def assert_same_tensors(a, b, where="") -> None:
    """Nested dicts/lists of tensors and numbers are equal, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (va, vb) in enumerate(zip(a, b)):
            assert_same_tensors(va, vb, f"{where}/{i}")
    else:
        assert a == b, where


def test_resumed_run_follows_the_uninterrupted_trajectory(tmp_path):
    full = moving(
        num_steps=8,
        save_every=4,
        checkpoint_dir=str(tmp_path / "a"),
        metrics_path=str(tmp_path / "a.jsonl"),
    )
    model_a = train(linear_gen(), TINY, full)
    # resume the full run's own mid-run checkpoint (step 4, in the cosine decay) elsewhere
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "a" / "step-4.pt", tmp_path / "b" / "step-4.pt")
    resumed = dataclasses.replace(
        full, checkpoint_dir=str(tmp_path / "b"), metrics_path=str(tmp_path / "b.jsonl")
    )
    model_b = train(linear_gen(), TINY, resumed, resume_from=str(tmp_path / "b"))

    a, b = read_metrics(tmp_path / "a.jsonl"), read_metrics(tmp_path / "b.jsonl")
    lrs = [r["lr"] for r in a]
    # every step has its own, falling learning rate: the resume is mid-decay, and a schedule
    # resumed at the wrong step would show
    assert lrs == sorted(lrs, reverse=True) and len(set(lrs)) == len(lrs)
    assert [r["step"] for r in b] == [5, 6, 7, 8]
    # same losses and learning rates after the resume, bit for bit
    assert [(r["loss"], r["lr"]) for r in b] == [(r["loss"], r["lr"]) for r in a[4:]]
    at_4, _, _ = checkpointing.load_checkpoint(tmp_path / "a" / "step-4.pt")
    moved = max(
        (v - at_4.state_dict()[k]).abs().max().item() for k, v in model_a.state_dict().items()
    )
    assert moved > 1e-4  # the last 4 steps changed the weights: the comparison below can fail
    assert_same_tensors(model_a.state_dict(), model_b.state_dict(), "model")
    end_a = torch.load(tmp_path / "a" / "step-8.pt", weights_only=True)
    end_b = torch.load(tmp_path / "b" / "step-8.pt", weights_only=True)
    for part in ("optimizer_state", "scheduler_state", "rng_state"):
        assert_same_tensors(end_a[part], end_b[part], part)


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
    adamw = opt_state["adamw"]  # the default optimizer: Muon + AdamW
    steps = {int(s["step"]) for s in adamw["state"].values()}
    assert steps == {35}  # AdamW counted only the 35 real updates


@pytest.mark.parametrize(
    ("num_steps", "period", "stop_step", "skipped", "limit"),
    [
        (200, 3, 33, 11, 10),  # 1% of 200 is 2: the floor of 10 applies; the 11th skip stops
        (1500, 7, 112, 16, 15),  # 1% of 1500 is 15: the 16th skip (batch 112) stops
    ],
    ids=["floor-of-10", "one-percent"],
)
def test_scattered_non_finite_steps_stop_the_run_past_max_10_or_1_percent(
    tmp_path, num_steps, period, stop_step, skipped, limit
):
    """Never 10 in a row, yet too many in all: the share limit, not the streak, stops it."""
    ckpts = tmp_path / "ck"
    with pytest.raises(NonFiniteLossError) as info:
        train(
            nan_every(period),
            TINY,
            tc(num_steps=num_steps, log_every=500, save_every=30, checkpoint_dir=str(ckpts)),
        )
    msg = str(info.value)
    assert (
        f"stopped at step {stop_step}: 1 step(s) in a row and {skipped} in all had a "
        f"non-finite loss or gradient (limit: 10 in a row or {limit} in all)"
    ) in msg, msg
    last_save = stop_step // 30 * 30
    assert f"last good checkpoint is {ckpts / f'step-{last_save}.pt'}" in msg


def optimizer_moments(optimizer) -> dict:
    """The per-parameter state (moments, momentum buffers, step counts) of an optimizer,
    without its param_groups (the schedule changes their lr every step, skipped or not)."""
    sd = optimizer.state_dict()
    return {k: v["state"] for k, v in sd.items()} if "muon" in sd else sd["state"]


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_a_finite_loss_with_a_non_finite_gradient_skips_the_update(optimizer):
    from pfn_transformers.training.distributed import DistributedContext
    from pfn_transformers.training.state import build_state
    from pfn_transformers.training.step import TrainStep

    cfg = moving(optimizer=optimizer)
    state = build_state(TINY, cfg, DistributedContext.from_env(torch.device("cpu")))
    step = TrainStep(state)
    poisoned = [False]
    # an inf in one weight's gradient, as a numerically unstable backward would produce
    w_q = state.model.blocks[0].attn.W_Q
    w_q.register_hook(lambda g: g * math.inf if poisoned[0] else g)
    x, y = linear_gen().generate_batch(8, 12)
    step(x, y)
    before = copy.deepcopy(state.model.state_dict())
    moments = copy.deepcopy(optimizer_moments(state.optimizer))
    assert (len(moments["muon"]) and len(moments["adamw"])) if optimizer == "muon" else moments
    poisoned[0] = True
    loss = step(x, y)
    assert torch.isfinite(loss)  # the loss is fine: only the gradient check can catch this
    assert step.stats.read()["skipped"] == 1 and step.stats.read()["skipped_in_a_row"] == 1
    assert_same_tensors(state.model.state_dict(), before, "weights")
    assert_same_tensors(optimizer_moments(state.optimizer), moments, f"{optimizer} state")
    poisoned[0] = False
    step(x, y)
    assert step.stats.read()["skipped_in_a_row"] == 0
    assert not torch.equal(
        state.model.state_dict()["blocks.0.attn.W_Q"], before["blocks.0.attn.W_Q"]
    )
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


# ----------------------------------------------------------------------------- bounded support
BOUNDED = RegressionConfig(
    d_model=16, n_layers=1, n_heads=2, input_dim=1, d_vocab=10,
    bucket_support="bounded", y_min=-1.0, y_max=1.0,
)  # fmt: skip


def test_bounded_loss_counts_an_out_of_range_target_as_its_nearest_edge():
    torch.manual_seed(0)
    model = PFN(BOUNDED).eval()
    with torch.no_grad():  # random weights, far from init: every bucket gets its own mass
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    lo, hi = model.bucketizer.borders[0].item(), model.bucketizer.borders[-1].item()
    x, y = torch.randn(6, 5, 1), torch.rand(6, 5) - 0.5
    outliers = torch.tensor([-7.0, -1.0001, -1e6, 1.0001, 5.0, 1e6])
    edges = torch.where(outliers > 0, hi, lo)
    # the last target is scored and seen by no prediction, so only its loss can change
    y_out, y_edge = y.clone(), y.clone()
    y_out[:, -1], y_edge[:, -1] = outliers, edges
    with torch.no_grad():
        loss_out = model(x, y_out, return_type="loss", loss_per_token=True)
        loss_edge = model(x, y_edge, return_type="loss", loss_per_token=True)
        logits = model(x, y_edge)
    assert torch.isfinite(loss_out).all()
    assert torch.equal(loss_out, loss_edge)
    # the two edges' losses differ, so an outlier sent to the wrong edge would show
    low = -model.log_prob(logits[:, -1], torch.full((6,), lo))
    high = -model.log_prob(logits[:, -1], torch.full((6,), hi))
    assert torch.equal(loss_edge[:, -1], torch.where(outliers > 0, high, low))
    assert (low != high).all()  # compared bit for bit above, any difference shows
    assert torch.equal(model.out_of_range(y_out)[:, -1], torch.ones(6, dtype=torch.bool))
    assert not model.out_of_range(y_edge).any()


class KnownOutliers:
    """Per sequence of 12: two targets above y_max=1, one below y_min=-1, the rest inside."""

    input_dim = 1

    def generate(self, seq_len):
        y = torch.rand(seq_len) * 1.8 - 0.9
        y[:3] = torch.tensor([3.0, 1.5, -2.0])
        return torch.randn(seq_len, 1), y[torch.randperm(seq_len)]


def test_out_of_range_share_of_training_targets_is_reported(tmp_path):
    metrics = tmp_path / "m.jsonl"
    with pytest.warns(RuntimeWarning, match=r"25\.000% of the training targets"):
        train(
            KnownOutliers(),
            BOUNDED,
            tc(num_steps=4, log_every=2, metrics_path=str(metrics), checkpoint_dir=str(tmp_path)),
        )
    assert [r["out_of_range_frac"] for r in read_metrics(metrics)] == [0.25, 0.25]


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
        pfn_nll = -model.log_predictive(y)  # position t: p(y_t | y_<t), the prior at t = 0
    exact = coin_exact_nll(y.float())
    per_dataset = (pfn_nll - exact).mean(1)
    excess, stderr = per_dataset.mean().item(), per_dataset.std().item() / len(y) ** 0.5
    ignoring = math.log(2) - exact.mean().item()  # a fair-coin guess: about 0.15 nats here
    assert excess < min(0.05, ignoring / 3), f"excess NLL {excess:.4f} nats ({ignoring=:.4f})"
    assert excess > -3 * stderr, excess  # below exact: the model saw what it predicts


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
        moving(metrics_path=str(metrics), checkpoint_dir=str(tmp_path / name), **kw),
    )
    return [r["loss"] for r in read_metrics(metrics)], model.state_dict()


def _max_diff(a, b) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_compiled_step_follows_the_eager_trajectory(tmp_path, monkeypatch):
    monkeypatch.setenv("PFN_COMPILE_BACKEND", "aot_eager")  # dynamo + AOTAutograd, no codegen
    torch._dynamo.reset()
    eager, w_eager = _losses_and_weights(tmp_path, "eager", compile=False)
    compiled, w_compiled = _losses_and_weights(tmp_path, "compiled", compile=True)
    torch.manual_seed(0)
    assert _max_diff(w_eager, PFN(TINY).state_dict()) > 1e-3  # training moved the weights
    assert compiled == eager  # the same aten ops in the same order: bit for bit on CPU
    for key, value in w_eager.items():
        assert torch.equal(w_compiled[key], value), key


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
    # AdamW: Muon orthogonalises each update, which turns the generated kernels' reassociation
    # noise into O(1) changes along near-degenerate directions; the compiled graph (forward,
    # backward, clipping) is the optimizer's input either way, and the aot_eager test above
    # follows the Muon default bit for bit
    eager, w_eager = _losses_and_weights(tmp_path, "eager", compile=False, optimizer="adamw")
    compiled, w_compiled = _losses_and_weights(
        tmp_path, "compiled", compile=True, optimizer="adamw"
    )
    torch.manual_seed(0)
    moved = _max_diff(w_eager, PFN(TINY).state_dict())
    # generated kernels reassociate sums, so not bit for bit; far closer than training moved
    assert compiled == pytest.approx(eager, abs=1e-4)
    assert _max_diff(w_compiled, w_eager) < 0.05 * moved, (_max_diff(w_compiled, w_eager), moved)


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


def test_muon_runs_its_groups_at_multiples_of_the_logged_rate_and_falls_back_to_adamw(tmp_path):
    tc = moving(
        num_steps=3,
        learning_rate=2e-3,
        muon_lr_ratio=4.0,
        adamw_lr_ratio=3.0,
        lr_schedule="constant",
        metrics_path=str(tmp_path / "m.jsonl"),
    )
    train(linear_gen(), TINY, tc)
    assert [r["lr"] for r in read_metrics(tmp_path / "m.jsonl")] == pytest.approx([2e-3] * 3)
    model = PFN(TINY)
    optimizer = make_optimizer(model, tc)
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    muon_weights = ("W_in", "W_out", "W_x2", "W_xy2", "W_Q", "W_K", "W_V", "W_O")
    for name, p in model.named_parameters():
        hidden = name.rsplit(".", 1)[-1] in muon_weights
        assert rates[id(p)] == pytest.approx(8e-3 if hidden else 6e-3), name
    for name, p in model.named_parameters():  # nothing left for Muon: AdamW on the rest
        if name.rsplit(".", 1)[-1] in muon_weights:
            p.requires_grad_(False)
    fallback = make_optimizer(model, tc)
    assert isinstance(fallback, torch.optim.AdamW)
    assert [g["lr"] for g in fallback.param_groups] == pytest.approx([6e-3])
