"""``pfn inspect`` end to end, in subprocesses inside a temporary folder.

Tiny runs (training=tiny, d_model 32, 2 layers, 2 heads, 30 steps): these check the
plumbing (files, report contents, messages), not what a trained PFN learns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import TINY, cli_env, run_dirs, run_pfn

pytestmark = pytest.mark.timeout(300)

FILES = ("attention.png", "lens.png", "ablation.png", "probes.png", "cache.pt", "report.json")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inspect")


@pytest.fixture(scope="module")
def linear_run(workdir) -> Path:
    run_pfn(["train", "prior=linear", *TINY], workdir)
    (run,) = run_dirs(workdir / "outputs")
    return run


def _only_output(run: Path, before: set[Path]) -> Path:
    (out,) = set((run / "inspect").iterdir()) - before
    return out


def _flat(text: str) -> str:
    """An error paragraph with its line wrapping undone."""
    return " ".join(text.split())


def _outputs(run: Path) -> set[Path]:
    return set((run / "inspect").iterdir()) if (run / "inspect").is_dir() else set()


def test_inspect_latest_writes_figures_report_and_cache(linear_run, workdir):
    import torch

    before = _outputs(linear_run)
    proc = run_pfn(["inspect", "run=latest", "num_datasets=32", "seq_len=8"], workdir)
    out = _only_output(linear_run, before)
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert out.name in proc.stdout and "report.json" in proc.stdout
    for title in ("Attention from the predictions", "Logit lens", "Ablation", "probes"):
        assert title in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["analyses"] == ["attention", "lens", "ablation", "probes", "export"]
    assert report["step"] == 30 and report["head"] == "bar" and report["errors"] == {}
    assert report["metric"] == "excess_nll" and report["num_datasets"] == 32
    att = report["attention"]
    assert att["context_size"] == 16 and len(att["token_roles"]) == 33
    assert att["token_roles"][:2] == ["start", "p0"] and att["token_roles"][17] == "q0"
    assert [h["name"] for h in att["heads"]] == ["L0.H0", "L0.H1", "L1.H0", "L1.H1"]
    for h in att["heads"]:
        assert sum(h[k] for k in ("start", "earlier_data", "self", "other")) == pytest.approx(1)
    lens = report["lens"]
    assert lens["layers"] == ["embed", "L0", "L1"]
    assert all(len(lens["per_layer"][lab]["per_n"]) == 8 for lab in lens["layers"])
    abl = report["ablation"]
    assert len(abl["results"]) == 2 * 3 * 2  # (2 heads + MLP) x 2 layers x 2 modes
    assert {r["mode"] for r in abl["results"]} == {"zero", "mean"}
    assert set(report["probes"]["r2"]) == {"weight_mean"}
    assert set(report["probes"]["r2"]["weight_mean"]) == {"embed", "L0", "L1"}
    assert report["timings_s"]["total"] > 0

    data = torch.load(out / "cache.pt", weights_only=True)
    assert data["cache"]["blocks.0.attn.hook_pattern"].shape == (1, 2, 33, 33)
    assert data["x"].shape == (1, 16, 1) and data["y"].shape == (1, 16)
    assert (workdir / report["export"]["path"]).resolve() == (out / "cache.pt").resolve()


def test_inspect_coin_run_on_a_context_from_a_file(linear_run, workdir):
    import torch

    run_pfn(["train", "model=unsupervised_discrete", "prior=coin", *TINY], workdir)
    (coin,) = [d for d in run_dirs(workdir / "outputs") if d.name.endswith("-coin")]
    (workdir / "flips.csv").write_text("y\n1\n1\n0\n1\n0\n")
    proc = run_pfn(
        [
            "inspect",
            f"run={coin}",
            "analyses=[attention,probes,export]",
            "context.source=file",
            "context.path=flips.csv",
            "num_datasets=32",
            "plots=false",
        ],
        workdir,
    )
    (out,) = (coin / "inspect").iterdir()
    assert sorted(p.name for p in out.iterdir()) == ["cache.pt", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert "Posterior probes" in proc.stdout and "Logit lens" not in proc.stdout
    assert report["head"] == "discrete" and "lens" not in report
    assert report["attention"]["token_roles"] == ["start", "y0", "y1", "y2", "y3", "y4"]
    assert "flips.csv" in report["attention"]["context"]
    assert set(report["probes"]["r2"]) == {"bias_mean"}
    data = torch.load(out / "cache.pt", weights_only=True)
    assert data["x"] is None and data["y"].tolist() == [[1, 1, 0, 1, 0]]


def test_inspect_says_which_analysis_does_not_apply(linear_run, workdir):
    before = _outputs(linear_run)
    proc = run_pfn(
        [
            "inspect",
            f"run={linear_run}",
            "prior=mlp",
            "analyses=[lens,probes]",
            "num_datasets=16",
            "seq_len=6",
            "plots=false",
        ],
        workdir,
    )
    report = json.loads((_only_output(linear_run, before) / "report.json").read_text())
    assert report["metric"] == "nll" and "no exact posterior" in report["metric_description"]
    assert "MLPPrior declares no posterior statistics" in report["skipped"]["probes"]
    assert "probes" not in report and "lens" in report
    assert "skipped probes" in proc.stdout


def test_inspect_missing_run_is_a_clear_error(workdir):
    proc = run_pfn(["inspect", "run=outputs/no-such-run"], workdir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pfn inspect: error: run=outputs/no-such-run" in _flat(proc.stderr)
    assert "does not exist" in _flat(proc.stderr)


def test_inspect_run_without_checkpoint_is_a_clear_error(workdir):
    run = workdir / "outputs" / "empty-run"
    run.mkdir(parents=True)
    (run / "status.json").write_text('{"status": "failed", "step": 0}')
    proc = run_pfn(["inspect", f"run={run}"], workdir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the run has no checkpoint" in _flat(proc.stderr)


def test_inspect_unknown_analysis_is_a_clear_error(tmp_path):
    proc = run_pfn(["inspect", "analyses=[lens,atention]"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'atention' is not known" in _flat(proc.stderr)
    assert "['attention', 'lens', 'ablation', 'probes', 'export']" in _flat(proc.stderr)


def test_inspect_help_and_dispatcher_stay_light(tmp_path):
    assert "pfn inspect" in run_pfn(["inspect", "--help"], tmp_path).stdout
    assert "  inspect" in run_pfn(["--help"], tmp_path).stdout
    probe = (
        "import contextlib, io, sys\n"
        "from pfn_cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['inspect', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'transformer_lens') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout
