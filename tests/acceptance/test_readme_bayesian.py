"""The "A trained PFN as a Bayesian model" guide's examples run as written (tiny model)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from pfn_transformers import PFN, RegressionConfig
from pfn_transformers.priors import LinearRegressionPrior

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "bayesian-model.md"


def _blocks() -> list[str]:
    section = GUIDE.read_text()  # the whole page (was a README section)
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_bayesian_model_examples_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert len(blocks) == 3, "the guide lost a predictive / estimator / calibration example"
    model = PFN(RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1, y_min=-4,
                                 y_max=4, d_vocab=32))  # fmt: skip
    ns: dict = {"model": model.eval(), "prior": LinearRegressionPrior()}
    exec(compile(blocks[0], "README predictive", "exec"), ns)  # noqa: S102
    assert tuple(ns["lo"].shape) == (1, 500) and tuple(ns["q"].shape) == (3, 1, 500)
    assert tuple(ns["draws"].shape) == (100, 1, 500)
    assert ns["more"].batch_shape == (1, 10_000)
    assert ns["per_position"].batch_shape == (1, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the example's data raise no range warnings
        exec(compile(blocks[1], "README estimators", "exec"), ns)  # noqa: S102
    assert ns["mean"].shape == (20,) and ns["interval"].shape == (20, 2)
    assert ns["draws"].shape == (20, 5) and ns["scores"].shape == (3,)
    code = blocks[2].replace("num_datasets=512, seq_len=32", "num_datasets=32, seq_len=6")
    exec(compile(code, "README calibration", "exec"), ns)  # noqa: S102
    assert isinstance(ns["cal"]["calibrated"], bool)
    assert (tmp_path / "figures" / "pit_calibration.png").is_file()
