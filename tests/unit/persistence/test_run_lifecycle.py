"""``RunLifecycle``: one object writes a run folder's life, for the CLI and notebooks alike."""

from __future__ import annotations

import json

import pytest

from pfn_transformers import RegressionConfig, TrainingConfig, open_run, train
from pfn_transformers.priors import LinearRegressionPrior
from pfn_transformers.runs import RunLifecycle

TINY = RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1)


def _status(run: RunLifecycle) -> dict:
    return json.loads((run.path / "status.json").read_text())


def test_a_notebook_trains_into_a_run_folder_that_open_run_reads(tmp_path):
    run = RunLifecycle(tmp_path / "my-run")
    tc = TrainingConfig(
        num_steps=4, batch_size=4, seq_len=8, save_every=4, log_every=2,
        checkpoint_dir=str(run.checkpoint_dir), metrics_path=str(run.metrics_path), device="cpu",
    )  # fmt: skip
    run.start(model="tiny", prior="linear", num_steps=tc.num_steps)
    assert _status(run)["status"] == "running" and _status(run)["pid"]
    run.write_resolved_config({"model": TINY.to_dict(), "training": tc.to_dict()})
    with run.training():
        model = train(LinearRegressionPrior(), TINY, tc)
    run.trained(model, 1.5)
    run.evaluated({"step": 4, "excess_nll": {"mean": 0.1, "stderr": 0.01}})
    run.finished(objective=0.1)
    opened = open_run(run.path)
    assert opened.status["status"] == "finished" and opened.status["step"] == 4
    assert opened.status["device"] == "cpu" and opened.evaluation["step"] == 4
    assert opened.resolved_config["model"]["d_model"] == 16
    assert opened.model(device="cpu").provenance["evaluation"]["step"] == 4
    assert opened.info.excess_nll == 0.1


def test_a_failure_and_an_interruption_are_recorded(tmp_path):
    run = RunLifecycle(tmp_path / "failing")
    run.start(model="m")
    with pytest.raises(RuntimeError, match="boom"), run.training():
        raise RuntimeError("boom")
    assert _status(run)["status"] == "failed" and _status(run)["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (run.path / "error.txt").read_text()

    other = RunLifecycle(tmp_path / "stopped")
    other.start(model="m")
    with pytest.raises(KeyboardInterrupt), other.training():
        raise KeyboardInterrupt
    assert _status(other)["status"] == "interrupted" and _status(other)["signal"] == "SIGINT"
