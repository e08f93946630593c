"""Every Python snippet of the spec's Steps 1-3, Utilities, Checkpointing and Examples 1-2,
run as written (W&B off, ``num_steps`` shrunk), with shapes asserted."""

from __future__ import annotations

import dataclasses

import pytest
import torch

SMALL = {"num_steps": 3, "log_every": 1, "progress_bar": False}


def test_quick_start_imports():
    from pfn_transformers import (  # noqa: F401
        DeterministicGenerator,
        RegressionConfig,
        TrainingConfig,
        sample_batch,
        train,
    )


def test_top_level_and_submodule_imports():
    import pfn_transformers
    from pfn_transformers import (  # noqa: F401
        PFN,
        BayesianGenerator,
        ClassificationConfig,
        DatasetGenerator,
        DeterministicGenerator,
        RegressionConfig,
        TrainingConfig,
        UnsupervisedBayesian,
        UnsupervisedConfig,
        WandbLogger,
        bayes,
        checkpointing,
        configs,
        estimate_riemann_borders,
        generators,
        sample_batch,
        train,
        wandb,
    )
    from pfn_transformers.bayes import Likelihood, Prior  # noqa: F401
    from pfn_transformers.configs import Classification, Regression, Unsupervised
    from pfn_transformers.generators import (
        Bayesian,
        Dataset,
        Deterministic,
    )
    from pfn_transformers.generators import UnsupervisedBayesian as UB

    assert Regression is RegressionConfig and Classification is ClassificationConfig
    assert Unsupervised is UnsupervisedConfig
    assert Deterministic is DeterministicGenerator and Bayesian is BayesianGenerator
    assert Dataset is DatasetGenerator and UB is UnsupervisedBayesian
    assert callable(pfn_transformers.train)
    assert wandb.__name__ == "pfn_transformers.wandb" and WandbLogger.__module__.startswith(
        wandb.__name__
    )
    assert set(pfn_transformers.__all__) <= set(dir(pfn_transformers)) | {"WandbLogger", "wandb"}


def test_option_a_deterministic():
    from pfn_transformers import DeterministicGenerator

    def my_function(x, params):
        w, b = params
        return (w * x).sum(dim=-1) + b

    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.5])), 1
    )
    data_gen = DeterministicGenerator(prior=prior, function=my_function, input_dim=5, noise_std=0.1)
    x, y = data_gen.generate(seq_len=64)
    assert x.shape == (64, 5) and y.shape == (64,)
    # noiseless variant is an exact function of x: here y = w * sum(x) + b per dataset, so a
    # least-squares line through (sum(x), y) leaves no residual; with noise it leaves ~0.1
    exact = DeterministicGenerator(prior=prior, function=my_function, input_dim=5, noise_std=None)
    xb, yb = exact.generate_batch(4, 16)
    assert xb.shape == (4, 16, 5) and yb.shape == (4, 16)

    def residual(x, y):
        design = torch.stack([x.sum(-1), torch.ones_like(y)], -1).double()
        fit = torch.linalg.lstsq(design, y.double().unsqueeze(-1)).solution
        return (design @ fit).squeeze(-1) - y.double()

    assert residual(xb, yb).abs().max() < 1e-4
    assert residual(*data_gen.generate_batch(4, 16)).std() > 0.05


def test_option_b_bayesian():
    from pfn_transformers import BayesianGenerator
    from pfn_transformers.bayes import Likelihood, Prior

    prior = Prior(torch.distributions.Normal(0.0, 1.0))

    def parameterizer(theta, x):
        mean = (theta * x).sum(dim=-1)
        return {"loc": mean, "scale": 0.1}

    likelihood = Likelihood(
        distribution_class=torch.distributions.Normal, parameterizer=parameterizer, input_dim=10
    )
    data_gen = BayesianGenerator(prior=prior, likelihood=likelihood)
    x, y = data_gen.generate(seq_len=64)
    assert x.shape == (64, 10) and y.shape == (64,)
    # y is theta * sum(x) + N(0, 0.1): the residual of a per-sequence fit is the noise.
    xb, yb = data_gen.generate_batch(256, 64)
    s = xb.sum(-1)
    theta_hat = (s * yb).sum(1) / (s * s).sum(1)
    resid = yb - theta_hat[:, None] * s
    assert resid.std().item() == pytest.approx(0.1, rel=0.1)


