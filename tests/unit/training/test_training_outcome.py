"""A run cut short says so; compiling never eats the time budget (issue 23, items 1, 3, 4).

Written from the documented behaviour: ``TrainingConfig.max_time_s`` budgets training, not
compilation; a run stopped inside its warmup or before 10% of its steps warns
(``ShortTrainingWarning``) and ``pfn train`` says how many of the planned steps it trained
and why, in the summary, ``status.json`` and the evaluation's header.
"""

from __future__ import annotations

import json
import time
import warnings

import pytest
import torch

from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers.priors import LinearRegressionPrior
from pfn_transformers.training import compilation
from pfn_transformers.training.compilation import compile_pays, training_loss
from pfn_transformers.training.outcome import ShortTrainingWarning, TrainingOutcome
from pfn_transformers.training.progress import TrainingProgress
from pfn_transformers.training.step import tf32_matmuls
from tests.cli_helpers import TINY, run_pfn

SMALL = RegressionConfig(d_model=32, n_layers=1, n_heads=2)


def _config(**kw) -> TrainingConfig:
    base = dict(
        batch_size=8,
        seq_len=16,
        save_checkpoint=False,
        progress_bar=False,
        log_every=10,
        precision="fp32",
    )
    return TrainingConfig(**{**base, **kw})


def test_a_time_limit_inside_the_warmup_warns_with_planned_and_trained_steps():
    tc = _config(num_steps=100_000, warmup_steps=50_000, max_time_s=0.5)
    with pytest.warns(ShortTrainingWarning) as caught:
        model = train(LinearRegressionPrior(), SMALL, tc)
    outcome = model.provenance["training"]["outcome"]
    steps = outcome["trained_steps"]
    assert 0 < steps < 50_000
    message = str(caught[0].message)
    assert message.startswith(
        f"trained {steps:,} of 100,000 steps: the time limit (0.5 s) was reached during warmup"
    )
    assert outcome["status"] == "timed_out" and outcome["stop_reason"] == "time_limit"
    assert outcome["planned_steps"] == 100_000 and outcome["note"] in message
    assert outcome["train_s"] == pytest.approx(0.5, abs=0.5) and outcome["compile_s"] == 0.0


def test_a_run_that_finishes_records_its_outcome_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortTrainingWarning)
        model = train(LinearRegressionPrior(), SMALL, _config(num_steps=12, warmup_steps=4))
    outcome = model.provenance["training"]["outcome"]
    assert outcome["status"] == "finished" and outcome["stop_reason"] == "num_steps"
    assert outcome["trained_steps"] == 12 and outcome["note"] is None


@pytest.mark.parametrize(
    ("status", "trained", "note"),
    [
        ("finished", 3, None),  # all planned steps ran, however few
        ("timed_out", 99, "trained 99 of 1,000 steps: the time limit (3 s) was reached"),
        ("timed_out", 100, None),  # 10% of the steps, past the warmup: not "almost nothing"
        (
            "interrupted",
            30,
            "trained 30 of 1,000 steps: a stop signal (SIGTERM) arrived during warmup (50 steps)",
        ),
    ],
)
def test_outcome_note_names_planned_steps_and_the_reason(status, trained, note):
    planned = 3 if status == "finished" else 1_000
    outcome = TrainingOutcome(
        status=status,
        planned_steps=planned,
        trained_steps=trained,
        warmup_steps=50,
        max_time_s=3,
        signal="SIGTERM",
    )
    assert outcome.note() == note
    assert outcome.to_dict()["note"] == note


def test_pfn_train_cut_short_says_so_in_summary_status_and_evaluation(tmp_path):
    args = ["train", *TINY, "training.num_steps=100000", "training.warmup_steps=50000"]
    proc = run_pfn([*args, "training.max_time_s=1", "hydra.run.dir=run"], tmp_path)
    status = json.loads((tmp_path / "run/status.json").read_text())
    steps = status["step"]
    expected = f"trained {steps:,} of 100,000 steps: the time limit (1 s) was reached during"
    assert status["training_note"].startswith(expected)
    assert status["stop_reason"] == "time_limit" and status["planned_steps"] == 100_000
    assert f"Stopped by the time limit at {steps:,}/100,000 steps" in proc.stdout
    assert f"Warning: {expected}" in proc.stdout
    evaluation = json.loads((tmp_path / "run/eval.json").read_text())
    assert evaluation["training_note"] == status["training_note"]
    header = proc.stdout.split("Final evaluation (eval.json)", 1)[1].splitlines()[1]
    assert header.startswith(expected)


