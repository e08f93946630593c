"""The spec's W&B snippets (Step 4, Example 3, "W&B Workflow") as written.

Training runs for real with W&B offline (a few steps instead of the spec's 10000); the
offline runs are then "synced" into a fake ``wandb.Api`` (patched in for ``wandb.Api``), so
the loading snippets run unchanged, without any network.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from pfn_transformers import PFN, DeterministicGenerator, RegressionConfig, checkpointing
from tests.wandb_fakes import (
    FakeApi,
    FakeRun,
    checkpoint_artifact,
    fake_run_from_offline,
    isolate_wandb,
    offline_run_dirs,
    read_offline_run,
)

FAST = dict(  # what the spec leaves at defaults, scaled down for a CPU test
    num_steps=2, batch_size=2, seq_len=8, warmup_steps=1, progress_bar=False, device="cpu"
)


def _data_gen(input_dim: int) -> DeterministicGenerator:
    def my_function(x, params):
        w, b = params
        return (w * x).sum(dim=-1) + b

    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.5])), 1
    )
    return DeterministicGenerator(
        prior=prior, function=my_function, input_dim=input_dim, noise_std=0.1
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Train the Example 3 and W&B Workflow runs offline, then 'sync' them to a fake API."""
    tmp = tmp_path_factory.mktemp("spec-wandb")
    with pytest.MonkeyPatch.context() as mp:
        wandb_dir = isolate_wandb(mp, tmp, tmp_path_factory)
        mp.chdir(tmp)  # checkpoint_dir="checkpoints" (the default) lands here
        trained = {}

        # ---- Example 3: Config-Based W&B Loading (training part) ----
        from pfn_transformers import RegressionConfig, TrainingConfig, train
        from pfn_transformers.wandb import RunNameScheme, create_run_name

        @dataclass
        class DataConfig:
            num_tasks: int = 50
            input_dim: int = 10

        data_config = DataConfig()
        scheme = RunNameScheme.from_templates(
            model={"n_layers": None, "d_model": None},
            data={"num_tasks": None, "input_dim": None},
        )
        model_config = RegressionConfig(
            d_model=128,
            n_layers=4,
            n_heads=4,
            d_head=32,
            input_dim=10,
            prediction_type="point",
        )
        run_name = create_run_name(
            base="my-exp",
            model_config=model_config,
            data_config=data_config,
            scheme=scheme,
        )
        assert run_name == "my-exp-model-n_layers4-d_model128-data-num_tasks50-input_dim10"
        data_gen = _data_gen(10)
        model = train(
            data_gen,
            model_config,
            TrainingConfig(use_wandb=True, wandb_run_name=run_name, **FAST),
            data_config=data_config,  # pass to train()!
        )
        trained["example3"] = model

        # ---- W&B Workflow (Common Patterns) ----
        @dataclass
        class DataConfig:  # noqa: F811 - the spec redefines it
            num_tasks: int = 100

        scheme = RunNameScheme.from_templates(model={"n_layers": None}, data={"num_tasks": None})
        model_config = RegressionConfig(
            d_model=32, n_layers=4, n_heads=4, input_dim=10, prediction_type="point"
        )
        run_name = create_run_name(
            base="exp",
            model_config=model_config,
            data_config=DataConfig(),
            scheme=scheme,
        )
        mp.setenv("WANDB_PROJECT", "my-project")  # the spec's env-var route
        model = train(
            data_gen,
            model_config,
            TrainingConfig(
                use_wandb=True,
                wandb_run_name=run_name,
                checkpoint_dir="checkpoints-workflow",
                **FAST,
            ),
            data_config=DataConfig(),
        )
        trained["workflow"] = model

    # Run folders sort by second, then by random id: order the runs by the names we expect.
    by_name = {r.name: r for r in (read_offline_run(d) for d in offline_run_dirs(wandb_dir))}
    expected = [
        "my-exp-model-n_layers4-d_model128-data-num_tasks50-input_dim10",
        "exp-model-n_layers4-data-num_tasks100",
    ]
    assert sorted(by_name) == sorted(expected)
    runs = [by_name[name] for name in expected]
    assert runs[1].project == "my-project"
    fake = FakeApi(
        [
            fake_run_from_offline(runs[0], project="my-project"),
            fake_run_from_offline(runs[1], project="my-project"),
        ]
    )
    # plus the spec's "abc123" run with checkpoints at steps 500 and 5000
    small = RegressionConfig(d_model=8, n_layers=1, n_heads=2, input_dim=10)
    abc = FakeRun("abc123", name="experiment-1", tags=["production"], project="my-project")
    abc.config = {"model": small.to_dict(), "training": {}, "data": None}
    for step in (500, 5000):
        path = checkpointing.save_checkpoint(
            tmp / f"abc-step-{step}.pt", step, PFN(small).state_dict(), small
        )
        abc.artifacts.append(checkpoint_artifact("abc123", step, path, project="my-project"))
    fake.add(abc)
    return fake, trained


