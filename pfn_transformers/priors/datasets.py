"""Real datasets as generators: read a .csv or .npz file into the core ``DatasetGenerator``.

``load_dataset_generator(path, target_column=...)`` returns a
``pfn_transformers.data.generators.DatasetGenerator``; ``CSVDatasetPrior`` is the same as a
class a Hydra YAML can name with ``_target_``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator

TARGET_TYPES = ("continuous", "discrete")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"dataset file {str(path)!r} is empty; expected a header and rows.")
    first = [c.strip() for c in rows[0]]
    if all(_is_number(c) for c in first):
        names, body = [str(i) for i in range(len(first))], rows
    else:
        names, body = first, rows[1:]
    if not body:
        raise ValueError(f"dataset file {str(path)!r} has a header but no data rows.")
    columns: dict[str, list[float]] = {n: [] for n in names}
    for line_no, row in enumerate(body, start=2 if body is not rows else 1):
        if len(row) != len(names):
            raise ValueError(
                f"dataset file {str(path)!r}, line {line_no}: {len(row)} fields, but the file "
                f"has {len(names)} columns {names}."
            )
        for name, cell in zip(names, row):
            cell = cell.strip()
            try:
                columns[name].append(float(cell) if cell else float("nan"))
            except ValueError:
                raise ValueError(
                    f"dataset file {str(path)!r}, line {line_no}, column {name!r}: value "
                    f"{cell!r} is not a number (only numeric columns are supported)."
                ) from None
    return {n: np.asarray(v, dtype=np.float64) for n, v in columns.items()}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        out = {}
        for key in data.files:
            arr = np.asarray(data[key])
            if arr.ndim in (1, 2):  # 1-D: one column; 2-D [N, D]: a block of D columns
                out[key] = arr
    return out


def read_table(
    path: str | Path,
    target_column: str | int | None = None,
    feature_columns: list[str | int] | None = None,
    target_type: str | None = None,
) -> tuple[Tensor, Tensor, list[str]]:
    """Read ``(x [N, D] float32, y [N], feature names)`` from a .csv or .npz file.

    CSV: a header row names the columns (without one they are named "0", "1", ...); every
    value must be numeric. NPZ: every 1-D array is a column named by its key; a 2-D array
    ``[N, D]`` (e.g. ``x``) is a block of D feature columns. ``target_column`` is a column
    name or index (default: "y" when present, else the last column); ``feature_columns``
    defaults to every other column. ``target_type`` is "continuous" (float32 y),
    "discrete" (int64 y) or None: discrete when the stored target has an integer dtype
    (npz), else continuous.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset file {str(path)!r} does not exist (resolved to {str(path.resolve())!r})."
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns = _read_csv(path)
    elif suffix == ".npz":
        columns = _read_npz(path)
    else:
        raise ValueError(
            f"dataset file {str(path)!r} has suffix {suffix!r}; supported are '.csv' and '.npz'."
        )
    names = list(columns)
    if not names:
        raise ValueError(f"dataset file {str(path)!r} holds no 1-D or 2-D arrays.")

    def resolve(col: str | int, role: str) -> str:
        if isinstance(col, int) and not isinstance(col, bool):
            if -len(names) <= col < len(names):
                return names[col]
        elif str(col) in columns:
            return str(col)
        raise ValueError(
            f"{role}={col!r} is not a column of {str(path)!r}; available columns: {names}."
        )

    if target_column is None:
        target_column = "y" if "y" in columns else names[-1]
    target = resolve(target_column, "target_column")
    y_arr = columns[target]
    if y_arr.ndim != 1:
        raise ValueError(
            f"target_column={target!r} of {str(path)!r} is a 2-D array {y_arr.shape}; the "
            "target must be one column."
        )
    if feature_columns is None:
        feats = [n for n in names if n != target]
    else:
        feats = [resolve(c, "feature_columns entry") for c in feature_columns]
        if target in feats:
            raise ValueError(
                f"feature_columns={list(feature_columns)!r} contains the target column "
                f"{target!r} of {str(path)!r}."
            )
    if not feats:
        raise ValueError(
            f"{str(path)!r} has no feature columns besides the target {target!r}; available "
            f"columns: {names}."
        )
    n = y_arr.shape[0]
    blocks = []
    for f in feats:
        arr = columns[f]
        if arr.shape[0] != n:
            raise ValueError(
                f"column {f!r} of {str(path)!r} has {arr.shape[0]} rows but the target "
                f"{target!r} has {n}."
            )
        blocks.append(arr.reshape(n, -1).astype(np.float64))
    x = torch.from_numpy(np.concatenate(blocks, axis=1)).float()
    if target_type is None:
        target_type = "discrete" if np.issubdtype(y_arr.dtype, np.integer) else "continuous"
    if target_type not in TARGET_TYPES:
        raise ValueError(
            f"target_type={target_type!r} is not valid; choose one of {list(TARGET_TYPES)}."
        )
    if target_type == "discrete":
        if not np.all(np.isfinite(y_arr)) or np.any(y_arr != np.round(y_arr)) or y_arr.min() < 0:
            raise ValueError(
                f"target_column={target!r} of {str(path)!r} is not valid as discrete labels; "
                "they must be non-negative integers."
            )
        y = torch.from_numpy(y_arr.astype(np.int64))
    else:
        y = torch.from_numpy(y_arr.astype(np.float64)).float()
    if not torch.isfinite(x).all() or (y.is_floating_point() and not torch.isfinite(y).all()):
        raise ValueError(
            f"dataset file {str(path)!r} contains missing or non-finite values in the selected "
            f"columns {feats + [target]}."
        )
    return x, y, feats


