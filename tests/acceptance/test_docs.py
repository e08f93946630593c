"""The documentation (issue 25, item 3): a short README, a site that builds with --strict,
and a benchmark page generated from the result files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from bench_page import render  # noqa: E402


def _nav_pages(nav) -> list[str]:
    out: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_the_readme_is_a_landing_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for needed in ("make install", "make test", "## Python quickstart", "pfn train", "docs/"):
        assert needed in text
    for link in ("CHANGELOG.md", "CONTRIBUTING.md"):
        assert (ROOT / link).is_file() and link in text


def test_every_page_in_the_nav_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    assert len(pages) >= 15
    assert [p for p in pages if not (ROOT / "docs" / p).is_file()] == []


def test_the_benchmark_page_is_generated_from_every_result_file(tmp_path):
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    page = render()
    for path in results:
        assert f"From `benchmarks/results/{path.name}`." in page
    (tmp_path / "toy.json").write_text(json.dumps({"results": {"a": {"nll": 0.123456}}}))
    assert "| a | 0.1235 |" in render(tmp_path)
    assert "<!-- generated: benchmark tables -->" in (ROOT / "docs" / "benchmarks.md").read_text()


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail("mkdocs is not installed: `make install` installs the docs extra")
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    assert bench.count("<table") >= 5
    assert (
        "fit_model_config" in (tmp_path / "site" / "reference" / "data" / "index.html").read_text()
    )
