"""Code written the way the spec shows, by a user who read only the spec.

Only public imports. Generators are plain classes with nothing but ``generate(seq_len)``
(the one protocol the spec documents), unsupervised models are scored with the next-token
idiom ``cross_entropy(logits[:, :-1], y[:, 1:])``, and learning is scored against exact
posterior predictives written out here.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from pfn_transformers import (
    DataGenerator,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedBayesian,
    UnsupervisedConfig,
    sample_batch,
    train,
)
from pfn_transformers.bayes import Likelihood, Prior


# ----------------------------------------------------------------------------- user priors
class LinearTask:
    """y = w x + b + 0.1 eps, w, b ~ N(0, 1), x ~ N(0, 1): a plain class, generate only."""

    input_dim = 1

    def generate(self, seq_len):
        w, b = torch.randn(2)
        x = torch.randn(seq_len, 1)
        return x, w * x[:, 0] + b + 0.1 * torch.randn(seq_len)


class MarkovChain:
    """4-state chain with Dirichlet(1) transition rows and a uniform first state."""

    def generate(self, seq_len):
        rows = torch.distributions.Dirichlet(torch.ones(4, 4)).sample()
        y = torch.empty(seq_len, dtype=torch.long)
        y[0] = torch.randint(4, ())
        for t in range(1, seq_len):
            y[t] = torch.multinomial(rows[y[t - 1]], 1)[0]
        return y


class CoinFlips:
    def generate(self, seq_len):
        theta = torch.rand(())
        return (torch.rand(seq_len) < theta).long()


class RBFProcess:
    """GP with an RBF kernel (lengthscale 0.2), noise variance 0.01, x ~ U[0, 1]."""

    input_dim = 1

    def generate(self, seq_len):
        x = torch.rand(seq_len, 1)
        k = torch.exp(-0.5 * (x - x.T) ** 2 / 0.2**2) + 0.01 * torch.eye(seq_len)
        y = torch.linalg.cholesky(k) @ torch.randn(seq_len)
        return x, y


def markov_exact_nll(y):
    """-log p(y_t | y_<t) for t >= 1 under Dirichlet(1) rows: (1 + n_ij) / (4 + n_i)."""
    b, s = y.shape
    out = torch.zeros(b, s - 1)
    for i in range(b):
        counts = torch.zeros(4, 4)
        for t in range(1, s):
            prev, cur = y[i, t - 1], y[i, t]
            out[i, t - 1] = -math.log((1 + counts[prev, cur]) / (4 + counts[prev].sum()))
            counts[prev, cur] += 1
    return out


def coin_exact_nll(y):
    """-log p(y_t | y_<t) for t >= 1 under a uniform prior on the bias: (1 + k) / (2 + n)."""
    heads = y.float().cumsum(1)[:, :-1]
    n = torch.arange(1, y.shape[1]).float()
    p1 = (1 + heads) / (2 + n)
    nxt = y[:, 1:].float()
    return -(nxt * p1.log() + (1 - nxt) * (1 - p1).log())


def tc(**kw):
    base = {"batch_size": 32, "seq_len": 16, "num_steps": 30, "progress_bar": False}
    return TrainingConfig(**{**base, "learning_rate": 3e-3, "warmup_steps": 20, **kw})


def tiny(cls, **kw):
    return cls(d_model=32, n_layers=2, n_heads=2, **kw)


# ----------------------------------------------------------------------------- the protocol
def test_sample_batch_gives_the_documented_shapes_for_plain_classes():
    x, y = sample_batch(LinearTask(), batch_size=32, seq_len=64)
    assert x.shape == (32, 64, 1) and y.shape == (32, 64)
    assert x.dtype == y.dtype == torch.float32
    x, y = sample_batch(MarkovChain(), batch_size=8, seq_len=20)
    assert x is None and y.shape == (8, 20) and y.dtype == torch.long
    x, y = sample_batch(RBFProcess(), batch_size=4, seq_len=20)
    assert x.shape == (4, 20, 1) and y.shape == (4, 20)
    assert not torch.equal(y[0], y[1])  # independent datasets, not one repeated


def test_rows_stay_independent_when_generate_uses_numpy_randomness():
    import numpy as np

    class NumpySlope:
        input_dim = 1

        def generate(self, seq_len):
            slope = float(np.random.randn())
            x = torch.randn(seq_len, 1)
            return x, slope * x[:, 0]

    x, y = sample_batch(NumpySlope(), 16, 8)
    slopes = (y / x[..., 0]).mean(1)
    assert slopes.unique().numel() == 16


def test_subclassing_datagenerator_with_only_generate_works():
    class Coin(DataGenerator):
        def generate(self, seq_len):
            return CoinFlips().generate(seq_len)

    x, y = sample_batch(Coin(), 5, 7)
    assert x is None and y.shape == (5, 7)
    assert Coin().generate_batch(3, 4)[1].shape == (3, 4)

    class Nothing(DataGenerator):
        pass

    with pytest.raises(TypeError, match="implement generate\\(seq_len\\)"):
        Nothing()


def test_wrong_shapes_get_a_clear_error_never_a_wrong_tensor():
    class OffByOne:
        def generate(self, seq_len):
            return torch.randn(seq_len + 1)

    with pytest.raises(ValueError, match=r"OffByOne produced y of shape \(4, 9\); expected"):
        sample_batch(OffByOne(), 4, 8)


def test_earlier_spellings_of_likelihood_and_scalar_parameters_broadcast():
    likelihood = Likelihood(
        base_distribution=torch.distributions.Bernoulli(probs=0.5),
        parameterizer=lambda theta, x: {"probs": theta},  # one number per sequence
        input_dim=1,
    )
    gen = UnsupervisedBayesian(
        prior=Prior(torch.distributions.Beta(1.0, 1.0)), likelihood=likelihood
    )
    y = gen.generate(seq_len=32)
    assert y.shape == (32,) and set(y.tolist()) <= {0, 1}
    heads = sample_batch(gen, 64, 32)[1].float().mean(1)
    assert heads.std() > 0.15  # one bias per sequence, not one draw broadcast to all


# ----------------------------------------------------------------------------- learning
def test_coin_model_scored_with_the_next_token_idiom_is_close_to_exact(tmp_path):
    torch.manual_seed(0)
    model = train(
        CoinFlips(),
        tiny(UnsupervisedConfig, input_type="discrete", d_vocab=2),
        tc(num_steps=300, seq_len=24, checkpoint_dir=str(tmp_path)),
    )
    y = sample_batch(CoinFlips(), 512, 24)[1]
    with torch.no_grad():
        logits = model(y)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, 2), y[:, 1:].reshape(-1))
    exact = coin_exact_nll(y).mean().item()
    excess = ce.item() - exact
    ignoring = math.log(2) - exact  # a fair-coin guess, the best without the context
    assert abs(excess) < 0.15 * ignoring, (excess, ignoring)


def test_markov_model_trained_from_a_plain_class_beats_ignoring_the_context(tmp_path):
    torch.manual_seed(0)
    model = train(
        MarkovChain(),
        tiny(UnsupervisedConfig, input_type="discrete", d_vocab=4),
        tc(num_steps=250, seq_len=24, checkpoint_dir=str(tmp_path)),
    )
    y = sample_batch(MarkovChain(), 256, 24)[1]
    with torch.no_grad():
        logits = model(y)
    exact = markov_exact_nll(y).mean().item()
    idiom = F.cross_entropy(logits[:, :-1].reshape(-1, 4), y[:, 1:].reshape(-1)).item()
    # ignoring the context, the best guess is uniform (the rows are exchangeable): log 4, about
    # 0.11 nats above exact here; the model must close a quarter of that gap or more
    ignoring = math.log(4) - exact
    assert exact < idiom < exact + 0.75 * ignoring, (idiom, exact, ignoring)


def test_logits_at_t_predict_the_token_after_t(tmp_path):
    class Counting:
        """y_t = y_0 + t (mod 4): the next token is fully known from the current one."""

        def generate(self, seq_len):
            return (torch.randint(4, ()) + torch.arange(seq_len)) % 4

    torch.manual_seed(0)
    model = train(
        Counting(),
        tiny(UnsupervisedConfig, input_type="discrete", d_vocab=4),
        tc(num_steps=60, checkpoint_dir=str(tmp_path)),
    )
    y = sample_batch(Counting(), 64, 16)[1]
    with torch.no_grad():
        logits = model(y)
    idiom = F.cross_entropy(logits[:, :-1].reshape(-1, 4), y[:, 1:].reshape(-1)).item()
    misread = F.cross_entropy(logits[:, 1:].reshape(-1, 4), y[:, 1:].reshape(-1)).item()
    assert idiom < 0.2 and misread > 2.0, (idiom, misread)
    assert (logits[:, -1].argmax(-1) == (y[:, -1] + 1) % 4).all()  # the next, unseen token


def linear_exact_nll(x, y, noise_var=0.01):
    """-log p(y_n | x_n, D_<n) for Bayesian linear regression with w, b ~ N(0, 1)."""
    phi = torch.cat([x, torch.ones_like(x)], -1).double()  # [B, S, 2]
    yd = y.double()
    out = torch.empty_like(yd)
    for n in range(y.shape[1]):
        p, t = phi[:, :n], yd[:, :n]
        precision = torch.eye(2, dtype=torch.float64) + p.transpose(1, 2) @ p / noise_var
        cov = torch.linalg.inv(precision)
        mean = cov @ (p.transpose(1, 2) @ t.unsqueeze(-1)) / noise_var
        q = phi[:, n].unsqueeze(-1)
        mu = (mean.transpose(1, 2) @ q)[:, 0, 0]
        var = noise_var + (q.transpose(1, 2) @ cov @ q)[:, 0, 0]
        out[:, n] = 0.5 * ((yd[:, n] - mu) ** 2 / var + var.log() + math.log(2 * math.pi))
    return out


@pytest.mark.filterwarnings("ignore:.*outside the bounded bar distribution")
def test_plain_regression_class_learns_towards_the_exact_posterior(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(
        RegressionConfig,
        input_dim=1,
        d_vocab=256,
        y_min=-5.0,
        y_max=5.0,
        bucket_support="bounded",
    )
    model = train(LinearTask(), cfg, tc(num_steps=300, checkpoint_dir=str(tmp_path)))
    x, y = sample_batch(LinearTask(), 256, 16)
    with torch.no_grad():
        nll = -model.log_predictive(x, y).double()
    inside = y.abs() <= 5  # the bounded head gives no density outside [y_min, y_max]
    assert torch.isfinite(nll[inside]).all()
    exact = linear_exact_nll(x, y)[inside].mean().item()
    prior_var = x[..., 0].double() ** 2 + 1.01  # n = 0 predictive: N(0, x^2 + 1 + noise)
    prior_only = 0.5 * (y.double() ** 2 / prior_var + (2 * math.pi * prior_var).log())
    prior_only = prior_only[inside].mean().item()
    pfn = nll[inside].mean().item()
    assert exact < pfn < exact + 0.5 * (prior_only - exact), (exact, pfn, prior_only)


def test_plain_gp_class_trains(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(RegressionConfig, input_dim=1, d_vocab=64, y_min=-4.0, y_max=4.0)
    metrics = tmp_path / "metrics.jsonl"
    model = train(
        RBFProcess(),
        cfg,
        tc(num_steps=80, log_every=40, metrics_path=str(metrics), checkpoint_dir=str(tmp_path)),
    )
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [40, 80]
    x, y = sample_batch(RBFProcess(), 256, 16)
    with torch.no_grad():
        nll = -model.log_predictive(x, y).double()
    # ignoring the context, the best predictive is the marginal N(0, 1 + 0.01) at every point
    ignoring = -torch.distributions.Normal(0.0, math.sqrt(1.01)).log_prob(y.double())
    gain = (nll - ignoring)[:, 4:].mean(1)  # per dataset, once a few points are known
    assert gain.mean() + 3 * gain.std() / math.sqrt(len(gain)) < 0, (gain.mean(), gain.std())


def test_bounded_support_with_outliers_trains_and_warns_once(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(
        RegressionConfig, input_dim=1, d_vocab=32, bucket_support="bounded", y_min=-1.0, y_max=1.0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = train(
            LinearTask(), cfg, tc(num_steps=40, log_every=10, checkpoint_dir=str(tmp_path))
        )
    messages = [str(w.message) for w in caught if "outside the bounded" in str(w.message)]
    assert len(messages) == 1 and "edge buckets" in messages[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_model_calls_accept_inputs_on_another_device():
    # the meta device stands in for a GPU: mixing devices would raise, moving inputs works
    model = RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=2, d_vocab=10)
    from pfn_transformers import PFN

    net = PFN(model).to("meta")
    x, y = torch.randn(2, 5, 2), torch.randn(2, 5)
    assert net(x, y).device.type == "meta"
    assert net.predict(x, y, torch.randn(2, 3, 2)).shape == (2, 3, 10)
    assert net.bucketizer.mean(torch.randn(2, 5, 10)).device.type == "meta"
    _, cache = net.run_with_cache(x, y)
    assert cache["blocks.0.attn.hook_pattern"].device.type == "meta"
    seq = PFN(UnsupervisedConfig(d_model=16, n_layers=1, n_heads=2, d_vocab=3)).to("meta")
    assert seq(torch.randint(0, 3, (2, 5))).device.type == "meta"


# ----------------------------------------------------------------------------- the CLI
USER_PRIORS = """
import torch