def load_dataset_generator(
    path: str | Path,
    target_column: str | int | None = None,
    feature_columns: list[str | int] | None = None,
    sequential: bool = False,
    target_type: str | None = None,
):
    """A ``DatasetGenerator`` over the rows of a .csv or .npz file (see ``read_table``).

    ``sequential=False`` draws random rows for each dataset; ``True`` takes contiguous windows.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the column and
    the available ones for a wrong column.
    """
    x, y, _ = read_table(path, target_column, feature_columns, target_type)
    from pfn_transformers.data.generators import DatasetGenerator  # lazy: core module

    return DatasetGenerator(x, y, sequential=bool(sequential))


class CSVDatasetPrior(DataGenerator):
    """A file-backed dataset as a class (``_target_: pfn_transformers.priors.CSVDatasetPrior``).

    Wraps ``load_dataset_generator``'s ``DatasetGenerator`` and forwards to it.
    """

    def __init__(
        self,
        path: str,
        target_column: str | int | None = None,
        feature_columns: list[str | int] | None = None,
        sequential: bool = False,
        target_type: str | None = None,
    ) -> None:
        self.path = str(path)
        self.target_column = target_column
        self.feature_columns = None if feature_columns is None else list(feature_columns)
        self.sequential = bool(sequential)
        self.generator = load_dataset_generator(
            path, target_column, self.feature_columns, sequential, target_type
        )
        self.input_dim = self.generator.input_dim
        self.target_type = self.generator.target_type
        self.num_classes = self.generator.num_classes

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """Rows gathered on ``device`` (None: CPU) from a copy of the file cached there."""
        return self.generator.generate_batch(batch_size, seq_len, device=device)

    def sample_targets(self, n: int) -> Tensor:
        """``n`` targets drawn (with replacement) from the file's rows."""
        y = self.generator.y_data if hasattr(self.generator, "y_data") else None
        if y is None:
            return self.generate_batch(n, 1)[1].reshape(-1)
        return y[torch.randint(0, y.shape[0], (n,))]

    def __repr__(self) -> str:
        return (
            f"CSVDatasetPrior(path={self.path!r}, target_column={self.target_column!r}, "
            f"feature_columns={self.feature_columns!r}, sequential={self.sequential!r})"
        )
