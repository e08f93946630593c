"""PIT calibration: exact predictives pass, wrong formulas and miscalibrated models fail.

The "models" here are PFNs whose predictive logits are replaced by the best bar (or
categorical) approximation of the exact predictive, optionally divided by a temperature: the
calibrated one must pass and the tempered ones must be flagged, in the right direction.
"""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from torch import Tensor

from pfn_transformers import PFN, RegressionConfig, UnsupervisedConfig
from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.evaluation import (
    bucket_logits_from_cdf,
    calibration,
    exact_calibration,
    pit_report,
    plot_calibration,
)
from pfn_transformers.evaluation.calibration import ks_critical, ks_distance, ks_p_value
from pfn_transformers.model.pfn import PFNModel
from pfn_transformers.priors import (
    CategoricalPrior,
    CoinFlipPrior,
    GPPrior,
    LinearRegressionPrior,
    MarkovChainPrior,
    NormalInverseGammaPrior,
)
from pfn_transformers.priors._common import normal_log_pdf


# ---------------------------------------------------------------------------- statistics
def test_ks_statistics_agree_with_scipy() -> None:
    u = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = scipy.stats.kstest(u.numpy(), "uniform")
    assert ks_distance(u) == pytest.approx(ref.statistic, abs=1e-12)
    assert ks_p_value(ks_distance(u), 500) == pytest.approx(ref.pvalue, abs=0.01)
    assert ks_critical(1000, 0.05) == pytest.approx(scipy.stats.kstwo.ppf(0.95, 1000), rel=0.01)


def test_pit_report_of_uniform_and_skewed_samples() -> None:
    g = torch.Generator().manual_seed(1)
    uniform = torch.rand(400, 10, generator=g, dtype=torch.float64)
    rep = pit_report(uniform)
    assert rep["calibrated"] and rep["flags"] == []
    assert len(rep["ks"]["per_n"]) == 10 and rep["ks"]["samples"] == 4000
    assert sum(rep["histogram"]["counts"]) == 4000
    for level, cov in rep["coverage"].items():
        assert cov["observed"] == pytest.approx(float(level), abs=4 * cov["stderr"])
    assert "agree with a uniform PIT" in rep["reading"]
    narrow = torch.rand(400, 10, generator=g, dtype=torch.float64) ** 3  # y above the predictive
    bad = pit_report(narrow)
    assert not bad["calibrated"] and "pooled PIT is not uniform" in bad["flags"][0]
    # one bad context size is caught by the per-n test even when the pooled PIT looks fine
    one = uniform.clone()
    one[:, 4] = 0.5 + 0.1 * (one[:, 4] - 0.5)
    rep_one = pit_report(one)
    assert any("context size n=4" in f for f in rep_one["flags"])


# ---------------------------------------------------------------------------- exact formulas
@pytest.mark.parametrize(
    "prior",
    [
        LinearRegressionPrior(),
        GPPrior(),
        NormalInverseGammaPrior(),
        CoinFlipPrior(),
        CategoricalPrior(),
        MarkovChainPrior(),
    ],
    ids=lambda p: type(p).__name__,
)
def test_the_exact_predictives_of_the_catalogue_are_calibrated(prior) -> None:
    rep = exact_calibration(prior, num_datasets=256, seq_len=12)
    assert rep["calibrated"], rep["flags"]
    assert rep["ks"]["distance"] < rep["ks"]["critical"]
    assert rep["log_predictive_mismatch"] < 1e-3
    if rep["head"] == "discrete":
        assert rep["randomised"] and rep["reliability"]["ece"] < 0.05


def test_integrating_exact_log_predictive_passes_for_a_right_formula() -> None:
    rep = exact_calibration(GPPrior(), num_datasets=96, seq_len=6, method="log_predictive")
    assert rep["calibrated"], rep["flags"]
    assert rep["mass"]["max_abs_error"] < 1e-3
    rep = exact_calibration(CategoricalPrior(), num_datasets=96, seq_len=6, method="log_predictive")
    assert rep["calibrated"] and rep["mass"]["max_abs_error"] < 1e-6