class LinearTask:
    input_dim = 1

    def generate(self, seq_len):
        w, b = torch.randn(2)
        x = torch.randn(seq_len, 1)
        return x, w * x[:, 0] + b + 0.1 * torch.randn(seq_len)


class MarkovChain:
    num_classes = 4

    def __init__(self, concentration=1.0):
        self.concentration = concentration

    def generate(self, seq_len):
        rows = torch.distributions.Dirichlet(self.concentration * torch.ones(4, 4)).sample()
        y = torch.empty(seq_len, dtype=torch.long)
        y[0] = torch.randint(4, ())
        for t in range(1, seq_len):
            y[t] = torch.multinomial(rows[y[t - 1]], 1)[0]
        return y


class Unsized(MarkovChain):
    num_classes = None


class RBFProcess:
    input_dim = 1

    def generate(self, seq_len):
        x = torch.rand(seq_len, 1)
        k = torch.exp(-0.5 * (x - x.T) ** 2 / 0.2**2) + 0.01 * torch.eye(seq_len)
        return x, torch.linalg.cholesky(k) @ torch.randn(seq_len)
"""


def test_plain_classes_train_through_the_cli(tmp_path):
    from tests.cli_helpers import TINY, read_status, run_dirs, run_pfn

    (tmp_path / "user_priors.py").write_text(USER_PRIORS)
    conf = tmp_path / "my_conf" / "prior"
    conf.mkdir(parents=True)
    for name, cls in (("lin", "LinearTask"), ("chain", "MarkovChain"), ("rbf", "RBFProcess")):
        (conf / f"{name}.yaml").write_text(f"_target_: user_priors.{cls}\n")
    (conf / "unsized.yaml").write_text("_target_: user_priors.Unsized\n")
    runs = [
        ["prior=lin"],
        ["model=unsupervised_discrete", "prior=chain"],
        ["prior=rbf"],
    ]
    for i, choice in enumerate(runs, start=1):
        run_pfn(["train", "--config-dir", "my_conf", *choice, *TINY], tmp_path)
        assert len(run_dirs(tmp_path / "outputs")) == i
    for run in run_dirs(tmp_path / "outputs"):
        assert read_status(run)["status"] == "finished", run
        ev = json.loads((run / "eval.json").read_text())
        assert ev["nll"]["mean"] is not None and math.isfinite(ev["nll"]["mean"])
    chain = next(r for r in run_dirs(tmp_path / "outputs") if r.name.endswith("-chain"))
    args = ["sample", f"run={chain}", "num_samples=3", "seq_len=14", "context.n=4", "plot=false"]
    out = run_pfn(args, tmp_path)
    assert "Wrote 3 samples [3, 14]" in out.stdout
    bad = run_pfn(
        ["train", "--config-dir", "my_conf", "model=unsupervised_discrete", "prior=unsized", *TINY],
        tmp_path,
        check=False,
    )
    assert bad.returncode == 2 and "num_classes" in bad.stderr and "Traceback" not in bad.stderr