def test_option_c_dataset():
    from pfn_transformers import DatasetGenerator

    x_data = torch.randn(1000, 10)
    y_data = torch.randn(1000)
    data_gen = DatasetGenerator(x_data=x_data, y_data=y_data, sequential=False)
    x, y = data_gen.generate(seq_len=64)
    assert x.shape == (64, 10) and y.shape == (64,)
    # every drawn row is a real row of the dataset, with its own y
    idx = torch.cdist(x, x_data).argmin(dim=1)
    assert torch.equal(y_data[idx], y)
    seq = DatasetGenerator(x_data=x_data, y_data=y_data, sequential=True)
    xs, _ = seq.generate(seq_len=8)
    rows = torch.cdist(xs, x_data).argmin(dim=1)
    assert torch.equal(rows, rows[0] + torch.arange(8))


def test_option_d_unsupervised():
    from pfn_transformers import UnsupervisedBayesian
    from pfn_transformers.bayes import Likelihood, Prior

    prior = Prior(torch.distributions.Normal(0.0, 1.0))

    def parameterizer(theta, x):
        seq_len = x.shape[0]
        return {"loc": theta.expand(seq_len), "scale": 0.5}

    likelihood = Likelihood(
        distribution_class=torch.distributions.Normal, parameterizer=parameterizer, input_dim=1
    )
    data_gen = UnsupervisedBayesian(prior=prior, likelihood=likelihood)
    y = data_gen.generate(seq_len=64)
    assert y.shape == (64,)
    _, yb = data_gen.generate_batch(512, 64)
    # within-sequence spread is the likelihood's 0.5; the means spread like the N(0,1) prior
    assert yb.std(dim=1).mean().item() == pytest.approx(0.5, rel=0.1)
    assert yb.mean(dim=1).std().item() == pytest.approx(1.0, rel=0.15)


def test_step2_model_configs():
    from pfn_transformers import (
        ClassificationConfig,
        RegressionConfig,
        UnsupervisedConfig,
        estimate_riemann_borders,
    )

    c = RegressionConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10, prediction_type="point"
    )
    assert c.d_mlp == 512 and c.act_fn == "gelu"
    RegressionConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10,
        prediction_type="distribution", bucket_type="uniform", d_vocab=100, y_min=-5.0, y_max=5.0,
    )  # fmt: skip
    borders = estimate_riemann_borders(torch.randn(10000), num_buckets=100)
    assert borders.shape == (101,)
    RegressionConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10,
        prediction_type="distribution", bucket_type="riemann", d_vocab=100, riemann_borders=borders,
    )  # fmt: skip
    cc = ClassificationConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10, num_classes=5
    )
    assert cc.d_vocab == 5
    u = UnsupervisedConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32,
        input_type="discrete", prediction_type="distribution", d_vocab=1000,
    )  # fmt: skip
    assert u.mask_type == "gpt2"
    UnsupervisedConfig(
        d_model=128,
        n_layers=4,
        n_heads=4,
        d_head=32,
        input_type="continuous",
        prediction_type="point",
    )
    UnsupervisedConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_type="continuous",
        prediction_type="distribution", bucket_type="uniform", d_vocab=100, y_min=-5.0, y_max=5.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="mask_type='autoregressive-pfn'.*gpt2"):
        UnsupervisedConfig(input_type="discrete", d_vocab=10, mask_type="autoregressive-pfn")


def _linear_gen(input_dim=10):
    from pfn_transformers import DeterministicGenerator

    return DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=lambda x, w: (w * x).sum(dim=-1),
        input_dim=input_dim,
        noise_std=0.1,
    )


def test_step3_training_with_every_field(tmp_path):
    from pfn_transformers import RegressionConfig, TrainingConfig, train

    model_config = RegressionConfig(d_model=32, n_layers=1, n_heads=2, input_dim=10)
    training_config = TrainingConfig(
        batch_size=8, seq_len=16, num_steps=4, learning_rate=1e-4, weight_decay=1e-5,
        use_warmup=True, warmup_steps=2, use_grad_clip=True, grad_clip=1.0, log_every=2,
        save_checkpoint=True, save_every=2, checkpoint_dir="checkpoints", device="auto",
        eval_every=2, eval_batches=2, progress_bar=False,
    )  # fmt: skip
    eval_gen = _linear_gen()
    model = train(_linear_gen(), model_config, training_config, eval_data_generator=eval_gen)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-2.pt",
        "step-4.pt",
    ]
    assert next(model.parameters()).device.type in ("cpu", "cuda", "mps")