class NormalMeanPrior(ExactPosteriorMixin, DataGenerator):
    """y_i ~ N(mu, s^2), mu ~ N(0, 1): the user's own prior with a hand-written posterior.

    ``forget_noise`` drops the noise variance from the predictive (too narrow); ``scale``
    multiplies the density (it no longer integrates to one).
    """

    input_dim = None
    target_type = "continuous"

    def __init__(self, noise: float = 0.5, forget_noise: bool = False, scale: float = 1.0):
        self.noise, self.forget_noise, self.scale = noise, forget_noise, scale

    def generate_batch(self, batch_size: int, seq_len: int):
        mu = torch.randn(batch_size, 1)
        return None, mu + self.noise * torch.randn(batch_size, seq_len)

    def exact_log_predictive(self, x: Tensor | None, y: Tensor) -> Tensor:
        yd = y.double()
        n = torch.arange(y.shape[1], dtype=torch.float64)
        prec = 1 + n / self.noise**2
        mean = (yd.cumsum(1) - yd) / self.noise**2 / prec
        var = 1 / prec + (0.0 if self.forget_noise else self.noise**2)
        return (normal_log_pdf(yd, mean, var.sqrt()) + math.log(self.scale)).float()


def test_a_wrong_posterior_formula_is_flagged() -> None:
    kw = {"num_datasets": 128, "seq_len": 8}
    right = exact_calibration(NormalMeanPrior(), **kw)
    assert right["method"] == "auto" and "mass" in right  # no cdf: integrated numerically
    assert right["calibrated"], right["flags"]
    wrong = exact_calibration(NormalMeanPrior(forget_noise=True), **kw)
    assert not wrong["calibrated"]
    assert "pooled PIT is not uniform" in wrong["flags"][0]
    assert "too narrow" in wrong["reading"]
    unnormalised = exact_calibration(NormalMeanPrior(scale=1.3), **kw)
    assert any("does not integrate to one" in f for f in unnormalised["flags"])

    class WrongLinear(LinearRegressionPrior):  # log density no longer matches its cdf
        def exact_log_predictive(self, x, y):
            return super().exact_log_predictive(x, y) - 0.1 * y.double().abs().float()

    mismatch = exact_calibration(WrongLinear(), **kw)
    assert any("disagrees with the cdf's derivative" in f for f in mismatch["flags"])


def test_exact_calibration_needs_a_formula_and_valid_sizes() -> None:
    from pfn_transformers.priors import MLPPrior

    with pytest.raises(ValueError, match="MLPPrior has no exact_log_predictive"):
        exact_calibration(MLPPrior())
    with pytest.raises(ValueError, match=r"num_datasets=0 is not valid"):
        exact_calibration(GPPrior(), num_datasets=0)
    with pytest.raises(ValueError, match=r"method='cdf' is not valid"):
        exact_calibration(GPPrior(), method="cdf")


# ---------------------------------------------------------------------------- models
class TemperedExactModel(PFNModel):
    """A PFN whose predictive is the exact one's best bar/categorical approximation / T."""

    def __init__(self, config, prior, temperature: float = 1.0) -> None:
        super().__init__(config)
        self.prior, self.temperature = prior, temperature

    def predictive_logits(self, x_or_y: Tensor, y: Tensor | None = None) -> Tensor:
        x, y = (None, x_or_y) if y is None else (x_or_y, y)
        if self.bucketizer is None:
            logp = self.prior.exact_predictive_log_probs(x, y)
        else:
            borders = self.bucketizer.borders.double()
            cdf = self.prior.exact_predictive_cdf(x, y, borders)
            logp = bucket_logits_from_cdf(cdf, self.bucketizer.support)
        return (logp / self.temperature).float()


