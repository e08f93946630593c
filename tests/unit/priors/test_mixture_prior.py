"""``priors.MixturePrior``: draws by weight, recorded components, refused combinations, and
the exact predictive as the posterior-weighted mixture (against a brute-force computation)."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pfn_transformers.data.base import has_exact_posterior
from pfn_transformers.data.building import build_prior
from pfn_transformers.prior_check import prior_check
from pfn_transformers.priors import (
    CoinFlipPrior,
    ExactMixturePrior,
    GPHyperPrior,
    GPPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
    MixturePrior,
    MLPPrior,
)
from tests.cli_helpers import CONF


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_components_are_drawn_by_weight_and_recorded():
    quiet, loud = GPPrior(outputscale=1e-4, noise_var=1e-4), GPPrior(outputscale=1e4)
    prior = MixturePrior([quiet, loud], weights=[1, 3])
    assert prior.weights == [0.25, 0.75]
    out = prior.draw(4000, 5)
    comp = out.params["component"]
    assert comp.shape == (4000,) and comp.dtype == torch.int64
    share = float((comp == 1).double().mean())
    assert share == pytest.approx(0.75, abs=4 * math.sqrt(0.75 * 0.25 / 4000))
    size = out.y.abs().amax(1)
    assert bool((size[comp == 0] < 1).all()) and bool((size[comp == 1] > 1).all())
    assert out.x.shape == (4000, 5, 1) and out.y.dtype == torch.float32


def test_a_components_own_latents_are_kept_per_dataset():
    prior = MixturePrior([GPPrior(), GPHyperPrior()], names=["fixed", "hyper"])
    out = prior.draw(64, 3)
    ls = out.params["hyper.lengthscale"]
    is_hyper = out.params["component"] == 1
    assert bool(torch.isnan(ls[~is_hyper]).all()) and bool((ls[is_hyper] > 0).all())


def _mvn_logpdf(cov: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.distributions.MultivariateNormal(torch.zeros(len(y)), cov).log_prob(y))


def test_exact_predictive_matches_brute_force_marginal_likelihoods():
    """p(y_n | x_<=n, y_<n) = p(x_<=n, y_<=n) / p(x_<=n, y_<n), each the mixture of the
    components' joint densities: the Gaussian of y (the linear prior's covariance
    Phi S0 Phi^T + s^2 I, the GP's kernel) times the inputs' uniform densities (the linear
    prior's x ~ U[-1, 1], the GP's U[0, 1]: an x < 0 rules the GP out)."""
    lin = LinearRegressionPrior(noise_std=0.3)
    gp = GPPrior(lengthscale=0.1, noise_var=0.01)
    prior = MixturePrior([lin, gp], weights=[0.3, 0.7])
    assert isinstance(prior, ExactMixturePrior) and has_exact_posterior(prior)
    x, y = prior.generate_batch(4, 7)
    got = prior.exact_log_predictive(x, y).double()
    for b in range(4):
        xd, yd = x[b].double(), y[b].double()
        phi = lin.featurize(xd)
        cov_lin = phi @ torch.diag(lin.prior_variances(torch.float64)) @ phi.T
        cov_lin = cov_lin + 0.3**2 * torch.eye(7, dtype=torch.float64)
        cov_gp = gp.covariance(xd[None])[0]

        def log_joint(nx: int, n: int, cov_lin=cov_lin, cov_gp=cov_gp, xd=xd, yd=yd) -> float:
            """log p(x_<nx, y_<n)"""
            parts = []
            for pi, cov, lo, hi in ((0.3, cov_lin, -1.0, 1.0), (0.7, cov_gp, 0.0, 1.0)):
                inside = bool(((xd[:nx] >= lo) & (xd[:nx] <= hi)).all())
                log_px = -nx * math.log(hi - lo) if inside else -math.inf
                log_py = _mvn_logpdf(cov[:n, :n], yd[:n]) if n else 0.0
                parts.append(math.log(pi) + log_px + log_py)
            return float(torch.logsumexp(torch.tensor(parts), 0))

        for n in range(7):
            want = log_joint(n + 1, n + 1) - log_joint(n + 1, n)
            assert got[b, n].item() == pytest.approx(want, abs=2e-4), (b, n)
    cdf = prior.exact_predictive_cdf(x, y, torch.linspace(-8, 8, 3))
    assert cdf.shape == (4, 7, 3) and bool((cdf.diff(dim=-1) >= 0).all())
    assert prior.exact_predictive_mean(x, y).shape == (4, 7)


def test_the_inputs_are_evidence_when_the_components_draw_them_differently():
    """Linear on U[-1, 1] + GP on U[0, 1]: once an x < 0 is seen (the current one included),
    the GP's weight is exactly zero; with the same input range the inputs say nothing."""
    lin, gp = LinearRegressionPrior(noise_std=0.3), GPPrior(lengthscale=0.1, noise_var=0.01)
    prior = MixturePrior([lin, gp], weights=[0.5, 0.5])
    x = torch.tensor([[[0.5], [0.2], [-0.4], [0.7]]])
    y = torch.tensor([[0.1, 0.3, -0.2, 0.5]])
    w = prior.posterior_log_weights(x, y).exp()  # [C, B, S]
    assert w[1, 0, :2].gt(0.01).all()  # both possible before the negative x
    assert w[1, 0, 2:].eq(0).all() and w[0, 0, 2:].eq(1).all()  # x_2 < 0: linear for sure
    # the same mixture on the GP's inputs: weights from y alone, as the y-only formula gives
    same = MixturePrior([LinearRegressionPrior(noise_std=0.3, x_low=0.0), gp], [0.5, 0.5])
    assert same.inputs_log_density(x.abs()) is None


