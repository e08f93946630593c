"""``make bench-paper``'s code paths at a tiny budget (``--quick``): the card and figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_paper_quick_writes_the_card_and_the_figure(tmp_path):
    out, fig = tmp_path / "paper.json", tmp_path / "paper.png"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_paper.py"), "--quick",
           "--variants", "1,cond", "--out", str(out), "--figure", str(fig)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: a quick run misses the targets
    card = json.loads(out.read_text())
    assert fig.stat().st_size > 10_000
    one = card["variants"]["1"]
    for key in ("pfn", "exact", "mle_ii", "true_hyperparameters"):
        assert len(one["nll_per_n"][key]["mean"]) == 31
    # the oracle knows the hyperparameters: it beats the exact predictive on average
    assert one["oracle_excess_mean_n1_30"] < 0
    assert one["prediction_time_per_dataset"]["mle_ii_s"] > 0
    assert set(card["claims"]) >= {"pfn_closer_than_mle_ii", "pfn_below_mle_ii_every_n_le_10"}
    cond = card["variants"]["cond"]
    assert len(cond["given_excess_per_n"]["mean"]) == 31
    assert isinstance(cond["meets_target"], bool)