@pytest.fixture
def api(project, monkeypatch, tmp_path, tmp_path_factory):
    """The spec's calls pass no api=: patch wandb.Api itself to return the fake."""
    import wandb

    isolate_wandb(monkeypatch, tmp_path, tmp_path_factory)
    fake, _ = project
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # credentials are checked locally only
    monkeypatch.setattr(wandb, "Api", lambda *args, **kwargs: fake)
    return fake


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_example_3_load_by_config(project, api) -> None:
    from pfn_transformers.wandb import RunNameScheme, load_by_config

    scheme = RunNameScheme.from_templates(
        model={"n_layers": None, "d_model": None},
        data={"num_tasks": None, "input_dim": None},
    )
    # Later: load by config
    model_loaded, _, meta = load_by_config(
        scheme=scheme,
        n_layers=4,
        d_model=128,
        num_tasks=50,
        input_dim=10,
        checkpoint_step="latest",
        project="my-project",
    )
    assert _same_weights(model_loaded, project[1]["example3"])
    assert meta.step == 2 and meta.data_config == {"num_tasks": 50, "input_dim": 10}
    assert meta.wandb_run_url.startswith("https://wandb.ai/team/my-project/runs/")


def test_wandb_workflow(project, api) -> None:
    from pfn_transformers.wandb import RunNameScheme, load_by_config

    scheme = RunNameScheme.from_templates(model={"n_layers": None}, data={"num_tasks": None})
    # 5. Load later
    model, _, _ = load_by_config(
        scheme=scheme,
        n_layers=4,
        num_tasks=100,
        project="my-project",
    )
    assert _same_weights(model, project[1]["workflow"])


def test_loading_by_run_id_and_browsing(api, capsys) -> None:
    from pfn_transformers.wandb import (
        list_available_models,
        list_checkpoints,
        load_by_config,
        load_from_pretrained,
    )

    # Load latest checkpoint
    model, _, metadata = load_from_pretrained(
        run_identifier="abc123",
        project="my-project",
    )
    assert metadata.step == 5000
    # Load specific step
    model, _, metadata = load_from_pretrained(
        run_identifier="abc123",
        checkpoint_step=5000,
        project="my-project",
    )
    print(f"Loaded from: {metadata.wandb_run_url}")

    from pfn_transformers.wandb import RunNameScheme

    scheme = RunNameScheme.from_templates(
        model={"n_layers": None, "d_model": None},
        data={"num_tasks": None},
    )
    model, _, metadata = load_by_config(
        scheme=scheme,
        n_layers=4,
        d_model=128,
        num_tasks=50,
        checkpoint_step="latest",  # or "earliest" or int
        project="my-project",
    )

    # List all models
    models = list_available_models(
        project="my-project",
        tags=["production"],  # optional
    )
    for m in models:
        print(f"{m.run_name} (step {m.checkpoint_step})")
        print(f"  URL: {m.run_url}")
    # List checkpoints for a run
    checkpoints = list_checkpoints("abc123", project="my-project")
    for c in checkpoints:
        print(f"Step {c.step}: {c.artifact_name}")

    out = capsys.readouterr().out
    assert "Loaded from: https://wandb.ai/team/my-project/runs/abc123" in out
    assert "experiment-1 (step 5000)" in out
    assert "Step 500: checkpoint-abc123-step-500:v0" in out
    assert "Step 5000: checkpoint-abc123-step-5000:v0" in out
    assert out.index("Step 500:") < out.index("Step 5000:")


def test_basic_usage_with_env_mode_disabled(monkeypatch, tmp_path, tmp_path_factory) -> None:
    wandb_dir = isolate_wandb(monkeypatch, tmp_path, tmp_path_factory)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    from pfn_transformers import TrainingConfig, train

    model_config = RegressionConfig(
        d_model=16, n_layers=1, n_heads=2, input_dim=5, prediction_type="point"
    )
    training_config = TrainingConfig(
        **FAST,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        use_wandb=True,
        wandb_project="my-project",  # or set WANDB_PROJECT env var
        wandb_entity="myteam",  # or set WANDB_ENTITY env var
        wandb_run_name="experiment-1",
        wandb_tags=["regression", "v1"],
        wandb_log_model=True,  # upload checkpoints
    )
    model = train(_data_gen(5), model_config, training_config)
    assert model is not None
    assert offline_run_dirs(wandb_dir) == []
    assert (tmp_path / "checkpoints" / "step-2.pt").is_file()