def test_a_component_that_does_not_say_how_it_draws_x_gets_a_warning():
    class OwnGP:  # a user's prior: a GP's draws and formulas, no word on its inputs
        def __init__(self) -> None:
            self._gp = GPPrior(lengthscale=0.2)

        def __getattr__(self, name):
            if name == "x_log_density":
                raise AttributeError(name)
            return getattr(self._gp, name)

        def exact_log_predictive(self, x, y):
            return self._gp.exact_log_predictive(x, y)

    prior = MixturePrior([LinearRegressionPrior(), OwnGP()], names=["lin", "own"])
    x, y = prior.generate_batch(2, 5)
    with pytest.warns(UserWarning, match=r"\['own'\] do not say how they draw x"):
        prior.exact_log_predictive(x, y)


def test_discrete_mixture_is_a_normalised_brute_force_predictive():
    """Two Beta-Bernoulli coins: p(D) = B(a + k, b + n - k) / B(a, b) per component."""
    a = [(1.0, 1.0), (8.0, 2.0)]
    prior = MixturePrior([CoinFlipPrior(alpha=a[0][0], beta=a[0][1]),
                          CoinFlipPrior(alpha=a[1][0], beta=a[1][1])], weights=[0.6, 0.4])  # fmt: skip
    _, y = prior.generate_batch(5, 9)
    logp = prior.exact_predictive_log_probs(None, y)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(5, 9, dtype=torch.float64))

    def log_beta(p: float, q: float) -> float:
        return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)

    def log_joint(seq: list[int]) -> float:
        k, n = sum(seq), len(seq)
        parts = [
            math.log(w) + log_beta(al + k, be + n - k) - log_beta(al, be)
            for w, (al, be) in zip((0.6, 0.4), a)
        ]
        return float(torch.logsumexp(torch.tensor(parts), 0))

    got = prior.exact_log_predictive(None, y)
    for b in range(5):
        seq = [int(v) for v in y[b]]
        for n in range(9):
            want = log_joint(seq[: n + 1]) - log_joint(seq[:n])
            assert got[b, n].item() == pytest.approx(want, abs=1e-5)


def test_bad_combinations_are_refused_naming_components_and_values():
    with pytest.raises(ValueError) as info:
        MixturePrior([LinearRegressionPrior(input_dim=2), GPPrior()])
    msg = str(info.value)
    assert "different input sizes" in msg
    assert "LinearRegressionPrior (input_dim=2)" in msg and "GPPrior (input_dim=1)" in msg
    with pytest.raises(ValueError) as info:
        MixturePrior(["linear", LogisticClassificationPrior(input_dim=1)])
    msg = str(info.value)
    assert "continuous and discrete targets" in msg
    assert "linear (target_type='continuous')" in msg
    assert "LogisticClassificationPrior (target_type='discrete')" in msg
    with pytest.raises(ValueError, match="supervised.*coin \\(supervised=False\\)"):
        MixturePrior(["linear", "coin"])
    with pytest.raises(ValueError, match="'nope' is not a prior config.*'gp'"):
        MixturePrior(["linear", "nope"])
    with pytest.raises(ValueError, match="weights=\\[1.0\\] is not valid"):
        MixturePrior(["linear", "gp"], weights=[1.0])