def _bar_model(prior, temperature: float, y_range=None, **kw) -> TemperedExactModel:
    lo, hi = y_range or prior.suggested_y_range
    cfg = RegressionConfig(
        d_model=16, n_layers=1, n_heads=2, input_dim=1, y_min=lo, y_max=hi, d_vocab=256, **kw
    )
    return TemperedExactModel(cfg, prior, temperature)


def test_a_calibrated_model_passes_and_tempered_ones_are_flagged(tmp_path) -> None:
    prior = LinearRegressionPrior(noise_std=0.3)
    kw = {"num_datasets": 256, "seq_len": 12}
    good = calibration(_bar_model(prior, 1.0), prior, **kw)
    assert good["source"] == "model" and good["head"] == "bar"
    assert good["calibrated"], good["flags"]
    sharp = calibration(_bar_model(prior, 0.5), prior, **kw)  # logits x 2: too narrow
    assert not sharp["calibrated"] and "too narrow" in sharp["reading"]
    assert sharp["coverage"]["0.9"]["observed"] < 0.85
    flat = calibration(_bar_model(prior, 2.0), prior, **kw)  # logits / 2: too wide
    assert not flat["calibrated"] and "too wide" in flat["reading"]
    assert flat["coverage"]["0.5"]["observed"] > 0.55
    paths = plot_calibration(sharp, tmp_path)
    assert [p.name for p in paths] == ["pit_calibration.png"]
    assert paths[0].stat().st_size > 10_000


def test_bounded_support_too_narrow_for_the_targets_is_flagged() -> None:
    prior = LinearRegressionPrior(noise_std=0.3)
    model = _bar_model(prior, 1.0, y_range=(-0.8, 0.8), bucket_support="bounded")
    rep = calibration(model, prior, num_datasets=64, seq_len=8)  # targets outside: cdf 0 / 1
    assert not rep["calibrated"] and rep["histogram"]["counts"][0] > 2 * rep["histogram"]["band"][1]


def test_discrete_heads_get_randomised_pit_and_reliability(tmp_path) -> None:
    prior = CategoricalPrior(num_categories=4, concentration=0.5)
    cfg = UnsupervisedConfig(d_model=16, n_layers=1, n_heads=2, input_type="discrete", d_vocab=4)
    kw = {"num_datasets": 256, "seq_len": 12}
    good = calibration(TemperedExactModel(cfg, prior, 1.0), prior, **kw)
    assert good["calibrated"], good["flags"]
    assert good["randomised"] and good["reliability"]["miscalibrated_bins"] == []
    bad = calibration(TemperedExactModel(cfg, prior, 0.4), prior, **kw)
    assert not bad["calibrated"] and "pooled PIT is not uniform" in bad["flags"][0]
    # a milder temperature that the PIT test misses at this size, the reliability test sees
    mild = calibration(TemperedExactModel(cfg, prior, 0.8), prior, **kw)
    assert [f.split(":")[0] for f in mild["flags"]] == ["reliability"]
    assert mild["reliability"]["ece"] > 3 * good["reliability"]["ece"]
    names = [p.name for p in plot_calibration(bad, tmp_path)]
    assert names == ["pit_calibration.png", "reliability.png"]


def test_calibration_refuses_point_heads_and_unfit_priors() -> None:
    point = PFN(RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1,
                                 prediction_type="point"))  # fmt: skip
    with pytest.raises(ValueError, match="prediction_type='point'"):
        calibration(point, LinearRegressionPrior(), num_datasets=8, seq_len=4)
    bar = PFN(RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1))
    with pytest.raises(ValueError, match="CoinFlipPrior"):
        calibration(bar, CoinFlipPrior(), num_datasets=8, seq_len=4)
    with pytest.raises(ValueError, match=r"seq_len=None is not valid"):
        calibration(bar, LinearRegressionPrior(), num_datasets=8)
