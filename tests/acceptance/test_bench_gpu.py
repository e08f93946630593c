"""`make bench-gpu`'s script runs its GPU code paths on CPU (`--device cpu --quick`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STEP_VARIANTS = {
    "TrainStep eager fp32",
    "TrainStep eager bf16",
    "nn.TransformerEncoder fp32",
    "nn.TransformerEncoder bf16",
    "TrainStep compiled (cold cache)",
    "TrainStep compiled (warm cache)",
}


@pytest.fixture(scope="module")
def quick_card(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench_gpu") / "gpu_quick.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_every_section_runs_without_error(quick_card):
    assert quick_card["errors"] == {}
    assert {"steps", "end_to_end", "gpu_profile", "peer", "context_length"} <= set(quick_card)
    assert quick_card["meta"]["device"] == "cpu" and quick_card["meta"]["quick"] is True


@pytest.mark.slow
def test_step_table_has_eager_and_compiled_rows_with_cold_and_warm_compile(quick_card):
    for batch in ("4", "16"):
        rows = quick_card["steps"][batch]
        assert set(rows["step_s"]) == STEP_VARIANTS
        assert rows["vs_encoder_fp32"]["nn.TransformerEncoder fp32"] == 1.0
        for name, seconds in rows["step_s"].items():
            assert seconds > 0
            assert math.isclose(rows["seq_per_s"][name], int(batch) / seconds)
        assert rows["compile_s"]["cold"] > 0 and rows["compile_s"]["warm"] > 0


@pytest.mark.slow
def test_end_to_end_and_the_gpu_profile_report_throughput_and_two_evaluations(quick_card):
    e2e = quick_card["end_to_end"]
    assert e2e["seq_per_s"] > 0 and 0 <= e2e["data_share"] <= 1
    after = quick_card["gpu_profile"]["after_s"]
    assert list(after) == ["5", "15"]  # 5 s, then resumed for 10 s more
    assert after["15"]["step"] > after["5"]["step"] > 0
    assert all(math.isfinite(a["excess_nll"]) for a in after.values())
    assert [r["points"] for r in quick_card["context_length"]["rows"]] == [8, 32]
