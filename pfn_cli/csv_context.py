"""A context read from a CSV file (``context.path``, ``context.query_path``), for ``pfn sample``
and ``pfn inspect``."""

from __future__ import annotations

import csv
from pathlib import Path

from omegaconf import DictConfig

from pfn_cli.errors import CliError


def read_csv_columns(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise CliError(f"context.path={path}: no such file; pass a CSV file with a header row.")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise CliError(f"context.path={path}: needs a header row and at least one data row.")
    header = [h.strip() for h in rows[0]]
    cols: dict[str, list[float]] = {h: [] for h in header}
    for i, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CliError(
                f"context.path={path}: line {i} has {len(row)} cells, header {len(header)}."
            )
        for h, cell in zip(header, row):
            try:
                cols[h].append(float(cell))
            except ValueError:
                raise CliError(
                    f"context.path={path}: line {i}, column {h!r} holds {cell!r}, not a number."
                ) from None
    return cols


def columns(cols: dict[str, list[float]], names: list[str], path: Path, role: str):
    import torch

    missing = [n for n in names if n not in cols]
    if missing:
        raise CliError(
            f"context.{role}={missing}: not columns of {path}; its columns are {list(cols)}."
        )
    return torch.tensor([cols[n] for n in names], dtype=torch.float32).T  # [N, len(names)]


def file_context(ctx: DictConfig, input_dim: int | None):
    """(x [n, D] | None, y [n], x_query [m, D] | None) from context.path / context.query_path."""
    path = Path(str(ctx.path))
    cols = read_csv_columns(path)
    y_col = str(ctx.get("y_column") or "y")
    y = columns(cols, [y_col], path, "y_column")[:, 0]
    if input_dim is None:
        return None, y, None
    x_names = list(ctx.x_columns) if ctx.get("x_columns") else [c for c in cols if c != y_col]
    if len(x_names) != input_dim:
        raise CliError(
            f"context.x_columns={x_names}: the model takes input_dim={input_dim} features; "
            "choose exactly that many columns."
        )
    x = columns(cols, x_names, path, "x_columns")
    xq = None
    if ctx.get("query_path"):
        qpath = Path(str(ctx.query_path))
        xq = columns(read_csv_columns(qpath), x_names, qpath, "x_columns")
    return x, y, xq
