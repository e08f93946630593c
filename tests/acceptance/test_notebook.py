"""The tutorial notebook runs from top to bottom (CI executes it, so it cannot rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "tutorial.ipynb"


@pytest.mark.slow  # trains a PFN: about two minutes on two CPU cores
def test_tutorial_notebook_executes(tmp_path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    outputs = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "exact formula passes its PIT check: True" in outputs
    assert "excess NLL vs exact posterior" in outputs and "calibrated:" in outputs
    assert (tmp_path / "calibration" / "pit_calibration.png").is_file()
    assert (tmp_path / "prior_check" / "prior_targets.png").is_file()
