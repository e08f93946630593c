"""The README's Python quickstart runs as written (with fewer training steps)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OWN_PRIOR = ROOT / "docs" / "guides" / "your-own-prior.md"  # moved from the README


def test_readme_python_quickstart_runs():
    text = README.read_text()
    block = re.search(r"## Python quickstart\s+```python\n(.*?)```", text, re.S)
    assert block, "README lost its Python quickstart"
    code = block.group(1).replace("num_steps=1500", "num_steps=5")
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)  # noqa: S102
    assert tuple(namespace["logits"].shape) == (1, 50, 100)
    assert namespace["mean"].shape == namespace["p90"].shape == (1, 50)
    assert bool((namespace["p90"] >= namespace["mean"] - 1e-4).all())


def test_readme_plain_generator_example_runs():
    text = OWN_PRIOR.read_text()
    section = text[text.index("## Data generators: one protocol") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "docs/guides/your-own-prior.md lost its plain-class generator example"
    code = block.group(1).replace("num_steps=200", "num_steps=3")
    code = code.replace("TrainingConfig(", "TrainingConfig(progress_bar=False, ")
    namespace: dict = {}
    exec(compile(code, "README generator example", "exec"), namespace)  # noqa: S102
    assert tuple(namespace["x"].shape) == (32, 64, 1)
    assert tuple(namespace["y"].shape) == (32, 64)
    assert namespace["model"].task.supervised
