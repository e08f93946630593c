"""A trained run that travels, through the CLI: ``pfn export``, the same model from a plain
Python process, ``pfn eval/sample/inspect`` on an exported folder, fine-tuning with
``init_from`` (on a CSV table), and ONNX export of a run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from pfn_cli.errors import CliError
from pfn_cli.evaluate import run_eval
from pfn_cli.export import run_export
from pfn_cli.inspect import run_inspect
from pfn_cli.sample import run_sample
from pfn_cli.train import run_train
from tests.cli_helpers import CONF, TINY, cli_env, one_thread, run_dirs, run_pfn  # noqa: F401

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("travel")


@pytest.fixture(scope="module")
def run(workdir) -> Path:
    run_pfn(["train", "prior=linear", *TINY], workdir)
    (found,) = run_dirs(workdir / "outputs")
    return found


@pytest.fixture(scope="module")
def shared(run, workdir) -> Path:
    out = run_pfn(["export", f"run={run}", "out=shared"], workdir).stdout
    assert "excess NLL" in out and "PFN.from_pretrained" in out
    return workdir / "shared"


@pytest.fixture
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="travel"):
        yield


def test_export_writes_a_folder_whose_card_quotes_the_runs_eval_json(run, shared):
    assert {p.name for p in shared.iterdir()} == {
        "model.safetensors",
        "config.json",
        "README.md",
        "eval.json",
    }
    run_eval_json = json.loads((run / "eval.json").read_text())
    assert json.loads((shared / "eval.json").read_text()) == run_eval_json
    meta = yaml.safe_load((shared / "README.md").read_text().split("---\n")[1])["pfn"]
    assert meta["evaluation"]["excess_nll"]["mean"] == run_eval_json["excess_nll"]["mean"]
    assert meta["evaluation"]["excess_nll_per_n"] == run_eval_json["excess_nll"]["per_n"]
    assert meta["prior"]["name"] == "linear"
    status = json.loads((run / "status.json").read_text())
    assert meta["training"]["seconds"] == status["train_time_s"] and meta["training"]["steps"] == 30
    assert meta["commit"] == status["commit"] and meta["parent"] is None
    config = json.loads((shared / "config.json").read_text())
    assert config["prior"]["config"]["_target_"] == "pfn_transformers.priors.LinearRegressionPrior"
    assert config["model_config"]["d_model"] == 32


_PLAIN = """
import json, sys
from pfn_transformers import PFN, open_run
from pfn_transformers.evaluation import evaluate
run = open_run(sys.argv[1])
model = PFN.from_pretrained(sys.argv[1])
r = evaluate(model, run.prior(), num_datasets=32, seq_len=8, batch_size=256, seed=0)
print(json.dumps({"excess_nll": r["excess_nll"], "nll": r["nll"], "step": model.provenance["training"]["steps"]}))
"""


def test_from_pretrained_in_a_plain_process_equals_what_pfn_eval_loads(run, workdir):
    run_pfn(
        ["eval", f"run={run}", "out=cli_eval.json", "num_datasets=32", "seq_len=8", "plots=false"],
        workdir,
    )
    cli = json.loads((workdir / "cli_eval.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-c", _PLAIN, str(run)],
        cwd=workdir,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain["step"] == cli["step"] == 30
    assert plain["excess_nll"] == cli["excess_nll"] and plain["nll"] == cli["nll"]


def test_eval_sample_and_inspect_accept_an_exported_folder(shared, hydra_conf):
    shipped = (shared / "eval.json").read_text()
    results = run_eval(compose("eval", [f"run={shared}", "num_datasets=8", "plots=false"]))
    assert results["out"] == str(shared / "eval_rerun.json") and results["step"] == 30
    assert (shared / "eval.json").read_text() == shipped  # the card's figures stay true
    out = run_sample(compose("sample", [f"run={shared}", "num_samples=2", "context.num_query=4"]))
    assert out["shape"] == [2, 4]
    report = run_inspect(
        compose(
            "inspect", [f"run={shared}", "analyses=[attention]", "context.size=4", "plots=false"]
        )
    )
    assert report["step"] == 30 and report["attention"]["context_size"] == 4


def test_fine_tuning_a_run_on_a_csv_table_end_to_end(shared, workdir, hydra_conf):
    table = workdir / "table.csv"
    rows = [f"{x / 50 - 1:.3f},{2 * (x / 50 - 1) ** 2 - 0.5:.3f}" for x in range(101)]
    table.write_text("x,y\n" + "\n".join(rows) + "\n")
    overrides = [
        f"init_from={shared}",
        "prior=csv",
        f"prior.path={table}",
        "prior.target_column=y",
        "training=tiny",
        "eval.num_datasets=16",
        "eval.batch_size=16",
        "freeze=[blocks.0]",
    ]
    run_dir = workdir / "outputs" / "tuned"
    summary = run_train(compose("train", overrides), run_dir=run_dir, choices={"prior": "csv"})
    assert summary["status"] == "finished"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["parent"]["source"] == str(shared) and status["parent"]["frozen"] == ["blocks.0"]
    assert status["model"] == "regression"  # the source's model choice
    report = json.loads((run_dir / "eval.json").read_text())["fine_tuning"]
    assert report["new_prior"]["metric"] == "nll"  # a table has no exact posterior
    assert report["source_prior"]["prior"] == "LinearRegressionPrior"
    source = report["source_prior"]
    assert source["metric"] == "excess_nll" and report["forgetting"] == pytest.approx(
        source["after"]["mean"] - source["before"]["mean"]
    )
    out = run_export(compose("export", [f"run={run_dir}", f"out={workdir / 'tuned_shared'}"]))
    card = (Path(out["out"]) / "README.md").read_text()
    assert f"Fine-tuned from `{shared}`" in card and "forgetting" in card


def test_init_from_mistakes_are_clear_errors(shared, workdir, hydra_conf):
    with pytest.raises(CliError, match=r"`model.d_model=8` changes the model"):
        run_train(
            compose("train", [f"init_from={shared}", "model.d_model=8"]),
            run_dir=workdir / "outputs" / "bad1",
            overrides=[f"init_from={shared}", "model.d_model=8"],
        )
    with pytest.raises(CliError, match=r"init_from=nowhere: source='nowhere' does not exist"):
        run_train(compose("train", ["init_from=nowhere"]), run_dir=workdir / "outputs" / "bad2")
    with pytest.raises(CliError, match="freeze=... and refit_buckets=true fine-tune"):
        run_train(compose("train", ["freeze=[W_x]"]), run_dir=workdir / "outputs" / "bad3")


def test_export_format_onnx_of_a_run(run, workdir, hydra_conf):
    pytest.importorskip("onnxruntime")
    out = run_export(compose("export", [f"run={run}", "format=onnx", f"out={workdir / 'onnx'}"]))
    assert [Path(f).name for f in out["files"]] == ["model.onnx", "model.onnx.json"]
    info = json.loads((workdir / "onnx" / "model.onnx.json").read_text())
    assert info["head"] == "bar" and len(info["bucket_borders"]) == 257
    with pytest.raises(CliError, match="format='tflite' is not valid"):
        run_export(compose("export", [f"run={run}", "format=tflite"]))


def _readme_block(heading: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "sharing.md").read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"docs/guides/sharing.md lost its {heading} example"
    return match.group(1)


def test_the_readmes_sharing_and_notebook_examples_run(run, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    share: dict = {}
    exec(
        _readme_block("### Share a PFN in three lines").replace("outputs/RUN_DIR", str(run)), share
    )  # noqa: S102
    x, y = torch.randn(2, 5, 1), torch.randn(2, 5)
    assert torch.equal(share["model"](x, y), share["same"](x, y))
    assert (tmp_path / "my_pfn" / "README.md").is_file()
    notebook: dict = {}
    exec(_readme_block("### A run from a notebook").replace("outputs/RUN_DIR", str(run)), notebook)  # noqa: S102
    assert notebook["run"].checkpoint_steps == [10, 20, 30]
    assert type(notebook["prior"]).__name__ == "LinearRegressionPrior"
    assert torch.equal(notebook["model"](x, y), share["model"](x, y))
