"""Trained PFNs that travel: save_pretrained / from_pretrained folders, their model card, and
loading from a checkpoint, a W&B artifact and a (mocked) Hugging Face Hub, all offline."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pfn_transformers import (
    PFN,
    ClassificationConfig,
    PFNModel,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedConfig,
    train,
)
from pfn_transformers.evaluation import evaluate
from pfn_transformers.hub import PretrainedError, WeightsMismatchError
from pfn_transformers.priors import CoinFlipPrior, LinearRegressionPrior
from tests.cli_helpers import cli_env, one_thread  # noqa: F401 (fixture)
from tests.wandb_fakes import FakeApi, FakeRun, checkpoint_artifact

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(d_model=16, n_layers=2, n_heads=2)
KINDS = {
    "regression-bar": RegressionConfig(input_dim=2, d_vocab=12, **SMALL),
    "regression-riemann-bounded": RegressionConfig(
        input_dim=1,
        bucket_type="riemann",
        bucket_support="bounded",
        riemann_borders=[-3.0, -1.0, -0.2, 0.0, 0.5, 2.0, 4.0],
        **SMALL,
    ),
    "regression-point-gpt2": RegressionConfig(
        input_dim=3, prediction_type="point", mask_type="gpt2", x_encoder="linear", **SMALL
    ),
    "classification": ClassificationConfig(input_dim=2, num_classes=3, **SMALL),
    "unsupervised-discrete": UnsupervisedConfig(d_vocab=4, n_ctx=64, **SMALL),
    "unsupervised-continuous": UnsupervisedConfig(
        input_type="continuous", d_vocab=10, n_ctx=64, **SMALL
    ),
}


def inputs_for(model: PFNModel, batch: int = 3, seq: int = 7) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    if model.discrete_y:
        y = torch.randint(0, model.config.d_vocab, (batch, seq), generator=gen)
    else:
        y = torch.randn(batch, seq, generator=gen)
    if not model.supervised:
        return (y,)
    return torch.randn(batch, seq, model.config.input_dim, generator=gen), y


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_gives_identical_logits_for_every_model_kind(kind, tmp_path):
    torch.manual_seed(0)
    model = PFN(KINDS[kind]).eval()
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    loaded = PFN.from_pretrained(tmp_path / "saved")  # the spec's factory, now with a loader
    assert type(loaded) is PFNModel and not loaded.training
    assert loaded.config.to_dict() == model.config.to_dict()
    with torch.no_grad():
        assert torch.equal(loaded(*inputs_for(model)), model(*inputs_for(model)))
    assert PFN(KINDS[kind]).config is KINDS[kind]  # PFN(config) works as documented


_SAFE_OPEN = """
import sys, json
class Block:  # this package must not be importable: the weights stand alone
    def find_spec(self, name, *args):
        if name.split(".")[0] in ("pfn_transformers", "pfn_cli"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from safetensors import safe_open
out = {}
with safe_open(sys.argv[1], framework="pt") as f:
    for key in f.keys():
        t = f.get_tensor(key)
        out[key] = [list(t.shape), float(t.double().sum())]
try:
    import pfn_transformers  # noqa: F401
    out["__imported__"] = True
except ImportError:
    out["__imported__"] = False
print(json.dumps(out))
"""


def test_safetensors_reads_the_weights_without_this_package(tmp_path):
    torch.manual_seed(0)
    model = PFN(KINDS["regression-bar"])
    model.save_pretrained(tmp_path / "saved")
    proc = subprocess.run(
        [sys.executable, "-c", _SAFE_OPEN, str(tmp_path / "saved" / "model.safetensors")],
        cwd=tmp_path,
        env=cli_env(PYTHONPATH=None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got.pop("__imported__") is False
    want = model.state_dict()
    assert sorted(got) == sorted(want)
    for key, (shape, total) in got.items():
        assert shape == list(want[key].shape)
        assert total == pytest.approx(float(want[key].double().sum()), abs=1e-9)
    assert "blocks.0.attn.W_Q" in got  # TransformerLens names


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """An untrained bounded-bucket model and its evaluation on the linear prior."""
    torch.manual_seed(0)
    model = PFN(RegressionConfig(bucket_support="bounded", y_min=-1, y_max=1, d_vocab=20, **SMALL))
    results = evaluate(model, LinearRegressionPrior(), num_datasets=16, seq_len=6, batch_size=16)
    return model, {**results, "step": 0}


def front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_cards_figures_equal_eval_json(evaluated, tmp_path):
    model, results = evaluated
    model.save_pretrained(tmp_path / "card", evaluation=results)
    shipped = json.loads((tmp_path / "card" / "eval.json").read_text())
    assert shipped == json.loads(json.dumps(results))
    q = front_matter(tmp_path / "card" / "README.md")["pfn"]["evaluation"]
    assert q["excess_nll"] == {k: shipped["excess_nll"][k] for k in ("mean", "stderr")}
    assert q["excess_nll_per_n"] == shipped["excess_nll"]["per_n"]
    assert q["bucket_floor_excess_nll"]["mean"] == shipped["floor_excess_nll"]["mean"]
    assert q["coverage"] == {k: v["mean"] for k, v in shipped["coverage"].items()}
    assert q["out_of_range"] == shipped["out_of_range"]["mean"] and q["out_of_range"] > 0
    assert (q["num_datasets"], q["seq_len"], q["step"]) == (16, 6, 0)
    index = front_matter(tmp_path / "card" / "README.md")["model-index"][0]["results"][0]
    metrics = {m["type"]: m["value"] for m in index["metrics"]}
    assert metrics["excess_nll"] == shipped["excess_nll"]["mean"]
    body = (tmp_path / "card" / "README.md").read_text().split("---\n", 2)[2]
    assert f"{shipped['excess_nll']['mean']:.4f}" in body
    # the evaluation travels with the folder and onto the next save
    again = PFN.from_pretrained(tmp_path / "card")
    again.save_pretrained(tmp_path / "card2")
    assert json.loads((tmp_path / "card2" / "eval.json").read_text()) == shipped


def test_a_card_without_evaluation_says_so(evaluated, tmp_path):
    model, results = evaluated
    model.save_pretrained(tmp_path / "m", evaluation=results)
    fresh = PFN(model.config)  # no provenance, no evaluation
    fresh.save_pretrained(tmp_path / "m")  # over the evaluated save: its figures must go
    assert not (tmp_path / "m" / "eval.json").exists()
    meta = front_matter(tmp_path / "m" / "README.md")
    assert meta["pfn"]["evaluation"] is None and "model-index" not in meta
    assert "No evaluation" in meta["pfn"]["evaluation_note"]
    assert "No evaluation" in (tmp_path / "m" / "README.md").read_text().split("---\n", 2)[2]


class _Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_in_place_of_the_weights_is_refused_without_being_run(tmp_path):
    PFN(KINDS["regression-bar"]).save_pretrained(tmp_path / "m")
    marker = tmp_path / "code-ran"
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(PretrainedError, match="not a valid safetensors file"):
        PFN.from_pretrained(tmp_path / "m")
    assert not marker.exists()
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save({"x": _Evil(marker)}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(PretrainedError, match="pytorch_model.bin is there, but pickled weights"):
        PFN.from_pretrained(tmp_path / "m")
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_Evil(marker))) is None and marker.exists()  # it would run


def test_weights_that_do_not_fit_the_config_name_the_tensor(tmp_path):
    PFN(RegressionConfig(input_dim=1, **SMALL)).save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_config"]["input_dim"] = 3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsMismatchError, match=r"tensor 'W_x' has shape \[1, 16\] but"):
        PFN.from_pretrained(tmp_path / "m")
    cfg["model_config"]["input_dim"], cfg["model_config"]["n_layers"] = 1, 3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsMismatchError, match="'blocks.2.ln1.w' is missing"):
        PFN.from_pretrained(tmp_path / "m")


def test_sources_that_are_not_models_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedError, match="does not exist; pass a folder written by"):
        PFN.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedError, match="neither a saved model"):
        PFN.from_pretrained(tmp_path / "empty")
    PFN(KINDS["classification"]).save_pretrained(tmp_path / "m")
    with pytest.raises(PretrainedError, match="step=3: .* step= applies to run folders"):
        PFN.from_pretrained(tmp_path / "m", step=3)


@pytest.fixture(scope="module")
def coin_checkpoint(tmp_path_factory):
    """A tiny trained coin model and its checkpoint folder (with the data_config the CLI
    passes, so the prior's config is known)."""
    folder = tmp_path_factory.mktemp("coin")
    torch.manual_seed(0)
    prior_config = {"_target_": "pfn_transformers.priors.CoinFlipPrior", "alpha": 1.0, "beta": 1.0}
    model = train(
        CoinFlipPrior(),
        UnsupervisedConfig(d_vocab=2, **SMALL),
        TrainingConfig(
            batch_size=4,
            seq_len=8,
            num_steps=4,
            warmup_steps=1,
            save_every=2,
            progress_bar=False,
            checkpoint_dir=str(folder / "ckpt"),
        ),
        data_config={"prior": "coin", "prior_config": prior_config},
    )
    return model, folder / "ckpt"


def test_a_trained_model_and_its_checkpoints_know_where_they_came_from(coin_checkpoint, tmp_path):
    model, ckpt = coin_checkpoint
    prov = model.provenance
    assert prov["training"]["steps"] == 4 and prov["training"]["batch_size"] == 4
    assert prov["prior"]["choice"] == "coin" and prov["prior"]["class"].endswith("CoinFlipPrior")
    assert prov["environment"]["library_version"] == "0.1.0" and prov["parent"] is None
    from_file = PFN.from_pretrained(ckpt / "step-2.pt")
    from_dir = PFN.from_pretrained(ckpt)  # a folder of step-N.pt: the newest
    assert from_file.provenance["training"]["steps"] == 2
    assert from_dir.provenance["training"]["steps"] == 4
    y = torch.randint(0, 2, (2, 8))
    assert torch.equal(from_dir(y), model(y))
    from_dir.save_pretrained(tmp_path / "m")
    meta = front_matter(tmp_path / "m" / "README.md")["pfn"]
    assert meta["prior"]["config"]["_target_"] == "pfn_transformers.priors.CoinFlipPrior"
    assert meta["training"]["steps"] == 4 and meta["training"]["seq_len"] == 8


def test_a_wandb_artifact_reference_loads_through_the_wandb_loader(coin_checkpoint, monkeypatch):
    model, ckpt = coin_checkpoint
    api = FakeApi(
        [FakeRun("abc123", artifacts=[checkpoint_artifact("abc123", 4, ckpt / "step-4.pt")])]
    )
    loaded = PFN.from_pretrained("wandb:team/proj/abc123@4", api=api)
    y = torch.randint(0, 2, (2, 8))
    assert torch.equal(loaded(y), model(y))
    assert loaded.provenance["origin"]["kind"] == "wandb"
    assert loaded.provenance["prior"]["choice"] == "coin"


def test_hub_ids_and_push_to_hub_go_through_huggingface_hub(tmp_path, monkeypatch):
    """Offline: hf_hub_download serves files from a local folder standing in for the Hub,
    and the upload is captured instead of sent."""
    import huggingface_hub
    import huggingface_hub.hub_mixin

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = PFN(KINDS["unsupervised-discrete"])
    uploaded: dict = {}

    def create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded[repo_id] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return "commit-url"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert model.push_to_hub("someone/tiny-pfn") == "commit-url"
    files = uploaded["someone/tiny-pfn"]
    assert {"model.safetensors", "config.json", "README.md"} <= set(files)
    hub = tmp_path / "hub"
    hub.mkdir()
    for name, data in files.items():
        (hub / name).write_bytes(data)

    def fake_download(repo_id, filename, **kwargs):
        assert repo_id == "someone/tiny-pfn"
        if not (hub / filename).exists():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        return str(hub / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", fake_download)
    loaded = PFN.from_pretrained("someone/tiny-pfn")
    y = torch.randint(0, 4, (2, 6))
    assert torch.equal(loaded(y), model(y))
    assert loaded.provenance["origin"]["kind"] == "hub"

    def offline(repo_id, filename, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", offline)
    with pytest.raises(PretrainedError, match="Hugging Face Hub could not provide it"):
        PFN.from_pretrained("someone/missing")
