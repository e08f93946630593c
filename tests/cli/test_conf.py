"""The Hydra config tree (conf/) through Hydra's compose API: every option composes and
instantiates, every compatible model/prior pair builds a model and runs one batch, and every
incompatible pair is refused with a clear message before training."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pfn_cli.compat import builtin_options
from pfn_cli.errors import CliError
from pfn_cli.experiment import build_experiment, build_training_config
from pfn_cli.resolvers import register_resolvers
from tests.cli_helpers import CONF, one_thread  # noqa: F401 (fixture)

register_resolvers()
pytestmark = pytest.mark.usefixtures("one_thread")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# What each option is (supervised, target type): the test's own table, checked against what
# the CLI reads from the YAML files in test_builtin_options_are_classified_from_their_files.
KINDS: dict[tuple[bool, str], dict[str, list[str]]] = {
    (True, "continuous"): {
        "models": ["regression", "regression_point"],
        "priors": ["csv", "gp", "gp_hyper", "linear", "mixture", "mlp", "polynomial", "step_sine"],
    },
    (True, "discrete"): {"models": ["classification"], "priors": ["logistic"]},
    (False, "discrete"): {
        "models": ["unsupervised_discrete"],
        "priors": ["categorical", "coin", "markov"],
    },
    (False, "continuous"): {"models": ["unsupervised_continuous"], "priors": ["nig"]},
}
MODELS = options("model")
PRIORS = options("prior")
MODEL_KIND = {m: kind for kind, info in KINDS.items() for m in info["models"]}
PRIOR_KIND = {p: kind for kind, info in KINDS.items() for p in info["priors"]}
COMPATIBLE = [(m, p) for m in MODELS for p in PRIORS if MODEL_KIND[m] == PRIOR_KIND[p]]
INCOMPATIBLE = [(m, p) for m in MODELS for p in PRIORS if MODEL_KIND[m] != PRIOR_KIND[p]]
SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2"]


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.csv"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=g)
    y = x @ torch.tensor([1.5, -0.5]) + 0.1 * torch.randn(200, generator=g)
    rows = ["a,b,y"] + [f"{r[0]:.5f},{r[1]:.5f},{t:.5f}" for r, t in zip(x.tolist(), y.tolist())]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test_conf"):
        yield


def compose_train(model: str, prior: str, csv_file: Path, *extra: str):
    overrides = [f"model={model}", f"prior={prior}", *extra]
    if prior == "csv":
        overrides.append(f"prior.path={csv_file}")
    return compose("train", overrides=overrides)


def test_catalogue_is_classified():
    """Every model and prior file has a kind, so pairs (and error hints) cover them all."""
    assert set(MODELS) == set(MODEL_KIND), "add new model options to KINDS in this test"
    assert set(PRIORS) == set(PRIOR_KIND), "add new prior options to KINDS in this test"


def test_builtin_options_are_classified_from_their_files():
    expected = {
        kind: {"models": info["models"], "priors": [p for p in info["priors"] if p != "csv"]}
        for kind, info in KINDS.items()
    }
    assert builtin_options() == expected  # csv needs a path to be built: left out
    assert len(COMPATIBLE) >= 10 and len(INCOMPATIBLE) >= 10


@pytest.mark.parametrize("name", ["train", "eval", "sample"])
def test_primary_configs_compose(name):
    cfg = compose(name)
    assert "outputs_root" in cfg
    if name == "train":
        assert cfg.training.num_steps > 0 and cfg.wandb.enabled is False
        assert cfg.resume is None
    else:
        assert cfg.run == "latest" and cfg.get("prior") is None
        assert compose(name, overrides=["prior=gp"]).prior._target_.endswith("GPPrior")


def test_default_train_is_the_quick_demo():
    cfg = compose("train", return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    assert (choices.model, choices.prior, choices.training, choices.wandb) == (
        "regression",
        "linear",
        "quick",
        "disabled",
    )
    assert choices["hydra/output"] == "pfn_run"
    for name in ("eval", "sample"):
        hydra = compose(name, return_hydra_config=True).hydra
        assert hydra.runtime.choices["hydra/output"] == "in_run"
        assert hydra.output_subdir is None and hydra.run.dir == "."


@pytest.mark.parametrize("prior", PRIORS)
def test_every_prior_instantiates(prior, csv_file):
    from pfn_cli.resolvers import instantiate_prior

    cfg = compose_train(MODEL_KIND_FOR(prior), prior, csv_file)
    gen = instantiate_prior(cfg.prior, prior)
    x, y = gen.generate_batch(2, 5)
    assert y.shape == (2, 5)
    assert (x is None) == (PRIOR_KIND[prior][0] is False)


def MODEL_KIND_FOR(prior: str) -> str:  # noqa: N802 - reads like a table lookup
    return KINDS[PRIOR_KIND[prior]]["models"][0]


@pytest.mark.parametrize("profile", options("training"))
def test_every_training_profile_instantiates(profile, tmp_path):
    from pfn_transformers import TrainingConfig

    cfg = compose("train", overrides=[f"training={profile}"])
    tc = build_training_config(cfg, tmp_path, "run", [])
    assert isinstance(tc, TrainingConfig)
    assert Path(tc.checkpoint_dir) == tmp_path / "checkpoints"
    assert Path(tc.metrics_path) == tmp_path / "metrics.jsonl"
    assert tc.use_wandb is False


def test_default_profile_is_the_spec_defaults(tmp_path):
    from pfn_transformers import TrainingConfig

    tc = build_training_config(compose("train", overrides=["training=default"]), tmp_path, "r", [])
    spec = TrainingConfig()
    for field in ("batch_size", "seq_len", "num_steps", "learning_rate", "weight_decay"):
        assert getattr(tc, field) == getattr(spec, field), field
    for field in ("warmup_steps", "grad_clip", "log_every", "save_every", "eval_batches"):
        assert getattr(tc, field) == getattr(spec, field), field


@pytest.mark.parametrize("mode", options("wandb"))
def test_every_wandb_option_sets_training_fields(mode, tmp_path):
    cfg = compose("train", overrides=[f"wandb={mode}", "wandb.tags=[a]"])
    tc = build_training_config(cfg, tmp_path, "my-run", ["regression", "linear"])
    assert tc.use_wandb is (mode != "disabled")
    if mode != "disabled":
        assert tc.wandb_mode == mode
        assert tc.wandb_run_name == "my-run"
        assert tc.wandb_tags == ["a", "regression", "linear"]
        assert tc.wandb_project


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_builds(experiment, tmp_path):
    cfg = compose("train", overrides=[f"experiment={experiment}", *SMALL])
    exp = build_experiment(cfg, tmp_path)
    assert exp.model_config is not None and exp.prior is not None


@pytest.mark.parametrize(("model", "prior"), COMPATIBLE, ids=[f"{m}-{p}" for m, p in COMPATIBLE])
def test_compatible_pair_builds_model_and_batch(model, prior, csv_file, tmp_path):
    from pfn_transformers import PFN, sample_batch

    cfg = compose_train(model, prior, csv_file, *SMALL)
    exp = build_experiment(cfg, tmp_path, model_choice=model, prior_choice=prior)
    net = PFN(exp.model_config)
    x, y = sample_batch(exp.prior, 2, 6)
    logits = net(y) if x is None else net(x, y)
    assert logits.shape[:2] == (2, 6)
    loss = net.loss(logits, y).mean()
    assert torch.isfinite(loss)
    # model fields follow the prior through interpolation
    if exp.prior.input_dim is not None:
        assert exp.model_config.input_dim == exp.prior.input_dim
    if getattr(exp.prior, "num_classes", None) and exp.prior.target_type == "discrete":
        n = getattr(exp.model_config, "num_classes", None) or exp.model_config.d_vocab
        assert n == exp.prior.num_classes


@pytest.mark.parametrize(
    ("model", "prior"), INCOMPATIBLE, ids=[f"{m}-{p}" for m, p in INCOMPATIBLE]
)
def test_incompatible_pair_is_refused_clearly(model, prior, csv_file, tmp_path):
    cfg = compose_train(model, prior, csv_file, *SMALL)
    with pytest.raises(CliError) as info:
        build_experiment(cfg, tmp_path, model_choice=model, prior_choice=prior)
    msg = str(info.value)
    assert f"model={model}" in msg and f"prior={prior}" in msg
    assert "Incompatible" in msg and "\n" not in msg.strip()


@pytest.mark.parametrize("model", ["regression", "unsupervised_continuous"])
def test_uniform_borders_follow_suggested_y_range(model, tmp_path, csv_file):
    prior = "linear" if model == "regression" else "nig"
    exp = build_experiment(compose_train(model, prior, csv_file, *SMALL), tmp_path)
    lo, hi = exp.prior.suggested_y_range
    assert exp.model_config.y_min == pytest.approx(lo)
    assert exp.model_config.y_max == pytest.approx(hi)


def test_riemann_borders_estimated_from_prior(tmp_path, csv_file):
    over = ["model.bucket_type=riemann", "model.d_vocab=20", *SMALL]
    cfg = compose_train("regression", "gp", csv_file, *over)
    exp = build_experiment(cfg, tmp_path)
    borders = torch.as_tensor(exp.model_config.riemann_borders)
    assert borders.shape == (21,) and bool((borders.diff() > 0).all())
    assert exp.model_config.d_vocab == 20
    again = build_experiment(compose_train("regression", "gp", csv_file, *over), tmp_path)
    assert torch.equal(borders, torch.as_tensor(again.model_config.riemann_borders))
    assert OmegaConf.is_missing(cfg.model, "riemann_borders") is False


def test_explicit_mismatch_is_refused(tmp_path, csv_file):
    # fewer classes than the prior draws (more would be harmless: the extra get ~0 mass)
    cfg = compose_train("classification", "logistic", csv_file, "model.num_classes=2", *SMALL)
    with pytest.raises(CliError, match="num_classes=2 .* but prior=logistic"):
        build_experiment(cfg, tmp_path, model_choice="classification", prior_choice="logistic")
    cfg = compose_train("regression", "linear", csv_file, "model.input_dim=3", *SMALL)
    with pytest.raises(CliError, match="input_dim=3"):
        build_experiment(cfg, tmp_path, model_choice="regression", prior_choice="linear")


def test_invalid_model_value_is_a_clear_error(tmp_path, csv_file):
    cfg = compose_train("regression", "linear", csv_file, "model.bucket_type=quantile", *SMALL)
    with pytest.raises(CliError, match="bucket_type='quantile'"):
        build_experiment(cfg, tmp_path, model_choice="regression", prior_choice="linear")


@pytest.mark.parametrize(
    ("launcher", "plugin"),
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("slurm_local", "hydra_plugins.hydra_submitit_launcher"),
        ("parallel", "hydra_plugins.hydra_joblib_launcher"),
    ],
)
def test_launcher_configs_compose_when_plugin_installed(launcher, plugin):
    importlib.import_module(plugin)  # `make install` installs it: missing fails, never skips
    cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


def test_pairs_cover_every_combination():
    assert len(COMPATIBLE) + len(INCOMPATIBLE) == len(MODELS) * len(PRIORS)
    assert not set(COMPATIBLE) & set(INCOMPATIBLE)
    assert list(itertools.chain(COMPATIBLE, INCOMPATIBLE))


def test_condition_on_override_reaches_the_model_config(tmp_path, csv_file):
    """`pfn train prior=gp_hyper model.condition_on=[lengthscale,outputscale,noise_var]`."""
    names = ["lengthscale", "outputscale", "noise_var"]
    cfg = compose_train(
        "regression", "gp_hyper", csv_file, *SMALL, f"model.condition_on=[{','.join(names)}]"
    )
    exp = build_experiment(cfg, tmp_path, model_choice="regression", prior_choice="gp_hyper")
    assert exp.model_config.condition_on == names
    assert exp.model_config.condition_drop_prob == 0.5
    cfg = compose_train("regression", "gp_hyper", csv_file, *SMALL, "model.condition_drop_prob=2")
    with pytest.raises(CliError, match=r"condition_drop_prob=2"):
        build_experiment(cfg, tmp_path, model_choice="regression", prior_choice="gp_hyper")
