"""predictive_draws: an exact sampler lands outside the 99.9% interval 0.1% of the time;
samplers with too-wide or drifting draws are flagged."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_transformers import RegressionConfig, UnsupervisedConfig
from pfn_transformers.evaluation.draws import predictive_draws
from pfn_transformers.model.pfn import PFNModel
from pfn_transformers.priors import LinearRegressionPrior, NormalInverseGammaPrior


class ExactSampler(torch.nn.Module):
    """Draws from the exact posterior predictive, optionally with its std scaled (``widen``)
    or, for joint draws, a bias that grows with every draw (``drift``)."""

    def __init__(self, prior, supervised: bool, widen: float = 1.0, drift: float = 0.0):
        super().__init__()
        self.prior, self.supervised = prior, supervised
        self.widen, self.drift = widen, drift
        self.discrete_y = False
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.dummy.device

    def _draw(self, x, y):  # one draw of the last position's predictive, [B]
        if self.supervised:
            mean, std = self.prior.exact_predictive_moments(x, y)
            return (mean[:, -1] + self.widen * std[:, -1] * torch.randn_like(mean[:, -1])).float()
        df, loc, scale = (p[:, -1] for p in self.prior.exact_predictive_params(y))
        return torch.distributions.StudentT(df, loc, self.widen * scale).sample()

    def sample_posterior_predictive(self, xc, yc, xq, num_samples=1, autoregressive=True):
        out = []
        for _ in range(num_samples):
            x, y, draws = xc, yc, []
            for j in range(xq.shape[1]):
                xs = torch.cat([x, xq[:, j : j + 1]], 1)
                d = self._draw(xs, torch.cat([y, torch.zeros_like(y[:, :1])], 1))
                d = d + self.drift * j * autoregressive
                draws.append(d)
                if autoregressive:
                    x, y = xs, torch.cat([y, d.unsqueeze(1)], 1)
            out.append(torch.stack(draws, 1))
        return torch.stack(out)

    # unsupervised: "logits" are the prefix rows themselves; sampling draws the exact next
    def predictive_logits(self, y):
        return y.unsqueeze(-1).expand(*y.shape, y.shape[1]).transpose(1, 2)

    def sample_from_logits(self, rows):  # rows [R, n + 1]: the prefix plus a placeholder
        return self._draw(None, rows)

    def generate(self, num_samples, seq_len, prefix):
        y = prefix
        while y.shape[1] < seq_len:
            d = self._draw(None, torch.cat([y, torch.zeros_like(y[:, :1])], 1))
            y = torch.cat([y, (d + self.drift * (y.shape[1] - prefix.shape[1])).unsqueeze(1)], 1)
        return y


LINEAR = LinearRegressionPrior()
NIG = NormalInverseGammaPrior()


@pytest.mark.parametrize("prior,supervised", [(LINEAR, True), (NIG, False)])
def test_exact_sampler_is_nominal(prior, supervised):
    res = predictive_draws(ExactSampler(prior, supervised), prior, num_datasets=64, seed=1)
    draws = 64 * 16 * 22
    band = 4 * math.sqrt(0.001 * 0.999 / draws)  # 4 binomial standard errors
    for kind in ("marginal", "joint"):
        assert res[kind]["outside"] == pytest.approx(0.001, abs=band)
        assert res[kind]["mean_abs_z"] == pytest.approx(res["nominal_mean_abs_z"], abs=0.03)


@pytest.mark.parametrize("prior,supervised", [(LINEAR, True), (NIG, False)])
def test_too_wide_draws_are_flagged(prior, supervised):
    res = predictive_draws(ExactSampler(prior, supervised, widen=2.0), prior, num_datasets=32)
    # |z| > 3.29 / 2: about 10% of the draws of a predictive twice too wide
    for kind in ("marginal", "joint"):
        assert res[kind]["outside"] > 0.05
        assert res[kind]["mean_abs_z"] > 1.4


def test_drifting_joint_draws_are_flagged_and_marginal_ones_are_not():
    res = predictive_draws(ExactSampler(LINEAR, True, drift=0.5), LINEAR, num_datasets=32)
    assert res["marginal"]["outside"] < 0.005
    assert res["joint"]["outside"] > 0.3


def test_real_models_run_and_bad_requests_are_refused():
    model = PFNModel(RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1))
    res = predictive_draws(model, LINEAR, num_datasets=4, num_samples=2, num_query=3)
    assert 0 <= res["joint"]["outside"] <= 1 and res["num_query"] == 3
    unsup = PFNModel(UnsupervisedConfig(d_model=16, n_layers=1, n_heads=2, input_type="continuous"))
    res = predictive_draws(unsup, NIG, num_datasets=4, num_samples=2, num_query=3)
    assert 0 <= res["marginal"]["outside"] <= 1
    with pytest.raises(ValueError, match="level=1.5"):
        predictive_draws(model, LINEAR, level=1.5)
    with pytest.raises(ValueError, match="exact_predictive_cdf"):
        predictive_draws(model, object())
