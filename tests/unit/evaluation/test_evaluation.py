"""evaluate(): oracle models built from the exact predictive must score excess NLL ~ 0."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pfn_transformers import PFN, describe_generator
from pfn_transformers.evaluation import (
    bucket_logits_from_cdf,
    evaluate,
    plot_evaluation,
    plot_predictive_bands,
)
from pfn_transformers.evaluation.metrics import floor_logits
from pfn_transformers.model.bucketizer import Bucketizer
from pfn_transformers.model.configs import (
    ClassificationConfig,
    RegressionConfig,
    UnsupervisedConfig,
)
from pfn_transformers.priors import (
    CoinFlipPrior,
    GPHyperPrior,
    GPPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
    MarkovChainPrior,
    MLPPrior,
    NormalInverseGammaPrior,
)

SMALL = {"d_model": 8, "n_layers": 1, "n_heads": 1}


class FakeModel(torch.nn.Module):
    """Implements the PFN contract evaluate() uses (task, predictive_logits, log_prob,
    point_prediction, out_of_range, predict) with the exact predictive as its 'logits'."""

    def __init__(self, prior, config, mode: str, bucketizer: Bucketizer | None = None):
        super().__init__()
        self.prior, self.config, self.mode = prior, config, mode
        self.task = config.task
        self.bucketizer = bucketizer
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def predictive_logits(self, x_or_y, y=None):
        return self.forward(x_or_y, y)

    def out_of_range(self, y):
        b = self.bucketizer
        if b is None or b.support != "bounded":
            return None
        return (y < b.borders[0]) | (y > b.borders[-1])

    def forward(self, x_or_y, y=None):
        x, y = (None, x_or_y) if y is None else (x_or_y, y)
        p = self.prior
        if self.mode == "prior_only":  # ignores the context: n = 0 predictive everywhere
            b, s = y.shape
            xs = None if x is None else x.reshape(b * s, 1, -1)
            mean, std = p.exact_predictive_moments(xs, y.reshape(b * s, 1))
            return torch.stack([mean, std.log()], -1).reshape(b, s, 2).float()
        if self.mode == "discrete":
            return p.exact_predictive_log_probs(x, y).float()
        if self.mode == "bar":
            cdf = p.exact_predictive_cdf(x, y, self.bucketizer.borders.double())
            return bucket_logits_from_cdf(cdf, self.bucketizer.support)
        if self.mode == "gauss":
            if hasattr(p, "exact_predictive_params"):  # NIG: Student-t, keep exact via params
                return torch.stack(p.exact_predictive_params(y), -1)
            mean, std = p.exact_predictive_moments(x, y)
            return torch.stack([mean, std.log()], -1).float()
        if self.mode == "point":
            return p.exact_predictive_mean(x, y).unsqueeze(-1)
        raise AssertionError(self.mode)

    def log_prob(self, logits, y):
        if self.mode == "discrete":
            return torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if self.mode == "bar":
            return self.bucketizer.log_prob(logits, y)
        if self.mode == "point":
            raise ValueError("point head")
        if logits.shape[-1] == 3:
            return torch.distributions.StudentT(
                logits[..., 0], logits[..., 1], logits[..., 2]
            ).log_prob(y)
        return torch.distributions.Normal(logits[..., 0], logits[..., 1].exp()).log_prob(y)

    def point_prediction(self, logits):
        if self.mode == "discrete":
            return logits.argmax(-1)
        if self.mode == "bar":
            return self.bucketizer.mean(logits)
        return logits[..., 1] if logits.shape[-1] == 3 else logits[..., 0]

    def predict(self, xc, yc, xq):
        m = xq.shape[1]
        xs = torch.cat([xc.expand(m, -1, -1), xq[0].unsqueeze(1)], 1)
        ys = torch.cat([yc.expand(m, -1), torch.zeros(m, 1)], 1)
        return self.forward(xs, ys)[:, -1].unsqueeze(0)


def _no_nan_json(results):
    return json.loads(json.dumps(results, allow_nan=False))


def test_discrete_oracle_has_zero_excess_and_kl():
    prior = MarkovChainPrior(num_states=4)
    cfg = UnsupervisedConfig(input_type="discrete", d_vocab=4, **SMALL)
    res = evaluate(
        FakeModel(prior, cfg, "discrete"), prior, num_datasets=64, seq_len=12, batch_size=32
    )
    _no_nan_json(res)
    assert res["head"] == "discrete"
    assert abs(res["excess_nll"]["mean"]) < 1e-6 and abs(res["kl"]["mean"]) < 1e-6
    assert len(res["excess_nll"]["per_n"]) == 12
    assert res["accuracy"]["mean"] == pytest.approx(res["exact_accuracy"]["mean"])
    assert res["nll"]["mean"] == pytest.approx(res["exact_nll"]["mean"], abs=1e-5)
    # position 0 is the uniform prior predictive; later positions learn the transitions
    assert res["prior_predictive_nll"]["mean"] == pytest.approx(math.log(4), abs=1e-5)
    assert res["beats_prior_predictive"] is True


def test_classification_oracle():
    prior = LogisticClassificationPrior(num_mc_samples=256)
    cfg = ClassificationConfig(input_dim=2, num_classes=3, **SMALL)
    res = evaluate(FakeModel(prior, cfg, "discrete"), prior, num_datasets=32, seq_len=8)
    assert abs(res["excess_nll"]["mean"]) < 1e-6 and res["accuracy"]["mean"] > 0.4


def test_gaussian_oracle_has_zero_excess_and_exact_mse():
    prior = LinearRegressionPrior()
    cfg = RegressionConfig(input_dim=1, **SMALL)
    model = FakeModel(prior, cfg, "gauss")
    res = evaluate(model, prior, num_datasets=100, seq_len=10, batch_size=40)
    assert res["head"] == "density" and res["coverage"] is None and res["floor_nll"] is None
    assert abs(res["excess_nll"]["mean"]) < 1e-5 and res["excess_nll"]["stderr"] < 1e-5
    assert res["mse"]["mean"] == pytest.approx(res["exact_mse"]["mean"], rel=1e-5)
    # posterior narrows with n: exact NLL at n = 9 below n = 0
    assert res["exact_nll"]["per_n"][9] < res["exact_nll"]["per_n"][0] - 1.0


def test_student_t_oracle_unsupervised_continuous():
    prior = NormalInverseGammaPrior()
    cfg = UnsupervisedConfig(input_type="continuous", **SMALL)
    res = evaluate(FakeModel(prior, cfg, "gauss"), prior, num_datasets=64, seq_len=10)
    assert abs(res["excess_nll"]["mean"]) < 1e-5


def test_bar_oracle_reaches_the_floor_and_is_calibrated():
    prior = GPPrior()
    lo, hi = prior.suggested_y_range
    bucketizer = Bucketizer.uniform(lo, hi, 200)
    cfg = RegressionConfig(input_dim=1, d_vocab=200, y_min=lo, y_max=hi, **SMALL)
    model = FakeModel(prior, cfg, "bar", bucketizer)
    res = evaluate(model, prior, num_datasets=256, seq_len=10, batch_size=128)
    _no_nan_json(res)
    assert res["head"] == "bar" and res["num_buckets"] == 200
    assert res["nll"]["mean"] == pytest.approx(res["floor_nll"]["mean"], abs=1e-4)
    floor, se = res["floor_excess_nll"]["mean"], res["floor_excess_nll"]["stderr"]
    assert -2 * se < floor < 0.02  # bucket width 0.04 against predictive std >= 0.1: ~0
    assert res["excess_nll"]["mean"] == pytest.approx(floor, abs=1e-4)
    for level in ("0.5", "0.9"):
        assert res["coverage"][level]["mean"] == pytest.approx(float(level), abs=0.04)
    # coarser buckets -> higher floor
    coarse = Bucketizer.uniform(lo, hi, 20)
    cfg20 = RegressionConfig(input_dim=1, d_vocab=20, y_min=lo, y_max=hi, **SMALL)
    res20 = evaluate(FakeModel(prior, cfg20, "bar", coarse), prior, num_datasets=256, seq_len=10)
    assert res20["floor_excess_nll"]["mean"] > 5 * max(floor, 0.002)


def test_context_free_model_is_the_prior_predictive():
    prior = LinearRegressionPrior()
    cfg = RegressionConfig(input_dim=1, **SMALL)
    res = evaluate(FakeModel(prior, cfg, "prior_only"), prior, num_datasets=64, seq_len=10)
    assert res["nll"]["mean"] == pytest.approx(res["prior_predictive_nll"]["mean"], abs=1e-4)
    assert res["excess_nll"]["mean"] > 0.3
    assert res["excess_nll"]["per_n"][0] == pytest.approx(0.0, abs=1e-5)
    assert res["beats_prior_predictive"] is False


def test_point_head_reports_mse_only():
    prior = GPPrior()
    cfg = RegressionConfig(input_dim=1, prediction_type="point", **SMALL)
    res = evaluate(FakeModel(prior, cfg, "point"), prior, num_datasets=32, seq_len=8)
    assert res["head"] == "point" and res["nll"] is None and res["excess_nll"] is None
    assert res["mse"]["mean"] == pytest.approx(res["exact_mse"]["mean"], rel=1e-5)
    _no_nan_json(res)


def test_deterministic_and_leaves_caller_rng_alone():
    prior = CoinFlipPrior()
    cfg = UnsupervisedConfig(input_type="discrete", d_vocab=2, **SMALL)
    model = FakeModel(prior, cfg, "discrete")
    model.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    r1 = evaluate(model, prior, num_datasets=16, seq_len=5, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    assert model.training  # mode restored
    r2 = evaluate(model, prior, num_datasets=16, seq_len=5, seed=7)
    r3 = evaluate(model, prior, num_datasets=16, seq_len=5, seed=8)
    assert r1["exact_nll"] == r2["exact_nll"] and r1["exact_nll"] != r3["exact_nll"]


def test_errors_name_the_problem():
    prior = GPPrior()
    cfg = UnsupervisedConfig(input_type="discrete", d_vocab=2, **SMALL)
    with pytest.raises(ValueError, match="unsupervised"):
        evaluate(FakeModel(prior, cfg, "discrete"), prior, seq_len=4)
    coin = CoinFlipPrior()
    cfg = UnsupervisedConfig(input_type="continuous", **SMALL)
    with pytest.raises(
        ValueError, match="CoinFlipPrior is unsupervised \\(y only\\) with discrete tokens"
    ):
        evaluate(FakeModel(coin, cfg, "gauss"), coin, seq_len=4)
    with pytest.raises(ValueError, match="seq_len"):
        evaluate(FakeModel(coin, cfg, "gauss"), coin)


def test_plots(tmp_path):
    prior = GPPrior()
    lo, hi = prior.suggested_y_range
    bucketizer = Bucketizer.uniform(lo, hi, 50)
    cfg = RegressionConfig(input_dim=1, d_vocab=50, y_min=lo, y_max=hi, **SMALL)
    model = FakeModel(prior, cfg, "bar", bucketizer)
    res = evaluate(model, prior, num_datasets=32, seq_len=6)
    paths = plot_evaluation(res, tmp_path / "figs")
    names = {p.name for p in paths}
    assert {"nll_vs_context.png", "calibration.png", "mse_vs_context.png"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    band = plot_predictive_bands(model, prior, tmp_path / "bands.png", num_context=5, num_query=50)
    assert band.exists() and band.stat().st_size > 1000
    disc = evaluate(
        FakeModel(CoinFlipPrior(), UnsupervisedConfig(d_vocab=2, **SMALL), "discrete"),
        CoinFlipPrior(),
        num_datasets=8,
        seq_len=4,
    )
    assert "accuracy_vs_context.png" in {p.name for p in plot_evaluation(disc, tmp_path)}


# --------------------------------------------------------------------------- real PFN
TRAINED = {"d_model": 32, "n_layers": 1, "n_heads": 2}


@pytest.mark.parametrize(
    ("prior", "cfg"),
    [
        (CoinFlipPrior(), UnsupervisedConfig(input_type="discrete", d_vocab=2, **TRAINED)),
        (GPPrior(), RegressionConfig(input_dim=1, d_vocab=30, y_min=-3.5, y_max=3.5, **TRAINED)),
        (MLPPrior(), RegressionConfig(input_dim=1, d_vocab=30, y_min=-4, y_max=4, **TRAINED)),
    ],
    ids=["coin", "gp", "mlp-no-exact"],
)
def test_real_tiny_pfn(tmp_path, prior, cfg):
    from pfn_transformers import TrainingConfig, train

    tc = TrainingConfig(
        batch_size=32,
        seq_len=8,
        num_steps=100,
        learning_rate=3e-3,
        warmup_steps=5,
        log_every=1000,
        save_checkpoint=False,
        checkpoint_dir=str(tmp_path / "ckpt"),
        device="cpu",
        progress_bar=False,
    )
    model = train(prior, cfg, tc)
    res = evaluate(model, prior, num_datasets=128, seq_len=8, batch_size=64)
    _no_nan_json(res)
    assert res["nll"]["mean"] is not None and math.isfinite(res["nll"]["mean"])
    # the reference a model that ignores its context reaches: the prior predictive at every
    # position (exact where the prior has it, else the PFN's own n = 0 prediction); such a
    # model scores beats_prior_predictive=False (test_context_free_model_is_the_prior_predictive)
    gain = res["nll_minus_prior_predictive"]
    assert res["beats_prior_predictive"] is True, gain  # below it by more than 2 stderr
    if isinstance(prior, MLPPrior):
        assert res["excess_nll"] is None and res["prior_predictive_nll"]["mean"] is not None
    else:
        excess = res["excess_nll"]
        assert excess["mean"] > -3 * excess["stderr"]  # no model beats the exact predictive
    if isinstance(prior, GPPrior):
        assert res["floor_excess_nll"]["mean"] >= 0 and res["coverage"] is not None
        plot_predictive_bands(model, prior, tmp_path / "bands.png", num_context=4, num_query=20)


def _load_bench_quality():
    """``benchmarks/bench_quality.py`` as a module (benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_quality_benchmark_settings_build():
    """Every shipped benchmark task builds its prior and a valid model config."""
    bench = _load_bench_quality()
    assert set(bench.TASKS) == {"coin", "categorical", "markov", "linear", "gp", "mixture", "nig"}
    for task in bench.TASKS.values():
        cls, kwargs = task["prior"]
        prior = cls(**kwargs)
        cfg = bench.build_model_config(task)
        assert cfg.task.supervised == describe_generator(prior).supervised
        if prior.target_type == "continuous":
            assert cfg.d_vocab >= 100 and cfg.prediction_type == "distribution"
    borders = bench.core_tail_borders(2.0, 0.5, 20.0, 1.5)
    assert borders == sorted(borders) and borders[0] < -20 and borders[-1] > 20
    assert len(set(borders)) == len(borders)


def test_quality_benchmark_picks_threads_on_the_best_of_interleaved_probes(monkeypatch):
    """One slow probe of all cores (a busy moment) must not pick one thread; the probe times
    are returned for the results file."""
    bench = _load_bench_quality()
    before = torch.get_num_threads()
    seen = []
    two_cores = iter([0.060, 0.030])  # all cores: slow once, then 1.5x faster than one

    def probe(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return 0.045 if torch.get_num_threads() == 1 else next(two_cores)

    monkeypatch.setattr(bench, "_probe_step_time", probe)
    monkeypatch.setattr(bench, "_MAX_THREADS", 2)
    try:
        best, timings = bench._pick_threads(None, None, 64, 20)
        assert seen == [1, 2, 1, 2]
        assert best == 2 and timings == {1: 0.045, 2: 0.030}
        two_cores = iter([0.040, 0.041])  # not 1.3x faster: one thread
        assert bench._pick_threads(None, None, 64, 20)[0] == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("support", ["unbounded", "bounded"])
def test_floor_from_the_two_borders_of_y_equals_the_floor_from_every_border(support):
    """The floor needs the exact cdf at y's bucket only: same log density as building the
    best bar distribution from the cdf at all K + 1 borders (edge buckets and tails included)."""
    torch.manual_seed(0)
    prior = GPPrior(input_dim=1, lengthscale=0.2, noise_var=0.01)
    config = RegressionConfig(
        input_dim=1, d_model=16, n_layers=1, n_heads=2, d_vocab=50, y_min=-2.5, y_max=2.5,
        bucket_support=support,
    )  # fmt: skip
    bucketizer = Bucketizer.from_config(config)
    x, y = prior.generate_batch(16, 12)
    y[:, 5] = torch.linspace(-2.6, 2.6, 16)  # edge buckets and, when unbounded, the tails
    cdf = prior.exact_predictive_cdf(x, y, bucketizer.borders.double())
    full = bucketizer.log_prob(bucket_logits_from_cdf(cdf, support), y.double())
    fast = bucketizer.log_prob(floor_logits(prior, bucketizer, x, y), y.double())
    scored = torch.isfinite(full)
    assert scored.float().mean() > 0.9 and torch.equal(scored, torch.isfinite(fast))
    torch.testing.assert_close(fast[scored], full[scored], rtol=0, atol=1e-9)


def test_gp_hyper_reference_in_one_pass_equals_its_two_separate_passes():
    torch.manual_seed(1)
    prior = GPHyperPrior(quadrature_nodes=(6, 8, 6))
    x, y = prior.generate_batch(5, 7)
    values = torch.randn(5, 7, 3) * 5
    logp, cdf = prior.exact_log_predictive_and_cdf(x, y, values)
    assert torch.equal(logp, prior.exact_log_predictive(x, y))
    assert torch.equal(cdf, prior.exact_predictive_cdf(x, y, values))


def test_evaluate_takes_the_one_pass_reference_with_the_same_numbers():
    class TwoPasses(GPHyperPrior):
        @property
        def exact_log_predictive_and_cdf(self):  # hides the one-pass method from evaluate
            raise AttributeError

    torch.manual_seed(0)
    model = PFN(RegressionConfig(input_dim=1, d_vocab=100, y_min=-30, y_max=30, **SMALL))
    nodes = {"quadrature_nodes": (6, 8, 6)}
    one = evaluate(model, GPHyperPrior(**nodes), num_datasets=8, seq_len=6, batch_size=4)
    two = evaluate(model, TwoPasses(**nodes), num_datasets=8, seq_len=6, batch_size=4)
    for key in ("exact_nll", "floor_nll", "excess_nll", "nll"):
        assert one[key] == two[key]
    assert one["floor_nll"]["mean"] is not None
