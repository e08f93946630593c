"""Runs written before a model default changed keep working (issue 14, item 3).

``tests/data/legacy_run`` is a real ``pfn train`` run folder made by the code of commit
8c1d771 (before the MLP decoder became the default): tiny linear-prior model, 20 steps, its
checkpoint, ``.hydra`` config, status and eval. ``reference.json`` holds that code's
``log_predictive`` on fixed inputs. Today's code must load it with the architecture it was
trained with, give the same numbers, evaluate it and resume it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig, TrainingConfig, checkpointing, train
from pfn_transformers.model.configs import LEGACY_DEFAULTS, ConfigError, config_from_dict
from pfn_transformers.priors import LinearRegressionPrior
from tests.cli_helpers import read_status, run_pfn

LEGACY = Path(__file__).parents[2] / "data" / "legacy_run"
CKPT = LEGACY / "checkpoints" / "step-20.pt"


@pytest.fixture
def legacy_copy(tmp_path: Path) -> Path:
    run = tmp_path / "outputs" / LEGACY.name
    shutil.copytree(LEGACY, run)
    return run


def _reference_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ref = json.loads((LEGACY / "reference.json").read_text())
    g = torch.Generator().manual_seed(ref["seed"])
    x = torch.rand(*ref["shape"], generator=g) * 2 - 1
    y = torch.randn(*ref["shape"][:2], generator=g)
    return x, y, torch.tensor(ref["log_predictive"])


def test_new_configs_get_the_new_decoder_and_old_dicts_the_old_one() -> None:
    assert RegressionConfig().decoder == "mlp"
    saved = torch.load(CKPT, weights_only=True)["model_config"]
    assert "decoder" not in saved  # the fixture really predates the field
    assert config_from_dict(saved).decoder == LEGACY_DEFAULTS["decoder"] == "linear"
    # a dict that names the field keeps it
    assert config_from_dict({**saved, "decoder": "mlp"}).decoder == "mlp"
    # the same for the tails' scale floor
    assert "tail_scale" not in saved and RegressionConfig().tail_scale == 0.05
    assert config_from_dict(saved).tail_scale == 0.0
    assert PFN(config_from_dict(saved)).bucketizer.tail_scale == 0.0


def test_legacy_checkpoint_loads_with_its_architecture_and_numbers() -> None:
    model, _, _ = checkpointing.load_checkpoint(CKPT, device="cpu")
    assert model.config.decoder == "linear"
    assert not hasattr(model, "decoder_mlp")
    x, y, expected = _reference_inputs()
    with torch.no_grad():
        got = model.log_predictive(x, y)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_legacy_checkpoint_resumes_through_train(legacy_copy: Path) -> None:
    """A config built today (new default decoder) resumes the old run with the old one."""
    fields = torch.load(CKPT, weights_only=True)["model_config"]
    today = RegressionConfig(**{k: v for k, v in fields.items() if k != "kind"})
    assert today.decoder == "mlp"
    before, _, _ = checkpointing.load_checkpoint(CKPT, device="cpu")
    tc = TrainingConfig(
        batch_size=8,
        seq_len=16,
        num_steps=23,
        learning_rate=1e-3,
        warmup_steps=0,
        log_every=1,
        save_every=1,
        checkpoint_dir=str(legacy_copy / "checkpoints"),
        progress_bar=False,
        device="cpu",
    )
    model = train(LinearRegressionPrior(), today, tc, resume_from=str(legacy_copy / "checkpoints"))
    assert model.config.decoder == "linear"
    moved = (model.W_U.detach() - before.W_U).abs().max().item()
    assert moved > 1e-4  # it trained on from the old weights
    resumed = torch.load(legacy_copy / "checkpoints" / "step-23.pt", weights_only=True)
    assert resumed["step"] == 23
    assert resumed["model_config"]["decoder"] == "linear"  # saved explicitly from now on
    assert tc.optimizer == "muon"  # today's default, yet the old run keeps its AdamW
    assert resumed["training_config"]["optimizer"] == "adamw"


def test_resume_refuses_an_architecture_the_checkpoint_contradicts(legacy_copy: Path) -> None:
    fields = torch.load(CKPT, weights_only=True)["model_config"]
    other = RegressionConfig(**{**{k: v for k, v in fields.items() if k != "kind"}, "d_model": 32})
    tc = TrainingConfig(num_steps=21, checkpoint_dir=str(legacy_copy / "checkpoints"))
    with pytest.raises(ConfigError, match=r"d_model=16 \(given 32\)"):
        train(LinearRegressionPrior(), other, tc, resume_from=str(CKPT))


def test_cli_evaluates_and_resumes_a_legacy_run(legacy_copy: Path) -> None:
    """``pfn eval`` of the old run reproduces the old code's own closing evaluation."""
    cwd = legacy_copy.parents[1]
    old = json.loads((legacy_copy / "eval.json").read_text())
    (legacy_copy / "eval.json").unlink()
    args = [f"run={legacy_copy}", "num_datasets=16", "batch_size=16", "seed=12345", "plots=false"]
    run_pfn(["eval", *args], cwd)
    new = json.loads((legacy_copy / "eval.json").read_text())
    assert new["excess_nll"]["mean"] == pytest.approx(old["excess_nll"]["mean"], abs=1e-4)
    run_pfn(["train", f"resume={legacy_copy}", "training.num_steps=30"], cwd)
    status = read_status(legacy_copy)
    assert status["status"] == "finished" and status["step"] == 30
    ckpt = torch.load(legacy_copy / "checkpoints" / "step-30.pt", weights_only=True)
    assert ckpt["model_config"]["decoder"] == "linear"


# A checkpoint of the Muon era before ``muon_scope`` (commit f05be22: torch.optim.Muon on the
# MLP matrices only); ``make_fixture.py`` beside it made it, and recorded that code's
# log-predictive after resuming to step 23.
MUON_RUN = Path(__file__).parents[2] / "data" / "muon_mlp_run"


def test_a_muon_checkpoint_without_a_scope_resumes_as_the_old_code_went_on(tmp_path: Path) -> None:
    saved = torch.load(MUON_RUN / "checkpoints" / "step-20.pt", weights_only=True)
    assert saved["training_config"]["optimizer"] == "muon"
    assert "muon_scope" not in saved["training_config"]  # it predates the field
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(MUON_RUN / "checkpoints", ckpts)
    ref = json.loads((MUON_RUN / "reference.json").read_text())
    fields = {k: v for k, v in saved["model_config"].items() if k != "kind"}
    tc = TrainingConfig(
        **{
            k: saved["training_config"][k]
            for k in ("batch_size", "seq_len", "learning_rate", "use_warmup", "seed", "precision")
        },
        num_steps=ref["num_steps"],
        log_every=1,
        save_every=1,
        checkpoint_dir=str(ckpts),
        progress_bar=False,
        device="cpu",
    )
    assert tc.muon_scope == "attention"  # today's default, yet the old run keeps its scope
    model = train(LinearRegressionPrior(), RegressionConfig(**fields), tc, resume_from=str(ckpts))
    g = torch.Generator().manual_seed(ref["seed"])
    x = torch.rand(*ref["shape"], generator=g) * 2 - 1
    y = torch.randn(*ref["shape"][:2], generator=g)
    with torch.no_grad():
        got = model.log_predictive(x, y)
    torch.testing.assert_close(got, torch.tensor(ref["log_predictive_at_23"]), atol=1e-6, rtol=0)
    resumed = torch.load(ckpts / "step-23.pt", weights_only=True)
    assert resumed["training_config"]["muon_scope"] == "mlp"
