"""The built wheel carries conf/ and its `pfn` works outside the checkout (slow).

The source tree is copied to a temporary folder and built there (nothing is written into the
checkout). The wheel is installed with --no-deps into a fresh virtual environment; the
dependencies (hydra, torch, ...) come from the test interpreter's site-packages through a
plain path entry, which does not activate the checkout's editable install.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.cli_helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(cmd, cwd, env=None, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "conf", "pfn_cli", "pfn_transformers"):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif path.exists():
            shutil.copy2(path, src / name)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("pfn-transformers\n")
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
            str(src),
        ],
        cwd=src,
    )
    (whl,) = dist.glob("pfn_transformers-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=env_dir)
    py = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=env_dir,
        ).stdout.strip()
    )
    # dependencies from this interpreter (a plain path: .pth files there are not processed)
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if p]
    (purelib / "_pfn_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=env_dir,
    )
    return env_dir


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PFN_OUTPUTS")}
    env.update(WANDB_MODE="disabled", MPLBACKEND="Agg")
    return env


def test_wheel_contains_the_config_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (
        "train.yaml",
        "eval.yaml",
        "sample.yaml",
        "inspect.yaml",
        "prior_check.yaml",
        "model/regression.yaml",
        "prior/gp.yaml",
        "training/quick.yaml",
        "training/gpu.yaml",
        "wandb/offline.yaml",
        "experiment/markov.yaml",
        "experiment/tune_gp.yaml",
        "hydra/launcher/slurm.yaml",
        "hydra/output/pfn_run.yaml",
    ):
        assert f"pfn_cli/conf/{rel}" in names, rel
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "pfn = pfn_cli.main:main" in text


def test_installed_pfn_works_outside_the_checkout(venv, tmp_path):
    pfn = str(venv / "bin" / "pfn")
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import pfn_cli, pfn_cli.paths as p; print(pfn_cli.__file__); print(p.conf_dir())",
        ],
        cwd=tmp_path,
        env=_env(),
    ).stdout.split()
    assert all(str(venv) in w for w in where), where  # the wheel's copy, not the checkout's

    cfg = _run([pfn, "train", "--cfg", "job"], cwd=tmp_path, env=_env()).stdout
    assert "pfn_transformers.RegressionConfig" in cfg and "LinearRegressionPrior" in cfg
    help_text = _run([pfn, "train", "--help"], cwd=tmp_path, env=_env()).stdout
    assert "prior: categorical, coin" in help_text
    assert "No runs under" in _run([pfn, "list-runs"], cwd=tmp_path, env=_env()).stdout

    tiny = ["training=tiny", "model.d_model=32", "model.n_layers=2", "eval.num_datasets=16"]
    _run([pfn, "train", *tiny], cwd=tmp_path, env=_env())
    rows = json.loads(_run([pfn, "list-runs", "--json"], cwd=tmp_path, env=_env()).stdout)
    assert len(rows) == 1 and rows[0]["status"] == "finished"
