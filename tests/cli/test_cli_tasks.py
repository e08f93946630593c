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


@pytest.fixture(scope="module")
def conditioned_run(tmp_path_factory):
    """A tiny gp_hyper run conditioned on all three hyperparameters (condition_on)."""
    run_dir = tmp_path_factory.mktemp("cond") / "outputs" / "cond"
    names = "[lengthscale,outputscale,noise_var]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="cond"):
        cfg = compose(
            "train",
            overrides=[
                "model=regression",
                "prior=gp_hyper",
                "prior.quadrature_nodes=[8,8,8]",
                f"model.condition_on={names}",
                *TINY,
                "training.num_steps=8",
                "eval.num_datasets=8",
                "eval.batch_size=8",
            ],  # fmt: skip
        )
        run_train(cfg, run_dir=run_dir, choices={"model": "regression", "prior": "gp_hyper"})
    return run_dir


def _sample(run_dir, out, *extra):
    import torch

    cfg = compose("sample", overrides=[f"run={run_dir}", "num_samples=64", "plot=false",
                                       f"out={out}", "context.n=6", *extra])  # fmt: skip
    run_sample(cfg)
    return torch.load(out / "samples.pt", weights_only=False)


def test_pfn_sample_passes_known_hyperparameters_to_a_conditioned_model(
    conditioned_run, tmp_path, monkeypatch
):
    """`pfn sample +hyperparameters.lengthscale=...` hands the values to the model's sampler
    (a tiny run has barely learnt to use them, so the call is what is checked);
    `hyperparameters_from_prior=true` gives the drawn ones."""
    import torch

    from pfn_transformers.model.pfn import PFNModel

    calls = []
    original = PFNModel.sample_posterior_predictive

    def recording(self, *args, **kwargs):
        calls.append(kwargs.get("hyperparameters"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PFNModel, "sample_posterior_predictive", recording)
    marginal = _sample(conditioned_run, tmp_path / "m")
    given = _sample(conditioned_run, tmp_path / "g", "+hyperparameters.lengthscale=0.05",
                    "+hyperparameters.noise_var=2.0")  # fmt: skip
    assert calls == [None, {"lengthscale": 0.05, "noise_var": 2.0}]
    assert marginal["hyperparameters"] == {}
    assert given["hyperparameters"] == {"lengthscale": 0.05, "noise_var": 2.0}
    assert torch.equal(marginal["y_context"], given["y_context"])  # same seed, same context

    drawn = _sample(conditioned_run, tmp_path / "d", "hyperparameters_from_prior=true")
    assert set(drawn["hyperparameters"]) == {"lengthscale", "outputscale", "noise_var"}
    assert all(v > 0 for v in drawn["hyperparameters"].values())
    assert torch.equal(drawn["y_context"], marginal["y_context"])  # the same draw, with params


def test_pfn_sample_refuses_hyperparameters_a_model_does_not_take(conditioned_run, tmp_path):
    with pytest.raises(CliError, match=r"\['alpha'\] are not valid.*conditions on"):
        _sample(conditioned_run, tmp_path / "a", "+hyperparameters.alpha=1.0")
    with pytest.raises(CliError, match="hyperparameters.lengthscale='short' is not valid"):
        _sample(conditioned_run, tmp_path / "b", "+hyperparameters.lengthscale=short")
    with pytest.raises(CliError, match="needs context.source=prior"):
        _sample(conditioned_run, tmp_path / "c", "hyperparameters_from_prior=true",
                "context.source=file", "context.path=x.csv")  # fmt: skip
