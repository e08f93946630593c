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
    readme = (ROOT / "README.md").read_text()
    # one variant per run: the second run merges into the card the first one wrote
    for variants in ("1", "cond"):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_paper.py"), "--quick",
               "--variants", variants, "--out", str(out), "--figure", str(fig)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: quick runs miss targets
    assert (ROOT / "README.md").read_text() == readme  # only the shipped card rewrites it
    card = json.loads(out.read_text())
    assert card["last_run_variants"] == ["cond"]
    assert fig.stat().st_size > 10_000
    one = card["variants"]["1"]
    for key in ("pfn", "exact", "mle_ii", "true_hyperparameters"):
        assert len(one["nll_per_n"][key]["mean"]) == 31
    # the oracle knows the hyperparameters: it beats the exact predictive on average
    assert one["oracle_excess_mean_n1_30"] < 0
    times = one["prediction_time_per_dataset"]
    assert times["mle_ii_s"] > 0 and times["sklearn_mle_ii_s"] > 0
    assert one["speedup_vs_sklearn_mle_ii"] == times["sklearn_mle_ii_over_pfn_single"]
    assert set(card["claims"]) >= {"pfn_closer_than_mle_ii", "pfn_below_mle_ii_every_n_le_10"}
    cond = card["variants"]["cond"]
    assert len(cond["given_excess_per_n"]["mean"]) == 31
    assert isinstance(cond["meets_target"], bool)


# ------------------------------------------------------------- the README's statement
sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_statement  # noqa: E402


def _card() -> dict:
    return json.loads(paper_statement.CARD.read_text())


def test_the_readme_statement_is_rendered_from_the_committed_card():
    """The README's figures on the paper's claims are the card's, not typed by hand."""
    block = paper_statement.render(_card())
    assert block in (ROOT / "README.md").read_text()
    one = _card()["variants"]["1"]
    assert f"{one['pfn_excess_mean_n1_30']:.3f}" in block
    assert f"{one['mle_ii_excess_mean_n1_30']:.3f}" in block


def test_the_verdict_follows_the_claims():
    card = _card()
    holding = {"pfn_closer_than_mle_ii": True, "pfn_below_mle_ii_every_n_le_10": True,
               "pfn_below_mle_ii_on_average": True, "min_speedup_vs_mle_ii": 30.0,
               "min_speedup_vs_sklearn_mle_ii": 500.0}  # fmt: skip
    assert "claims hold here" in paper_statement.render({**card, "claims": holding})
    for key, bad in (
        ("pfn_below_mle_ii_every_n_le_10", False),
        ("min_speedup_vs_sklearn_mle_ii", 20.0),
    ):
        text = paper_statement.render({**card, "claims": {**holding, key: bad}})
        assert "Not every claim holds" in text and "claims hold here" not in text
    slow = paper_statement.render(
        {**card, "claims": {**holding, "min_speedup_vs_sklearn_mle_ii": 20.0}}
    )
    assert "at least 20x" in slow and "30x faster: less than two orders of magnitude" in slow


def test_a_missed_n_is_named_in_the_table():
    card = _card()
    one = json.loads(json.dumps(card["variants"]["1"]))
    one["pfn_below_mle_ii_at_n"] = {**one["pfn_below_mle_ii_at_n"], "3": False}
    text = paper_statement.render({**card, "variants": {"1": one}})
    assert "no (not at n = 3)" in text


def test_replacing_the_block_keeps_the_rest_of_the_readme():
    text = f"before\n{paper_statement.BEGIN}\nold figures\n{paper_statement.END}\nafter\n"
    out = paper_statement.replace_block(text, "NEW")
    assert out == "before\nNEW\nafter\n"
    with pytest.raises(ValueError, match="no statement block"):
        paper_statement.replace_block("no markers", "NEW")