def _slow_first_compile(monkeypatch, delay: float, phases: list[str]) -> None:
    """torch.compile stand-in whose first call takes ``delay`` seconds (a cold compile)."""

    def fake_compile(fn, **kwargs):
        calls = []

        def compiled(*args):
            if not calls:
                time.sleep(delay)
            calls.append(1)
            return fn(*args)

        return compiled

    monkeypatch.setattr(compilation, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", fake_compile)
    original = TrainingProgress.set_phase

    def record(self, phase, compile_s=0.0):
        phases.append(phase)
        return original(self, phase, compile_s)

    monkeypatch.setattr(TrainingProgress, "set_phase", record)


def test_compiling_does_not_count_against_max_time_s(monkeypatch):
    phases: list[str] = []
    _slow_first_compile(monkeypatch, 1.5, phases)
    tc = _config(num_steps=100_000, warmup_steps=0, max_time_s=0.6, compile=True)
    with pytest.warns(ShortTrainingWarning):
        model = train(LinearRegressionPrior(), SMALL, tc)
    outcome = model.provenance["training"]["outcome"]
    assert outcome["compile_s"] >= 1.5
    assert outcome["train_s"] == pytest.approx(0.6, abs=0.4)
    # the budget bought steps after the compile, not just the one that compiled
    assert outcome["trained_steps"] > 5
    assert "(compiling took a further 2 s)" in outcome["note"]
    assert phases == ["compiling", "train"]


def test_compile_seconds_reach_the_metrics_file(monkeypatch, tmp_path):
    _slow_first_compile(monkeypatch, 0.3, [])
    metrics = tmp_path / "metrics.jsonl"
    tc = _config(num_steps=10, compile=True, metrics_path=str(metrics), log_every=5)
    train(LinearRegressionPrior(), SMALL, tc)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert rows[-1]["compile_s"] >= 0.3


def test_a_second_train_call_reuses_the_compiled_step(monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setenv("PFN_COMPILE_BACKEND", "eager")
    monkeypatch.setattr(compilation, "_COMPILED", {})
    torch._dynamo.reset()
    counters.clear()
    tc = _config(num_steps=3, compile=True)
    train(LinearRegressionPrior(), SMALL, tc)
    graphs = counters["stats"]["unique_graphs"]
    train(LinearRegressionPrior(), SMALL, tc)  # a fresh model, the same shapes
    assert graphs >= 1 and counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize(
    ("kind", "bf16", "n_context"),
    [("regression", True, None), ("regression", False, 7), ("unsupervised", True, None)],
)
def test_the_training_loss_compiles_without_graph_breaks(kind, bf16, n_context):
    from pfn_transformers import PFN, UnsupervisedConfig

    torch._dynamo.reset()
    if kind == "regression":
        model, x, y = PFN(SMALL), torch.randn(2, 12, 1), torch.randn(2, 12)
    else:
        model = PFN(UnsupervisedConfig(d_model=32, n_layers=1, n_heads=2, d_vocab=5))
        x, y = None, torch.randint(0, 5, (2, 12))
    explained = torch._dynamo.explain(training_loss)(model, x, y, n_context, bf16, "cpu")
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize(
    ("eager_step_s", "steps_left", "seconds_left", "compile_s", "pays"),
    [
        (0.0195, 1_500, None, 75.0, False),  # 1,500 steps save 13 s: not worth a cold compile
        (0.0195, 8_000, 175.0, 75.0, False),  # 8,000 steps save 69 s < a 75-s cold compile
        (0.0195, 8_000, 175.0, 5.0, True),  # the same with a warm cache
        (0.0195, 100_000, 60.0, 20.0, True),  # time-bound: 40 s compiled > 60 s eager
        (0.0195, 100_000, 60.0, 30.0, False),  # 30 s compiled at 0.56x < 60 s eager
        (0.0195, 20_000, None, 75.0, True),  # 20,000 steps save 172 s
        (0.0195, 300, None, 5.0, False),  # a few hundred steps do not pay for a warm compile
    ],
)
def test_auto_compiles_only_where_it_pays(eager_step_s, steps_left, seconds_left, compile_s, pays):
    assert compile_pays(eager_step_s, steps_left, seconds_left, compile_s) is pays


def test_tf32_is_on_for_cuda_training_only_while_it_runs():
    before = torch.get_float32_matmul_precision()
    with tf32_matmuls(torch.device("cuda"), True):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with tf32_matmuls(torch.device("cuda"), False), tf32_matmuls(torch.device("cpu"), True):
        assert torch.get_float32_matmul_precision() == before
    with pytest.raises(ValueError, match=r"TrainingConfig.tf32='yes' is not valid"):
        TrainingConfig(tf32="yes")


@pytest.mark.parametrize("pays", [True, False])
def test_auto_times_eager_steps_then_compiles_only_if_it_pays(monkeypatch, tmp_path, pays):
    from pfn_transformers.training import loop, step

    monkeypatch.setenv("PFN_CACHE_DIR", str(tmp_path))
    phases: list[str] = []
    _slow_first_compile(monkeypatch, 0.0, phases)
    monkeypatch.setattr(step, "compile_mode", lambda setting, device: "default")  # as on CUDA
    asked = []

    def decide(eager_step_s, steps_left, seconds_left, compile_s):
        asked.append((eager_step_s, steps_left, seconds_left, compile_s))
        return pays

    monkeypatch.setattr(loop, "compile_pays", decide)
    train(LinearRegressionPrior(), SMALL, _config(num_steps=40, compile="auto", max_time_s=600))
    (eager_step_s, steps_left, seconds_left, compile_s), *more = asked
    assert not more and 0 < eager_step_s < 5 and steps_left == 40 - compilation.PROBE_STEPS
    assert 590 < seconds_left < 600 and compile_s == compilation.COLD_COMPILE_S
    assert phases == (["compiling", "train"] if pays else [])
    # a compile is remembered: the next "auto" decision of the same shapes expects its time
    recorded = tmp_path / "compile_times.json"
    assert recorded.exists() is pays
    if pays:
        (seconds,) = json.loads(recorded.read_text()).values()
        train(LinearRegressionPrior(), SMALL, _config(num_steps=40, compile="auto"))
        assert asked[-1][3] == seconds < compilation.COLD_COMPILE_S