def test_without_every_components_formula_there_is_no_exact_predictive():
    prior = MixturePrior([GPPrior(), MLPPrior()])
    assert not has_exact_posterior(prior) and not isinstance(prior, ExactMixturePrior)
    x, y = prior.generate_batch(3, 4)
    assert x.shape == (3, 4, 1)


def test_yaml_configs_compose_and_instantiate():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="mixture"):
        cfg = compose("train", overrides=["prior=mixture", "prior.components=[linear,gp_hyper]",
                                          "prior.weights=[0.2,0.8]"])  # fmt: skip
        prior = build_prior(cfg.prior)
        assert prior.component_names == ["linear", "gp_hyper"] and prior.weights == [0.2, 0.8]
        assert isinstance(prior.components[1], GPHyperPrior) and has_exact_posterior(prior)
        hyper = build_prior(
            compose("train", overrides=["prior=gp_hyper", "prior.input_dim=3"]).prior
        )
        assert isinstance(hyper, GPHyperPrior) and hyper.input_dim == 3
        assert hyper.lengthscale_prior == (3.0, 6.0) and hyper.noise_prior == (1.1, 0.05)
    # components as _target_ nodes, and names resolved from the built-in folder without Hydra
    node = OmegaConf.create({
        "_target_": "pfn_transformers.priors.MixturePrior",
        "components": [{"_target_": "pfn_transformers.priors.GPPrior", "lengthscale": 0.5}, "linear"],
    })  # fmt: skip
    prior = build_prior(node)
    assert prior.components[0].lengthscale == 0.5 and prior.component_names == ["GPPrior", "linear"]


def test_prior_check_pit_passes_for_the_mixture_reference():
    rep = prior_check(MixturePrior(["linear", "gp", "gp_hyper"]), speed=False, num_datasets=96,
                      seq_len=12)  # fmt: skip
    assert rep["has_exact"] and rep["exact"]["calibrated"], rep["exact"]["flags"]
    assert rep["exact"]["log_predictive_mismatch"] < 1e-3


class _EvidenceBlindMixture(ExactMixturePrior):
    """Draws as the linear + GP mixture but weighs the components by their prior weights at
    every position, ignoring what the context says: a deliberately wrong reference."""

    def _log_post(self, lp, x):
        log_pi = torch.tensor(self.weights, dtype=torch.float64).log()
        return log_pi[:, None, None].expand_as(lp)


def test_prior_check_pit_fails_for_a_mixture_reference_blind_to_the_context():
    # too wide once the context has picked its component: PIT piles up near 1/2, which
    # 512 datasets show (KS p ~ 4e-4) where 96 do not
    rep = prior_check(_EvidenceBlindMixture(["linear", "gp"]), speed=False, num_datasets=512,
                      seq_len=12)  # fmt: skip
    assert rep["exact"]["calibrated"] is False, rep["exact"]
    assert any("exact posterior formula fails its PIT check" in w for w in rep["warnings"])


def test_cli_trains_and_evaluates_on_a_mixture(tmp_path):
    import json

    from tests.cli_helpers import TINY, run_dirs, run_pfn

    args = ["train", "prior=mixture", "prior.components=[linear,gp]", *TINY,
            "training.num_steps=5", "eval.num_datasets=16", "eval.batch_size=16"]  # fmt: skip
    run_pfn(args, tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    ev = json.loads((run / "eval.json").read_text())
    assert ev["prior"] == "ExactMixturePrior" and ev["has_exact"] is True
    assert ev["excess_nll"]["mean"] is not None and ev["floor_nll"] is not None
    # pfn eval rebuilds the prior (components by name) from the run's saved config
    run_pfn(["eval", f"run={run}", "num_datasets=16", "batch_size=16", "plots=false"], tmp_path)
    again = json.loads((run / "eval.json").read_text())
    assert again["has_exact"] is True and again["excess_nll"]["mean"] is not None
