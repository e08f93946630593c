"""``prior_check`` / ``pfn prior-check``: the workbench for someone writing a prior."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from torch import Tensor

from pfn_transformers import RegressionConfig, TrainingConfig, UnsupervisedConfig
from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin
from pfn_transformers.prior_check import prior_check
from pfn_transformers.priors import CoinFlipPrior, GPPrior, MLPPrior
from pfn_transformers.priors._common import normal_log_pdf
from tests.cli_helpers import run_pfn

TINY = TrainingConfig(batch_size=8, seq_len=12, device="cpu")


def _regression(y_min: float, y_max: float, input_dim: int = 1) -> RegressionConfig:
    return RegressionConfig(
        d_model=16, n_layers=1, n_heads=2, input_dim=input_dim, y_min=y_min, y_max=y_max,
        d_vocab=32,
    )  # fmt: skip


def test_narrow_borders_are_reported_with_the_suggested_range(tmp_path) -> None:
    prior = GPPrior()
    rep = prior_check(
        prior, model_config=_regression(-1.5, 1.5), training_config=TINY,
        num_datasets=64, speed_repeats=1, out_dir=tmp_path,
    )  # fmt: skip
    targets = rep["targets"]
    y = torch.tensor(targets["values"])
    assert targets["out_of_range_share"] == pytest.approx(0.13, abs=0.03)  # N(0, ~1) beyond 1.5
    assert float(((y < -1.5) | (y > 1.5)).float().mean()) == pytest.approx(
        targets["out_of_range_share"], abs=0.02
    )
    lo, hi = targets["suggested_range"]
    assert (lo, hi) == pytest.approx(prior.suggested_y_range)
    (warning,) = [w for w in rep["warnings"] if "outside the bucket borders" in w]
    assert f"y_min={lo:.4g}, y_max={hi:.4g}" in warning
    assert rep["exact"]["calibrated"] and rep["exact"]["ks"]["samples"] == 64 * 12
    speed = rep["speed"]
    assert speed["batch_size"] == 8 and speed["seq_len"] == 12
    assert 0 < speed["data_share"] < 1 and speed["step_s"] > 0
    names = sorted(p.rsplit("/", 1)[-1] for p in rep["figures"])
    assert names == ["exact_pit.png", "prior_draws.png", "prior_targets.png"]
    assert all((tmp_path / n).stat().st_size > 5_000 for n in names)
    # the suggested range itself leaves (almost) nothing outside
    wide = prior_check(prior, model_config=_regression(lo, hi), exact=False, speed=False)
    assert wide["targets"]["out_of_range_share"] < 1e-3 and wide["warnings"] == []


def test_discrete_and_formula_free_priors() -> None:
    coin = prior_check(
        CoinFlipPrior(),
        model_config=UnsupervisedConfig(d_model=16, n_layers=1, n_heads=2, input_type="discrete",
                                        d_vocab=2),
        speed=False, num_datasets=64, seq_len=10,
    )  # fmt: skip
    assert coin["targets"]["kind"] == "discrete" and len(coin["targets"]["counts"]) == 2
    assert coin["targets"]["out_of_range_share"] == 0.0
    assert coin["exact"]["calibrated"] and coin["exact"]["randomised"]
    mlp = prior_check(MLPPrior(), model_config=_regression(-3, 3), speed=False)
    assert mlp["has_exact"] is False and "exact" not in mlp
    with pytest.raises(ValueError, match="input_dim=2.*input_dim=1"):
        prior_check(MLPPrior(), model_config=_regression(-3, 3, input_dim=2), speed=False)


class _WrongNormalMean(ExactPosteriorMixin, DataGenerator):
    """A hand-written posterior that forgets the noise variance (too narrow)."""

    input_dim = None
    target_type = "continuous"

    def generate_batch(self, batch_size: int, seq_len: int):
        return None, torch.randn(batch_size, 1) + 0.5 * torch.randn(batch_size, seq_len)

    def exact_log_predictive(self, x: Tensor | None, y: Tensor) -> Tensor:
        yd = y.double()
        prec = 1 + torch.arange(y.shape[1], dtype=torch.float64) / 0.25
        mean = (yd.cumsum(1) - yd) / 0.25 / prec
        return normal_log_pdf(yd, mean, (1 / prec).sqrt()).float()


def test_a_wrong_posterior_formula_is_caught_before_training() -> None:
    cfg = UnsupervisedConfig(d_model=16, n_layers=1, n_heads=2, input_type="continuous")
    rep = prior_check(_WrongNormalMean(), model_config=cfg, speed=False, num_datasets=96,
                      seq_len=8)  # fmt: skip
    assert rep["exact"]["calibrated"] is False
    assert any("exact posterior formula fails its PIT check" in w for w in rep["warnings"])
    assert math.isfinite(rep["exact"]["ks"]["distance"])


def test_cli_prior_check_of_a_users_prior(tmp_path) -> None:
    """`pfn prior-check --config-dir` on the user's own prior with a wrong posterior."""
    (tmp_path / "my_prior.py").write_text(
        textwrap.dedent(
            """
            import torch
            from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin

            class NormalMean(ExactPosteriorMixin, DataGenerator):
                input_dim = None
                target_type = "continuous"

                def generate_batch(self, batch_size, seq_len):
                    mu = torch.randn(batch_size, 1)
                    return None, mu + 0.5 * torch.randn(batch_size, seq_len)

                def exact_log_predictive(self, x, y):  # forgets the noise variance
                    yd = y.double()
                    prec = 1 + torch.arange(y.shape[1], dtype=torch.float64) / 0.25
                    mean = (yd.cumsum(1) - yd) / 0.25 / prec
                    var = 1 / prec
                    return (-0.5 * (yd - mean) ** 2 / var - 0.5 * torch.log(2 * torch.pi * var)).float()
            """
        )
    )
    conf = tmp_path / "conf" / "prior"
    conf.mkdir(parents=True)
    (conf / "normal_mean.yaml").write_text("_target_: my_prior.NormalMean\n")
    out = tmp_path / "report"
    proc = run_pfn(
        [
            "prior-check", "--config-dir", str(tmp_path / "conf"), "prior=normal_mean",
            "model=unsupervised_continuous", "training=tiny", "num_datasets=64",
            "seq_len=8", "speed_repeats=1", f"out={out}",
        ],
        tmp_path,
    )  # fmt: skip
    assert "exact posterior formula (PIT)" in proc.stdout and "fails" in proc.stdout
    assert "warning:" in proc.stdout
    report = json.loads((out / "prior_check.json").read_text())
    assert report["prior_choice"] == "normal_mean" and report["exact"]["calibrated"] is False
    assert "values" not in report["targets"]  # figure data stay out of the JSON
    assert {p.name for p in out.glob("*.png")} == {
        "exact_pit.png", "prior_draws.png", "prior_targets.png"
    }  # fmt: skip
    bad = run_pfn(["prior-check", "prior=gp", "num_datasets=0"], tmp_path, check=False)
    assert bad.returncode == 2 and "num_datasets=0 is not valid" in bad.stderr
    assert "pfn prior-check: error:" in bad.stderr
