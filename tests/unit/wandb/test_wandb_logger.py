"""WandbLogger with real (offline/disabled) W&B runs, driven through the core ``train()``.

The offline run's ``run-<id>.wandb`` file is decoded (``wandb_fakes.read_offline_run``) to
check what W&B actually recorded: config, per-step losses, checkpoint artifacts, exit code.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pfn_transformers import DeterministicGenerator, RegressionConfig, TrainingConfig, train
from pfn_transformers.wandb import (
    WandbLogger,
    WandbUnavailableError,
    list_checkpoints,
    load_from_pretrained,
)
from tests.wandb_fakes import (
    FakeApi,
    fake_run_from_offline,
    isolate_wandb,
    md5_digest,
    offline_run_dirs,
    read_offline_run,
)


@pytest.fixture(autouse=True)
def wandb_dir(monkeypatch, tmp_path, tmp_path_factory):
    return isolate_wandb(monkeypatch, tmp_path, tmp_path_factory)


@dataclass
class DataConfig:
    num_tasks: int = 100
    noise: float = 100.0


def _generator(fail_at: int | None = None) -> DeterministicGenerator:
    calls = {"n": 0}

    def function(x, params):
        return (params[0] * x).sum(dim=-1) + params[1]

    gen = DeterministicGenerator(
        prior=torch.distributions.Normal(torch.zeros(2), torch.ones(2)),
        function=function,
        input_dim=2,
        noise_std=0.1,
    )
    if fail_at is not None:
        inner = gen.generate_batch

        def generate_batch(batch_size, seq_len):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise RuntimeError("prior exploded")
            return inner(batch_size, seq_len)

        gen.generate_batch = generate_batch
    return gen


MODEL = RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=2, prediction_type="point")


def _training(tmp_path, **kw) -> TrainingConfig:
    base = dict(
        batch_size=4,
        seq_len=8,
        num_steps=20,
        log_every=5,
        save_every=10,
        warmup_steps=2,
        checkpoint_dir=str(tmp_path / "ckpt"),
        progress_bar=False,
        device="cpu",
        use_wandb=True,
        wandb_mode="offline",
    )
    base.update(kw)
    return TrainingConfig(**base)


def test_offline_training_run_records_losses_configs_and_checkpoints(
    tmp_path, wandb_dir, capsys
) -> None:
    tc = _training(
        tmp_path,
        wandb_project="pfn-tests",
        wandb_run_name="tiny-run",
        wandb_tags=["regression", "v1"],
        wandb_notes="offline test",
        eval_every=10,
        eval_batches=1,
    )
    model = train(_generator(), MODEL, tc, data_config=DataConfig())

    (run_dir,) = offline_run_dirs(wandb_dir)
    run = read_offline_run(run_dir)
    assert run.exit_code == 0
    assert (run.project, run.name, run.tags, run.notes) == (
        "pfn-tests",
        "tiny-run",
        ["regression", "v1"],
        "offline test",
    )
    # configs: model (with kind), training, data (dataclass as dict, 100.0 kept a float)
    assert run.config["model"] == MODEL.to_dict()
    assert run.config["training"]["num_steps"] == 20
    assert run.config["training"]["wandb_mode"] == "offline"
    assert run.config["data"] == {"num_tasks": 100, "noise": 100.0}
    assert isinstance(run.config["data"]["noise"], float)

    # a finite train/loss at every step 1..20, richer metrics at log steps, eval at 10 and 20
    losses = {row["_step"]: row["train/loss"] for row in run.history if "train/loss" in row}
    assert sorted(losses) == list(range(1, 21))
    assert all(math.isfinite(v) for v in losses.values())
    logged = {row["_step"] for row in run.history if "train/lr" in row}
    assert logged == {5, 10, 15, 20}
    evals = {row["_step"]: row["eval/loss"] for row in run.history if "eval/loss" in row}
    assert sorted(evals) == [10, 20]

    # checkpoint artifacts: name, type, aliases, metadata with all configs
    arts = {a["name"]: a for a in run.artifacts}
    assert sorted(arts) == [f"checkpoint-{run.run_id}-step-10", f"checkpoint-{run.run_id}-step-20"]
    art = arts[f"checkpoint-{run.run_id}-step-20"]
    assert art["type"] == "model"
    assert sorted(art["aliases"]) == ["latest", "step-20"]
    meta = art["metadata"]
    assert meta["step"] == 20 and meta["file"] == "step-20.pt"
    assert meta["model_config"] == MODEL.to_dict()
    assert meta["training_config"]["batch_size"] == 4
    assert meta["data_config"] == {"num_tasks": 100, "noise": 100.0}
    assert list(art["files"]) == ["step-20.pt"]

    # the one-line sync hint
    err = capsys.readouterr().err
    assert f"wandb sync {run_dir}" in err

    # each artifact holds the bytes of its step's checkpoint file, as W&B recorded them
    ckpt_dir = Path(tc.checkpoint_dir)
    for step in (10, 20):
        local = md5_digest(ckpt_dir / f"step-{step}.pt")
        assert arts[f"checkpoint-{run.run_id}-step-{step}"]["digests"] == {f"step-{step}.pt": local}

    # after `wandb sync`, and with the local checkpoints gone, the loaders get back exactly
    # the trained weights from the artifact's own bytes
    api = FakeApi([fake_run_from_offline(run, project="pfn-tests")])
    shutil.rmtree(ckpt_dir)
    assert [c.step for c in list_checkpoints(run.run_id, project="pfn-tests", api=api)] == [10, 20]
    loaded, _, meta = load_from_pretrained(
        run.run_id, project="pfn-tests", device="cpu", api=api, download_dir=tmp_path / "dl"
    )
    assert meta.step == 20 and meta.wandb_run_id == run.run_id
    (downloaded,) = (tmp_path / "dl").rglob("*.pt")
    assert md5_digest(downloaded) == art["digests"]["step-20.pt"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key].cpu(), value.cpu()), key


def test_error_during_training_finishes_the_run_with_failure(tmp_path, wandb_dir) -> None:
    tc = _training(tmp_path, num_steps=10, wandb_log_model=False)
    with pytest.raises(RuntimeError, match="prior exploded"):
        train(_generator(fail_at=4), MODEL, tc)
    (run_dir,) = offline_run_dirs(wandb_dir)
    run = read_offline_run(run_dir)
    assert run.exit_code == 1
    assert run.artifacts == []  # wandb_log_model=False


def _cfg(**kw):
    base = dict(
        wandb_mode=None,
        wandb_project="proj",
        wandb_entity=None,
        wandb_run_name=None,
        wandb_tags=None,
        wandb_notes=None,
        wandb_log_model=True,
    )
    base.update(kw)
    return SimpleNamespace(**base, to_dict=lambda: dict(base))


def test_unfinished_run_is_finished_by_the_next_one(wandb_dir) -> None:
    """Hydra multirun: a job that never finished its run must not break the next job."""
    first = WandbLogger(_cfg(wandb_run_name="job-0"), MODEL)
    first.log({"train/loss": 1.0}, step=1)
    second = WandbLogger(_cfg(wandb_run_name="job-1"), MODEL)  # first left open
    second.log({"train/loss": 0.5}, step=1)
    second.finish()
    second.finish()  # idempotent
    first.finish()  # already finished by W&B: harmless
    runs = [read_offline_run(d) for d in offline_run_dirs(wandb_dir)]
    assert sorted(r.name for r in runs) == ["job-0", "job-1"]
    assert all(r.exit_code is not None for r in runs)
    assert first.run_id != second.run_id


def test_env_project_entity_and_context_manager(wandb_dir, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "env-project")
    monkeypatch.setenv("WANDB_ENTITY", "env-team")
    ckpt = tmp_path / "step-3.pt"
    ckpt.write_bytes(b"not really a checkpoint")
    with WandbLogger(_cfg(wandb_project=None), MODEL, {"num_tasks": 3}) as logger:
        assert (logger.project, logger.entity) == ("env-project", "env-team")
        assert logger.mode == "offline" and logger.run_url is None
        logger.log({"train/loss": torch.tensor(0.25)}, step=3)
        assert logger.log_checkpoint(ckpt, 3) == f"checkpoint-{logger.run_id}-step-3"
        with pytest.raises(FileNotFoundError, match="does not exist"):
            logger.log_checkpoint(tmp_path / "missing.pt", 4)
    assert logger.finished
    run = read_offline_run(logger.run_dir)
    assert run.project == "env-project" and run.entity == "env-team"
    assert run.config["data"] == {"num_tasks": 3}
    assert any(row.get("train/loss") == 0.25 for row in run.history)
    assert [a["name"] for a in run.artifacts] == [f"checkpoint-{logger.run_id}-step-3"]


def test_disabled_mode_records_nothing(wandb_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb_mode=None reads the env
    logger = WandbLogger(_cfg(), MODEL)
    assert not logger.enabled and logger.mode == "disabled"
    logger.log({"train/loss": 1.0}, step=1)
    assert logger.log_checkpoint(tmp_path / "absent.pt", 5) is not None  # no file needed
    logger.finish()
    assert offline_run_dirs(wandb_dir) == []
    assert logger.log_checkpoint(tmp_path / "absent.pt", 6) is None  # after finish


@pytest.mark.timeout(60)  # a hang (e.g. a login prompt) fails the test instead of stalling
def test_online_without_credentials_fails_fast_with_a_clear_message(wandb_dir) -> None:
    with pytest.raises(WandbUnavailableError, match=r"WANDB_API_KEY.*wandb login.*offline"):
        WandbLogger(_cfg(wandb_mode="online"), MODEL)
    assert offline_run_dirs(wandb_dir) == [] and not list(wandb_dir.glob("wandb/run-*"))


@pytest.mark.timeout(120)  # without the init timeout W&B would retry for minutes
def test_online_with_unreachable_server_fails_within_the_init_timeout(
    wandb_dir, monkeypatch
) -> None:
    """Credentials but no server (a closed local port): a clear error, no hang."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "1")
    with pytest.raises(
        WandbUnavailableError, match=r"(?s)online mode.*127.0.0.1:9.*wandb_mode='offline'"
    ):
        WandbLogger(_cfg(wandb_mode="online"), MODEL)


def test_bad_mode_is_rejected(monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match=r"WANDB_MODE='sometimes' is not valid"):
        WandbLogger(_cfg(), MODEL)


def test_configs_become_plain_data_and_the_package_is_importable_both_ways() -> None:
    from omegaconf import OmegaConf

    import pfn_transformers
    from pfn_transformers import WandbLogger as TopLevel
    from pfn_transformers.wandb.logger import config_to_dict

    assert TopLevel is WandbLogger is pfn_transformers.wandb.WandbLogger
    import wandb

    assert hasattr(wandb, "init") and hasattr(wandb, "Artifact")  # the real library

    assert config_to_dict(DataConfig()) == {"num_tasks": 100, "noise": 100.0}
    assert config_to_dict(OmegaConf.create({"a": 1, "b": [1.0, {"c": None}]})) == {
        "a": 1,
        "b": [1.0, {"c": None}],
    }
    assert config_to_dict({"t": torch.tensor([1.0, 2.0]), "s": torch.tensor(3)}) == {
        "t": [1.0, 2.0],
        "s": 3,
    }
    assert config_to_dict(None) is None
