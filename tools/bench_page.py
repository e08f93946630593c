"""The benchmark page, generated from ``benchmarks/results/*.json`` (never copied by hand).

``python tools/bench_page.py`` prints it; the MkDocs hook (``docs/hooks.py``) puts it into
``docs/benchmarks.md`` at build time, and replaces a marker
``<!-- generated: FILE.json KEY -->`` in any page by that file's ``KEY`` table (``table``),
so notes quote a figure from its result file rather than by hand. Each result file becomes a section: its scalar fields
as a list, each mapping of records (``{variant: {metric: value}}``) and each list of records
as a table whose columns are the records' (flattened) fields.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MAX_COLUMNS = 12


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 6 else ", ".join(_fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(record: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth < 2:
            out.update(_flatten(value, f"{name}.", depth + 1))
        else:
            out[name] = value
    return out


def _table(rows: list[tuple[str, Mapping[str, Any]]], key_name: str) -> list[str]:
    flat = [(name, _flatten(rec)) for name, rec in rows]
    columns: list[str] = []
    for _, rec in flat:
        for col in rec:
            if col not in columns and not isinstance(rec[col], list | Mapping):
                columns.append(col)
    shown = columns[:MAX_COLUMNS]
    lines = [
        "| " + " | ".join([key_name, *shown]) + " |",
        "|" + "---|" * (len(shown) + 1),
    ]
    for name, rec in flat:
        lines.append("| " + " | ".join([_fmt(name), *(_fmt(rec.get(c)) for c in shown)]) + " |")
    if len(columns) > len(shown):
        lines += ["", f"({len(columns) - len(shown)} more fields in the result file.)"]
    return lines


def _is_records(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value.values())
    )


def section(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    lines = [
        f"## {path.stem.replace('_', ' ').capitalize()}",
        "",
        f"From `benchmarks/results/{path.name}`.",
        "",
    ]
    if not isinstance(data, Mapping):
        return [*lines, f"(a {type(data).__name__}, not rendered)", ""]
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping | list)}
    for key, value in scalars.items():
        lines.append(f"- **{key}**: {_fmt(value)}")
    if scalars:
        lines.append("")
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines += [
                f"### {key}",
                "",
                *_table([(str(i), v) for i, v in enumerate(value)], "#"),
                "",
            ]
        elif _is_records(value):
            lines += [f"### {key}", "", *_table(list(value.items()), key), ""]
        elif isinstance(value, Mapping):
            lines += [f"### {key}", ""]
            for k, v in _flatten(value).items():
                lines.append(f"- {k}: {_fmt(v)}")
            lines.append("")
    return lines


def table(name: str, key: str, results: Path = RESULTS) -> str:
    """The ``key`` records of ``benchmarks/results/<name>`` as one markdown table."""
    data = json.loads((results / name).read_text())
    value = data[key]
    if isinstance(value, list):
        rows = [(str(i), v) for i, v in enumerate(value)]
    else:
        rows = list(value.items())
    lines = _table(rows, key)
    return "\n".join([*lines, "", f"(From `benchmarks/results/{name}`, `{key}`.)"]) + "\n"


def render(results: Path = RESULTS) -> str:
    lines: list[str] = []
    for path in sorted(results.glob("*.json")):
        lines += section(path)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
