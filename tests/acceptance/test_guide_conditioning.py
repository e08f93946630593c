"""The "Conditioning on known hyperparameters" guide's example runs as written (shorter)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "conditioning.md"


def test_the_guides_conditioning_example_runs_and_knowing_mu_sharpens_the_predictive():
    (block,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(block, "conditioning guide", "exec"), ns)  # noqa: S102  (about 15 s)
    known, unknown = ns["known"], ns["unknown"]
    assert known.batch_shape == unknown.batch_shape == (1, 3)
    # mu = 1.5 given: the predictive is near N(1.5, 0.3^2), narrower than the marginal
    # given one point (exact: 0.3 against 0.42)
    assert abs(known.mean.mean().item() - 1.5) < 0.3
    assert (known.stddev < unknown.stddev - 0.03).all(), (known.stddev, unknown.stddev)
