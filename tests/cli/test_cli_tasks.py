"""The task functions behind the Hydra apps, called directly (no subprocess, no Hydra app):
``run_train``, ``run_eval`` and ``run_sample`` on configs from the compose API."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from pfn_cli.errors import CliError
from pfn_cli.evaluate import run_eval
from pfn_cli.sample import run_sample
from pfn_cli.train import run_train
from tests.cli_helpers import CONF, TINY, one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="tasks"):
        yield


def test_run_train_eval_sample_in_process(tmp_path):
    run_dir = tmp_path / "outputs" / "my-run"
    cfg = compose("train", overrides=["model=unsupervised_discrete", "prior=categorical", *TINY])
    summary = run_train(cfg, run_dir=run_dir, choices={"model": "mine", "prior": "categorical"})
    assert summary["status"] == "finished" and summary["step"] == 30
    assert summary["eval"]["excess_nll"]["mean"] is not None
    assert json.loads((run_dir / "status.json").read_text())["model"] == "mine"
    assert (run_dir / "resolved_config.yaml").read_text().count("d_vocab: 5") == 1

    ecfg = compose("eval", overrides=[f"run={run_dir}", "num_datasets=8", "plots=false"])
    results = run_eval(ecfg)
    assert results["step"] == 30 and results["out"] == str(run_dir / "eval.json")

    scfg = compose("sample", overrides=[f"run={run_dir}", "num_samples=2", "seq_len=12"])
    out = run_sample(scfg)
    assert out["shape"] == [2, 12] and len(out["files"]) == 3

    bad = compose("eval", overrides=[f"run={tmp_path / 'nope'}"])
    with pytest.raises(CliError, match="does not exist"):
        run_eval(bad)


def test_the_closing_evaluation_scores_the_model_train_returned(tmp_path, monkeypatch):
    """No second load from disk: the model train() returned is the one evaluated."""
    from pfn_transformers.persistence import loading

    def refuse(*args, **kwargs):
        raise AssertionError("the closing evaluation reloaded the model from disk")

    monkeypatch.setattr(loading, "load_model", refuse)
    monkeypatch.setattr(loading, "load_checkpoint", refuse)
    run_dir = tmp_path / "outputs" / "run"
    cfg = compose("train", overrides=["model=unsupervised_discrete", "prior=coin", *TINY])
    summary = run_train(cfg, run_dir=run_dir, choices={"model": "m", "prior": "coin"})
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["step"] == summary["step"] == 30
    assert evaluation["checkpoint"] == str(run_dir / "checkpoints" / "step-30.pt")