def test_example_1_regression():
    from pfn_transformers import DeterministicGenerator, RegressionConfig, TrainingConfig, train

    def linear_fn(x, w):
        return (w * x).sum(dim=-1)

    data_gen = DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0), function=linear_fn, input_dim=10, noise_std=0.1
    )
    model_config = RegressionConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10,
        prediction_type="distribution", bucket_type="uniform", d_vocab=100, y_min=-5.0, y_max=5.0,
    )  # fmt: skip
    training_config = TrainingConfig(batch_size=32, seq_len=64, use_wandb=False, **SMALL)
    model = train(data_gen, model_config, training_config)
    device = next(model.parameters()).device
    x_test = torch.randn(1, 20, 10).to(device)
    y_test = torch.randn(1, 20).to(device)
    with torch.no_grad():
        logits = model(x_test, y_test)
        log_densities = model.bucketizer.log_bucket_densities(logits)
        pred_buckets = log_densities.argmax(dim=-1)
        pred_y = model.get_y_values(pred_buckets)
    assert logits.shape == (1, 20, 100) and log_densities.shape == (1, 20, 100)
    assert pred_y.shape == (1, 20)


def test_example_2_classification():
    from pfn_transformers import ClassificationConfig, DatasetGenerator, TrainingConfig, train

    x_data = torch.randn(1000, 10)
    y_data = torch.randint(0, 3, (1000,))
    data_gen = DatasetGenerator(x_data, y_data)
    config = ClassificationConfig(
        d_model=128, n_layers=4, n_heads=4, d_head=32, input_dim=10, num_classes=3
    )
    model = train(data_gen, config, TrainingConfig(batch_size=32, seq_len=32, **SMALL))
    device = next(model.parameters()).device
    x_test = torch.randn(1, 10, 10).to(device)
    y_test = torch.randint(0, 3, (1, 10)).to(device)
    with torch.no_grad():
        logits = model(x_test, y_test)
        predictions = logits.argmax(dim=-1)
    assert logits.shape == (1, 10, 3) and predictions.shape == (1, 10)


def test_utilities_sample_batch_and_borders():
    from pfn_transformers import UnsupervisedBayesian, estimate_riemann_borders, sample_batch
    from pfn_transformers.bayes import Likelihood, Prior

    x, y = sample_batch(_linear_gen(), batch_size=32, seq_len=64)
    assert x.shape == (32, 64, 10) and y.shape == (32, 64)
    unsup = UnsupervisedBayesian(
        prior=Prior(torch.distributions.Normal(0.0, 1.0)),
        likelihood=Likelihood(
            torch.distributions.Normal, lambda t, x: {"loc": t.expand(x.shape[0]), "scale": 0.5}, 1
        ),
    )
    x, y = sample_batch(unsup, batch_size=32, seq_len=64)
    assert x is None and y.shape == (32, 64)
    sample_data = torch.randn(10000)
    borders = estimate_riemann_borders(sample_data, num_buckets=100)
    assert borders.shape == (101,) and bool((borders.diff() > 0).all())


def test_checkpointing_snippet(tmp_path):
    from pfn_transformers import PFN, RegressionConfig, TrainingConfig, checkpointing

    model_config = RegressionConfig(d_model=32, n_layers=1, n_heads=2, input_dim=10)
    training_config = TrainingConfig(num_steps=10)
    model = PFN(model_config)
    checkpointing.save_checkpoint(
        checkpoint_path="model.pt",
        step=10000,
        model_state=model.state_dict(),
        model_config=model_config,
        training_config=training_config,
    )
    loaded, opt_state, metadata = checkpointing.load_checkpoint(
        checkpoint_path="model.pt", device="auto", load_optimizer=False
    )
    assert opt_state is None and metadata.step == 10000
    assert metadata.model_config == model_config
    assert metadata.training_config == dataclasses.asdict(training_config)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b.cpu()), name
