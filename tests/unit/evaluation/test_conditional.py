"""evaluate() of a model trained with condition_on (issue 24, item 4): the usual fields are the
marginal evaluation, ``out["conditional"]`` the same datasets with their true hyperparameters
given, against the exact GP given them."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig
from pfn_transformers.evaluation import evaluate
from pfn_transformers.priors import GPHyperPrior

NAMES = ["lengthscale", "outputscale", "noise_var"]
SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_vocab": 40, "y_min": -8.0, "y_max": 8.0}
N, S = 24, 8


@pytest.fixture(scope="module")
def prior() -> GPHyperPrior:
    return GPHyperPrior(quadrature_nodes=[8, 10, 8])


def model(names=NAMES, active=False):
    torch.manual_seed(0)
    m = PFN(RegressionConfig(**SMALL, condition_on=list(names)))
    if active and names:
        with torch.no_grad():
            m.W_cond.normal_()
            m.W_cond2.mul_(20.0)
    return m.eval()


def test_conditional_scores_the_marginal_evaluations_datasets_against_the_exact_gp_given(prior):
    out = evaluate(model(), prior, num_datasets=N, seq_len=S, batch_size=10, seed=3)
    cond = out["conditional"]
    assert cond["hyperparameters"] == NAMES
    assert set(cond) == {"hyperparameters", "nll", "exact_nll", "excess_nll"}
    assert len(cond["excess_nll"]["per_n"]) == S
    # an untrained (inert) condition input: given equals withheld, so equal NLLs prove the
    # two halves scored the very same datasets
    assert cond["nll"] == out["nll"]
    # the oracle that knows the hyperparameters, recomputed from the same seeded draws
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        draws = [prior.draw(b, S) for b in (10, 10, 4)]
    exact = torch.cat([-prior.exact_log_predictive_given(d.x, d.y, d.params) for d in draws])
    assert cond["exact_nll"]["mean"] == pytest.approx(exact.mean().item(), rel=1e-9)
    # knowing them is worth something: the conditional reference lies below the marginal one
    assert cond["exact_nll"]["mean"] < out["exact_nll"]["mean"]
    assert cond["excess_nll"]["mean"] == pytest.approx(
        cond["nll"]["mean"] - cond["exact_nll"]["mean"], abs=1e-9
    )


def test_given_values_reach_the_model_in_the_conditional_half(prior):
    out = evaluate(model(active=True), prior, num_datasets=N, seq_len=S, batch_size=24)
    assert out["conditional"]["nll"]["mean"] != pytest.approx(out["nll"]["mean"], abs=1e-3)


def test_models_without_condition_on_have_no_conditional_block(prior):
    out = evaluate(model(names=[]), prior, num_datasets=8, seq_len=S)
    assert out["conditional"] is None
    # names the prior does not report: nothing to condition on in the evaluation
    out = evaluate(model(names=["period"]), prior, num_datasets=8, seq_len=S)
    assert out["conditional"] is None


def test_the_eval_table_shows_the_conditional_excess_beside_the_marginal(prior):
    from rich.console import Console

    from pfn_cli.reporting import results_table

    out = evaluate(model(), prior, num_datasets=8, seq_len=S)
    console = Console(width=200, record=True)
    console.print(results_table(out))
    text = " ".join(console.export_text().split())  # the caption wraps
    assert "excess NLL (PFN - exact)" in text
    assert "excess NLL, hyperparameters given (PFN - exact GP given them)" in text
    assert "withhold lengthscale, outputscale, noise_var" in text
    assert f"{out['conditional']['excess_nll']['mean']:.4f}" in text
    assert f"{out['excess_nll']['mean']:.4f}" in text
