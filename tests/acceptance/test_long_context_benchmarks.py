"""The long-context benchmarks run, and the docs' figures are their result files'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import report_scaling  # noqa: E402


def _run(args: list[str], timeout: int = 300) -> None:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_bench_scaling_writes_steps_ratios_and_exponents(tmp_path):
    out = tmp_path / "scaling.json"
    _run(["benchmarks/bench_scaling.py", "--points", "8", "16", "--paths", "auto", "dense",
          "--rounds", "1", "--steps", "1", "--no-memory", "--no-peer", "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    rows = result["steps"]["rows"]
    assert [r["points"] for r in rows] == [8, 16]
    for r in rows:
        assert r["batch"] == 16_384 // (2 * r["points"] + 1)
        assert set(r["seconds"]) == {"pfn auto", "pfn dense", "encoder 2S+1", "encoder S+1"}
        enc = r["seconds"]["encoder 2S+1"]
        assert r["vs_encoder_2S+1"]["pfn auto"] == r["seconds"]["pfn auto"] / enc
        assert r["per_dataset_ms"]["pfn auto"] == 1000 * r["seconds"]["pfn auto"] / r["batch"]


def test_bench_context_split_compares_both_modes_on_the_same_heldout_data(tmp_path):
    out = tmp_path / "split.json"
    _run(["benchmarks/bench_context_split.py", "--points", "8", "--seconds", "1", "--probe",
          "2", "--datasets", "8", "--d-model", "16", "--n-layers", "1", "--out", str(out)])  # fmt: skip
    task = json.loads(out.read_text())["tasks"]["8"]
    for mode in ("all", "random"):
        assert task[mode]["steps_planned"] >= 2 and task[mode]["excess_nll"] > -0.1
        assert task[mode]["train_seconds"] > 0
        assert set(task[mode]["at_n"]) == {"0", "1", "4"}
    assert task["random_over_all"] == task["random"]["excess_nll"] / task["all"]["excess_nll"]


def test_loglog_slope_recovers_a_power_law():
    import bench_scaling

    xs = [64, 256, 1024]
    assert abs(bench_scaling.loglog_slope(xs, [3 * x**1.5 for x in xs]) - 1.5) < 1e-12


def test_the_guides_long_context_figures_are_the_result_files():
    """`python benchmarks/report_scaling.py --write docs/guides/long-contexts.md` after a run."""
    readme = (REPO / "docs" / "guides" / "long-contexts.md").read_text()
    block = report_scaling.render()
    assert f"{report_scaling.BEGIN}\n{block}{report_scaling.END}" in readme


def test_report_marks_what_a_run_did_not_measure():
    result = {
        "token_budget": 16384, "precision": "bf16", "machine": {"cpu": "X", "torch": "2"},
        "steps": {"rows": [{
            "points": 2048, "batch": 3,
            "seconds": {"pfn auto": 0.3, "encoder 2S+1": 0.2, "encoder S+1": 0.1},
            "per_dataset_ms": {"pfn auto": 100.0, "encoder 2S+1": 66.7, "encoder S+1": 33.3},
            "vs_encoder_2S+1": {"pfn auto": 1.5, "encoder 2S+1": 1.0, "encoder S+1": 0.5},
        }]},
    }  # fmt: skip
    row = report_scaling.step_table(result)[-1]
    assert row == "| 2,048 | 3 | 100.00 | - | 66.70 | 33.30 | - | 1.50x | - | - / - / - |"
