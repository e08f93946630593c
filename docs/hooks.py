"""MkDocs hook: the benchmark page's tables come from ``benchmarks/results/*.json``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- generated: benchmark tables -->"
# one table of one result file, e.g. <!-- generated: ops.json ablation -->
TABLE = re.compile(r"<!-- generated: ([\w.-]+\.json) ([\w-]+) -->")


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown and not TABLE.search(markdown):
        return markdown
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from bench_page import render, table
    finally:
        sys.path.pop(0)
    markdown = TABLE.sub(lambda m: table(m.group(1), m.group(2)), markdown)
    return markdown.replace(MARKER, render())
