"""Loading and listing checkpoints from W&B, against a fake ``wandb.Api`` (no network).

Checkpoint files are real ones written by ``checkpointing.save_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from pfn_transformers import PFN, RegressionConfig, checkpointing
from pfn_transformers.wandb import (
    AmbiguousRunError,
    CheckpointNotFoundError,
    NoMatchingRunError,
    RunNameScheme,
    RunNotFoundError,
    WandbRunRef,
    WandbUnavailableError,
    create_run_name,
    find_runs_by_config,
    format_records_table,
    get_api,
    is_wandb_run_spec,
    list_available_models,
    list_checkpoints,
    load_by_config,
    load_from_pretrained,
    parse_run_identifier,
    resolve_wandb_run,
)
from tests.wandb_fakes import (
    FakeApi,
    FakeArtifact,
    FakeRun,
    checkpoint_artifact,
    isolate_wandb,
)

STEPS = (500, 5000, 50, 1000)  # logging order; created_at makes 500 the newest
SCHEME = RunNameScheme.from_templates(
    model={"n_layers": None, "d_model": None},
    data={"num_tasks": None, "input_dim": None},
)
MODEL_CONFIG = RegressionConfig(
    d_model=8, n_layers=1, n_heads=2, input_dim=2, prediction_type="point"
)


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path, tmp_path_factory):
    isolate_wandb(monkeypatch, tmp_path, tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[int, tuple[Path, dict]]:
    """step -> (file, state dict): distinct weights per step."""
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for step in (*STEPS, 7):
        torch.manual_seed(step)
        state = PFN(MODEL_CONFIG).state_dict()
        path = checkpointing.save_checkpoint(
            root / f"step-{step}.pt",
            step,
            state,
            MODEL_CONFIG,
            {"learning_rate": 1e-3},
            optimizer_state={"state": {}, "param_groups": [{"lr": 1e-3, "step_marker": step}]},
            data_config={"num_tasks": 100, "input_dim": 2},
        )
        out[step] = (Path(path), state)
    return out


def _config(n_layers=1, d_model=8, num_tasks=100, input_dim=2) -> dict:
    model = {**MODEL_CONFIG.to_dict(), "n_layers": n_layers, "d_model": d_model}
    return {
        "model": model,
        "training": {"learning_rate": 1e-3},
        "data": {"num_tasks": num_tasks, "input_dim": input_dim},
    }


def _run(run_id, checkpoints, steps, *, config=None, name=None, tags=(), project="proj"):
    artifacts = [
        checkpoint_artifact(
            run_id,
            s,
            checkpoints[s][0],
            metadata={"model_config": MODEL_CONFIG.to_dict()},
            created_at=f"2025-01-0{1 + (s == 500)}T00:00:00Z",
            project=project,
        )
        for s in steps
    ]
    return FakeRun(
        id=run_id,
        name=name or run_id,
        config=config if config is not None else _config(),
        tags=list(tags),
        artifacts=artifacts,
        project=project,
    )


@pytest.fixture
def fake(checkpoints) -> FakeApi:
    name = create_run_name("exp", MODEL_CONFIG, {"num_tasks": 100, "input_dim": 2}, SCHEME)
    main = _run("abc123", checkpoints, STEPS, name=name, tags=("regression", "production"))
    main.artifacts.append(FakeArtifact("source-abc123", type="code"))
    main.artifacts.append(FakeArtifact("dataset-step-9", type="dataset", metadata={"step": 9}))
    other = _run("def456", checkpoints, (500,), config=_config(num_tasks=200), tags=("regression",))
    name_only = _run(
        "ghi789",
        checkpoints,
        (1000,),
        config={},
        name="old-model-n_layers3-d_model8-data-num_tasks100-input_dim2",
    )
    crashed = _run("nockpt", checkpoints, (), config=_config())
    elsewhere = _run("zzz000", checkpoints, (50,), project="other-project")
    return FakeApi([main, other, name_only, crashed, elsewhere])


def _weights_equal(model, state) -> bool:
    got = model.state_dict()
    return set(got) == set(state) and all(torch.equal(got[k].cpu(), state[k]) for k in state)


def _downloads(api: FakeApi) -> list[str]:
    return [a.name for r in api._runs for a in r.artifacts if a.downloads]


# --------------------------------------------------------------------------- by run id
def test_latest_is_highest_step_and_metadata_has_wandb_fields(fake, checkpoints) -> None:
    model, opt, meta = load_from_pretrained("abc123", project="proj", device="cpu", api=fake)
    assert meta.step == 5000  # highest step, although step 500 was created last
    assert _weights_equal(model, checkpoints[5000][1])
    assert opt is None
    assert meta.wandb_run_url == "https://wandb.ai/team/proj/runs/abc123"
    assert meta.wandb_run_id == "abc123"
    assert meta.artifact_name == "team/proj/checkpoint-abc123-step-5000:v0"
    assert meta.path == "wandb-artifact:team/proj/checkpoint-abc123-step-5000:v0"
    assert _downloads(fake) == ["checkpoint-abc123-step-5000:v0"]  # only the chosen one


@pytest.mark.parametrize(("wanted", "expected"), [(500, 500), (50, 50), ("earliest", 50)])
def test_exact_step_never_matches_a_longer_step(fake, checkpoints, wanted, expected) -> None:
    model, _, meta = load_from_pretrained(
        "abc123", checkpoint_step=wanted, project="proj", device="cpu", api=fake
    )
    assert meta.step == expected
    assert _weights_equal(model, checkpoints[expected][1])


def test_step_500_missing_while_5000_exists(checkpoints) -> None:
    api = FakeApi([_run("r5000", checkpoints, (5000,))])
    with pytest.raises(CheckpointNotFoundError, match=r"no checkpoint at step 500; .*\[5000\]"):
        load_from_pretrained("r5000", checkpoint_step=500, project="proj", api=api)
    assert _downloads(api) == []


def test_step_read_from_exact_name_suffix_without_metadata(checkpoints) -> None:
    run = FakeRun("bare", artifacts=[])
    for step in (5000, 500):
        art = checkpoint_artifact("bare", step, checkpoints[step][0])
        art.metadata = {}
        run.artifacts.append(art)
    api = FakeApi([run])
    _, _, meta = load_from_pretrained("bare", 500, project="proj", device="cpu", api=api)
    assert meta.step == 500
    steps = [c.step for c in list_checkpoints("bare", project="proj", api=api)]
    assert steps == [500, 5000]


def test_newest_version_of_a_step_wins(checkpoints) -> None:
    run = _run("rv", checkpoints, (1000,))
    newer = checkpoint_artifact("rv", 1000, checkpoints[7][0], version="v1")
    newer.metadata["step"] = 1000
    run.artifacts.append(newer)
    api = FakeApi([run])
    model, _, _ = load_from_pretrained("rv", project="proj", device="cpu", api=api)
    assert _weights_equal(model, checkpoints[7][1])


def test_load_optimizer_and_download_dir(fake, tmp_path) -> None:
    keep = tmp_path / "downloads"
    _, opt, meta = load_from_pretrained(
        "abc123",
        checkpoint_step=1000,
        project="proj",
        device="cpu",
        load_optimizer=True,
        api=fake,
        download_dir=keep,
    )
    assert opt["param_groups"][0]["step_marker"] == 1000
    assert Path(meta.path).is_file() and keep in Path(meta.path).parents


@pytest.mark.parametrize(
    "identifier",
    [
        "team/proj/abc123",
        "wandb:team/proj/abc123",
        "https://wandb.ai/team/proj/runs/abc123?nw=x",
        "team/proj/runs/abc123",
        "proj/abc123",
    ],
)
def test_identifier_forms(identifier) -> None:
    ref = parse_run_identifier(identifier)
    assert (ref.project, ref.run_id) == ("proj", "abc123")
    assert ref.entity in ("team", None)


def test_identifier_with_step_suffix_loads_that_step(fake) -> None:
    _, _, meta = load_from_pretrained("wandb:team/proj/abc123@500", device="cpu", api=fake)
    assert meta.step == 500
    with pytest.raises(ValueError, match="pass one of them"):
        load_from_pretrained("wandb:team/proj/abc123@500", 5000, api=fake)


def test_project_and_entity_fall_back_to_env(fake, monkeypatch) -> None:
    with pytest.raises(ValueError, match="WANDB_PROJECT"):
        load_from_pretrained("abc123", api=fake)
    with pytest.raises(ValueError, match="WANDB_PROJECT"):
        list_available_models(api=fake)
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("WANDB_ENTITY", "team")
    _, _, meta = load_from_pretrained("abc123", checkpoint_step=50, device="cpu", api=fake)
    assert meta.step == 50
    assert ("run", "team/proj/abc123") in fake.calls
    with pytest.raises(ValueError, match="names project 'proj' but project='x'"):
        load_from_pretrained("team/proj/abc123", project="x", api=fake)


def test_unknown_run_and_lookup_by_unique_name(fake) -> None:
    with pytest.raises(RunNotFoundError, match="No W&B run 'team/proj/nope'"):
        load_from_pretrained("team/proj/nope", api=fake)
    name = "old-model-n_layers3-d_model8-data-num_tasks100-input_dim2"
    _, _, meta = load_from_pretrained(name, project="proj", device="cpu", api=fake)
    assert meta.wandb_run_id == "ghi789"


def test_run_without_checkpoints_says_how_to_log_them(fake) -> None:
    with pytest.raises(CheckpointNotFoundError, match="wandb_log_model=True"):
        load_from_pretrained("nockpt", project="proj", api=fake)


# --------------------------------------------------------------------------- by config
def test_load_by_config_finds_the_one_matching_run(fake, checkpoints) -> None:
    model, _, meta = load_by_config(
        SCHEME, n_layers=1, d_model=8, num_tasks=100, input_dim=2, project="proj",
        device="cpu", api=fake,
    )  # fmt: skip
    assert meta.wandb_run_id == "abc123" and meta.step == 5000  # "nockpt" has no checkpoints
    assert _weights_equal(model, checkpoints[5000][1])
    _, _, meta = load_by_config(
        SCHEME, "earliest", project="proj", api=fake, num_tasks=100.0, n_layers=1
    )
    assert (meta.wandb_run_id, meta.step) == ("abc123", 50)  # 100.0 matches 100
    _, _, meta = load_by_config(
        SCHEME, 500, project="proj", api=fake, num_tasks=200, **{"data.input_dim": 2}
    )
    assert (meta.wandb_run_id, meta.step) == ("def456", 500)


def test_load_by_config_matches_parsed_run_name_when_config_is_missing(fake) -> None:
    _, _, meta = load_by_config(SCHEME, project="proj", api=fake, n_layers=3, num_tasks=100)
    assert (meta.wandb_run_id, meta.step) == ("ghi789", 1000)


def test_load_by_config_no_match_lists_candidates(fake) -> None:
    with pytest.raises(NoMatchingRunError) as info:
        load_by_config(SCHEME, project="proj", api=fake, n_layers=1, num_tasks=999)
    text = str(info.value)
    assert "num_tasks=999" in text
    for run_id in ("abc123", "def456", "ghi789"):
        assert run_id in text
    assert "num_tasks=100" in text and "num_tasks=200" in text
    assert "zzz000" not in text  # other project


def test_load_by_config_several_matches_is_an_error(fake) -> None:
    with pytest.raises(AmbiguousRunError) as info:
        load_by_config(SCHEME, project="proj", api=fake, d_model=8)
    text = str(info.value)
    assert "3 W&B runs" in text and "load_from_pretrained" in text
    assert all(r in text for r in ("abc123", "def456", "ghi789")) and "nockpt" not in text
    assert _downloads(fake) == []
    found = find_runs_by_config(SCHEME, project="proj", api=fake, d_model=8)
    assert [r.id for r in found] == ["abc123", "def456", "ghi789", "nockpt"]
    found = find_runs_by_config(SCHEME, project="proj", api=fake, learning_rate=1e-3)
    assert [r.id for r in found] == ["abc123", "def456", "nockpt"]  # outside the scheme


def test_load_by_config_other_errors(fake, checkpoints) -> None:
    with pytest.raises(ValueError, match="at least one config filter"):
        load_by_config(SCHEME, project="proj", api=fake)
    with pytest.raises(ValueError, match="checkpoint_step='newest'"):
        load_by_config(SCHEME, "newest", project="proj", api=fake, n_layers=1)
    with pytest.raises(CheckpointNotFoundError, match="none has logged checkpoints"):
        api = FakeApi([_run("only", checkpoints, (), config=_config(n_layers=9))])
        load_by_config(SCHEME, project="proj", api=api, n_layers=9)
    with pytest.raises(NoMatchingRunError, match="not fields of the scheme"):
        load_by_config(SCHEME, project="proj", api=fake, n_layer=1)
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at step 7"):
        load_by_config(SCHEME, 7, project="proj", api=fake, num_tasks=200)


# --------------------------------------------------------------------------- listing
def test_list_available_models(fake) -> None:
    records = list_available_models(project="proj", api=fake)
    assert [r.run_id for r in records] == ["abc123", "def456", "ghi789"]
    main = records[0]
    assert main.checkpoint_step == 5000 and main.num_checkpoints == 4
    assert main.artifact_name == "checkpoint-abc123-step-5000:v0"
    assert main.run_url == "https://wandb.ai/team/proj/runs/abc123"
    assert main.run_name.startswith("exp-model-n_layers1")
    assert main.config["model"]["d_model"] == 8 and main.tags == ["regression", "production"]
    tagged = list_available_models(project="proj", entity="team", tags=["production"], api=fake)
    assert [r.run_id for r in tagged] == ["abc123"]
    both = list_available_models(project="proj", tags=["regression", "production"], api=fake)
    assert [r.run_id for r in both] == ["abc123"]
    assert list_available_models(project="proj", tags=["nothing"], api=fake) == []


def test_list_checkpoints_sorted_by_step(fake) -> None:
    records = list_checkpoints("abc123", project="proj", api=fake)
    assert [c.step for c in records] == [50, 500, 1000, 5000]
    c500 = records[1]
    assert c500.artifact_name == "checkpoint-abc123-step-500:v0"
    assert c500.aliases == ["latest", "step-500"]
    assert c500.created_at == "2025-01-02T00:00:00Z" and c500.version == "v0"
    assert list_checkpoints("nockpt", project="proj", api=fake) == []


def test_format_records_table(fake) -> None:
    console = Console(record=True, width=250)
    console.print(format_records_table(list_available_models(project="proj", api=fake)))
    console.print(format_records_table(list_checkpoints("abc123", project="proj", api=fake)))
    text = console.export_text()
    assert "abc123" in text and "5000" in text and "production" in text
    assert "checkpoint-abc123-step-50:v0" in text and "step-1000" in text
    assert format_records_table([]).row_count == 0


# --------------------------------------------------------------------------- the API seam
def test_get_api_without_credentials_fails_fast_and_offline(monkeypatch) -> None:
    import wandb

    def no_api(*args, **kwargs):
        raise AssertionError("wandb.Api must not be constructed")

    monkeypatch.setattr(wandb, "Api", no_api)
    with pytest.raises(WandbUnavailableError, match="WANDB_API_KEY"):
        get_api()
    with pytest.raises(WandbUnavailableError, match="credentials"):
        list_available_models(project="proj")
    fake = FakeApi()
    assert get_api(fake) is fake


def test_get_api_builds_wandb_api_with_a_timeout(monkeypatch) -> None:
    import wandb

    made = {}

    def fake_api(timeout=None, **kwargs):
        made["timeout"] = timeout
        return FakeApi()

    monkeypatch.setattr(wandb, "Api", fake_api)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert isinstance(get_api(), FakeApi)
    assert made["timeout"] == 30


def test_resolve_wandb_run_for_the_cli() -> None:
    ref = resolve_wandb_run("wandb:team/proj/abc123@500")
    assert ref == WandbRunRef("team", "proj", "abc123", 500)
    assert str(ref) == "wandb:team/proj/abc123@500"
    assert resolve_wandb_run(str(ref)) == ref
    assert resolve_wandb_run("wandb:team/proj/abc123").step is None
    assert is_wandb_run_spec("https://wandb.ai/team/proj/runs/abc123")
    assert not is_wandb_run_spec("outputs/2025-01-01/run")
    with pytest.raises(ValueError, match="wandb:ENTITY/PROJECT/RUN_ID"):
        resolve_wandb_run("outputs/run")
    with pytest.raises(ValueError, match="WANDB_PROJECT"):
        resolve_wandb_run("wandb:abc123")
    with pytest.raises(ValueError, match="after '@'"):
        resolve_wandb_run("wandb:team/proj/abc123@latest")
    with pytest.raises(ValueError, match="not valid"):
        resolve_wandb_run("wandb:a/b/c/d/e")
