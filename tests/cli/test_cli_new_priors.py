"""The priors of issue 24 (``prior=gp_hyper``, ``prior=mixture``) through every command:
``pfn train``, ``pfn eval`` (with the GP baselines), ``pfn prior-check``, ``pfn inspect`` and
the scikit-learn estimators. Tiny runs: plumbing, not what a PFN learns."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import TINY, one_thread, run_dirs, run_pfn  # noqa: F401

pytestmark = pytest.mark.timeout(600)

# the quadrature coarsened (the exact predictive's cost) and a short final evaluation
GP_HYPER = ["prior=gp_hyper", "prior.quadrature_nodes=[12,16,12]"]
MIXTURE = ["prior=mixture", "prior.components=[linear,gp]"]
SHORT = ["training.num_steps=5", "eval.num_datasets=16", "eval.batch_size=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, prior in (("gp_hyper", GP_HYPER), ("mixture", MIXTURE)):
        work = tmp_path_factory.mktemp(name)
        run_pfn(["train", *prior, *TINY, *SHORT], work)
        (out[name],) = run_dirs(work / "outputs")
    return out


def test_pfn_eval_reports_the_gp_baselines_beside_the_pfn(runs):
    run = runs["gp_hyper"]
    trained = json.loads((run / "eval.json").read_text())  # pfn train's final evaluation
    assert set(trained["baselines"]) == {"mle_ii", "true_hyperparameters"}
    proc = run_pfn(["eval", f"run={run}", "num_datasets=24", "batch_size=12", "plots=true"],
                   run.parent)  # fmt: skip
    ev = json.loads((run / "eval.json").read_text())
    assert ev["num_datasets"] == 24 and ev["prior"] == "GPHyperPrior"
    base = ev["baselines"]
    seq_len = ev["seq_len"]
    for name in ("mle_ii", "true_hyperparameters"):
        assert len(base[name]["nll"]["per_n"]) == seq_len
        assert len(base[name]["excess_nll"]["per_n"]) == seq_len
        # paired with the exact NLL on the same datasets
        diff = base[name]["nll"]["mean"] - ev["exact_nll"]["mean"]
        assert base[name]["excess_nll"]["mean"] == pytest.approx(diff, abs=1e-6)
    assert base["true_hyperparameters"]["excess_nll"]["mean"] < 0  # the oracle
    assert ev["baselines_time_s"] > 0
    out = " ".join(proc.stdout.split())
    assert "NLL per context size n" in out and "MLE-II" in out and "true hyperparameters" in out
    assert (run / "figures" / "nll_vs_context.png").stat().st_size > 5_000
    # baselines=false: the same datasets, none of the baselines
    run_pfn(["eval", f"run={run}", "num_datasets=24", "batch_size=12", "plots=false",
             "calibration=false", "baselines=false", f"out={run / 'plain.json'}"], run.parent)  # fmt: skip
    plain = json.loads((run / "plain.json").read_text())
    assert plain["baselines"] is None and plain["exact_nll"] == ev["exact_nll"]


def test_a_mixture_run_has_no_baselines(runs):
    ev = json.loads((runs["mixture"] / "eval.json").read_text())
    assert ev["prior"] == "ExactMixturePrior" and ev["baselines"] is None


@pytest.mark.parametrize("prior", ["gp_hyper", "mixture"])
def test_prior_check_passes_the_exact_references_pit(prior, tmp_path):
    args = (
        GP_HYPER if prior == "gp_hyper" else ["prior=mixture", "prior.components=[linear,gp_hyper]"]
    )
    out = tmp_path / "report"
    proc = run_pfn(["prior-check", *args, "training=tiny", "num_datasets=96", "seq_len=12",
                    "speed=false", f"out={out}"], tmp_path)  # fmt: skip
    report = json.loads((out / "prior_check.json").read_text())
    assert report["has_exact"] is True and report["exact"]["calibrated"] is True, report["exact"]
    assert "exact posterior formula (PIT)" in proc.stdout


@pytest.mark.parametrize("name", ["gp_hyper", "mixture"])
def test_pfn_inspect_runs_on_the_new_priors(runs, name):
    run = runs[name]
    run_pfn(["inspect", f"run={run}", "num_datasets=16", "seq_len=8"], run.parent)
    (out,) = (run / "inspect").iterdir()
    report = json.loads((out / "report.json").read_text())
    assert report and (out / "attention.png").stat().st_size > 0


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["gp_hyper", "mixture"])
def test_estimators_fit_and_predict_with_a_new_prior_run(runs, name):
    from pfn_transformers import PFNRegressor
    from pfn_transformers.priors import GPHyperPrior, MixturePrior

    prior = GPHyperPrior() if name == "gp_hyper" else MixturePrior(["linear", "gp"])
    draw = prior.draw(1, 12)
    X, y = draw.x[0].numpy(), draw.y[0].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 5-step model's range warnings are not the point
        reg = PFNRegressor(str(runs[name]), prior=prior).fit(X[:8], y[:8])
        mean, std = reg.predict(X[8:]), reg.predict_std(X[8:])
        score = reg.score(X[8:], y[8:])
    assert mean.shape == (4,) and std.shape == (4,) and (std > 0).all()
    assert np.isfinite(mean).all() and np.isfinite(score)
