"""MkDocs hook: the benchmark page's tables come from ``benchmarks/results/*.json``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- generated: benchmark tables -->"


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from bench_page import render
    finally:
        sys.path.pop(0)
    return markdown.replace(MARKER, render())
