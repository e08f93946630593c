"""Fine-tuning with ``train(..., init_from=...)``: source weights, fresh optimizer, freeze,
kept or refit buckets, the parent recorded, and clear errors for models that do not fit."""

from __future__ import annotations

import json

import pytest
import torch

from pfn_transformers import (
    PFN,
    IncompatibleTaskError,
    RegressionConfig,
    TrainingConfig,
    checkpointing,
    train,
)
from pfn_transformers.data.protocol import batch_source
from pfn_transformers.priors import LinearRegressionPrior, PolynomialPrior
from pfn_transformers.training.finetune import FineTuneError
from tests.cli_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = RegressionConfig(d_model=16, n_layers=2, n_heads=2, d_vocab=20, y_min=-3, y_max=3)


def tc(folder, **overrides) -> TrainingConfig:
    fields = dict(
        batch_size=4,
        seq_len=8,
        num_steps=4,
        warmup_steps=1,
        log_every=1,
        save_every=100,
        progress_bar=False,
        precision="fp32",  # the first-loss comparison below is exact
        checkpoint_dir=str(folder / "ckpt"),
        metrics_path=str(folder / "metrics.jsonl"),
    )
    return TrainingConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A linear-prior model saved as a folder (what fine-tuning starts from)."""
    folder = tmp_path_factory.mktemp("source")
    torch.manual_seed(0)
    model = train(LinearRegressionPrior(), CONFIG, tc(folder, num_steps=6, learning_rate=3e-3))
    model.save_pretrained(folder / "saved")
    return folder / "saved"


def test_fine_tuning_starts_from_the_source_weights_and_records_its_parent(source, tmp_path):
    new_prior = PolynomialPrior(degree=3)
    model = train(new_prior, None, tc(tmp_path, seed=7), init_from=source)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    torch.manual_seed(7)  # train() draws its first batch right after seeding with the seed
    x, y = batch_source(new_prior).sample(4, 8)
    with torch.no_grad():
        expected = PFN.from_pretrained(source)(x, y, return_type="loss").item()
    assert first["loss"] == pytest.approx(expected, rel=1e-6)
    fresh = PFN(CONFIG)
    with torch.no_grad():
        assert fresh(x, y, return_type="loss").item() != pytest.approx(expected, rel=1e-3)
    parent = model.provenance["parent"]
    assert parent["source"] == str(source) and parent["kind"] == "pretrained"
    assert parent["step"] == 6 and parent["prior"]["class"].endswith("LinearRegressionPrior")
    payload = checkpointing.read_checkpoint(tmp_path / "ckpt" / "step-4.pt")
    assert payload["provenance"]["parent"]["source"] == str(source)
    steps = {int(s["step"]) for s in payload["optimizer_state"]["adamw"]["state"].values()}
    assert steps == {4}  # a fresh optimizer: 4 updates, not the source's 6 + 4
    # buckets and architecture kept; the trained length is what train() records
    assert {**model.config.to_dict(), "trained_seq_len": None} == CONFIG.to_dict()
    assert model.config.trained_seq_len == 8
    model.save_pretrained(tmp_path / "tuned")
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert f"Fine-tuned from `{source}`" in card


def test_freeze_keeps_the_named_modules_and_rejects_unknown_names(source, tmp_path):
    src = PFN.from_pretrained(source)
    model = train(
        PolynomialPrior(degree=2), None, tc(tmp_path), init_from=source, freeze=["blocks.0", "W_x"]
    )
    assert torch.equal(model.blocks[0].attn.W_Q, src.blocks[0].attn.W_Q)
    assert torch.equal(model.blocks[0].mlp.W_in, src.blocks[0].mlp.W_in)
    assert torch.equal(model.W_x, src.W_x)
    assert not torch.equal(model.blocks[1].attn.W_Q, src.blocks[1].attn.W_Q)
    assert model.provenance["parent"]["frozen"] == ["W_x", "blocks.0"]
    with pytest.raises(
        FineTuneError, match=r"'blocks\.7' is not a module or parameter.*blocks\.0\.attn"
    ):
        train(PolynomialPrior(), None, tc(tmp_path), init_from=source, freeze=["blocks.7"])


def test_a_model_that_does_not_fit_is_a_clear_error(source, tmp_path):
    with pytest.raises(IncompatibleTaskError, match=r"init_from=.* has input_dim=1 .* input_dim=2"):
        train(LinearRegressionPrior(input_dim=2), None, tc(tmp_path), init_from=source)
    other_buckets = RegressionConfig(
        d_model=16, n_layers=2, n_heads=2, d_vocab=50, y_min=-3, y_max=3
    )
    with pytest.raises(FineTuneError, match=r"d_vocab \(given 50, source 20\).*'W_U' has shape"):
        train(PolynomialPrior(), other_buckets, tc(tmp_path), init_from=source)
    assert not (tmp_path / "ckpt").exists()  # refused before any training


def test_refit_buckets_is_explicit_and_says_what_it_discards(source, tmp_path):
    src = PFN.from_pretrained(source)
    wide = LinearRegressionPrior(weight_std=5.0)  # targets far beyond the source's [-3, 3]
    still = tc(tmp_path, learning_rate=1e-12)  # weights move by ~1e-12: what was copied shows
    with pytest.warns(UserWarning, match="W_U, b_U was re-initialised"):
        model = train(wide, None, still, init_from=source, refit_buckets=True)
    borders = model.bucketizer.borders
    assert borders.numel() == 21 and borders[-1] > 6 and borders[0] < -6
    assert model.config.d_vocab == 20 and model.provenance["parent"]["refit_buckets"] is True
    assert torch.allclose(model.blocks[1].mlp.W_out, src.blocks[1].mlp.W_out, atol=1e-8)
    assert not torch.allclose(model.W_U, src.W_U, atol=1e-3)  # the bucket logits start afresh
    with pytest.raises(FineTuneError, match="refit_buckets=True needs init_from"):
        train(wide, CONFIG, tc(tmp_path), refit_buckets=True)
