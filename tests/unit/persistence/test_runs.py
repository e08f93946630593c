"""Run folders as a library concept (``pfn_transformers.runs``), and the small fixes that
came with it: a reused process id, unknown devices, NaN batches, the import circles."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pfn_transformers import DeterministicGenerator, RegressionConfig, TrainingConfig, train
from pfn_transformers.runs import (
    RunNotFoundError,
    load_run_info,
    open_run,
    process_marker,
    update_status,
)
from pfn_transformers.training import NonFiniteLossError
from tests.cli_helpers import REPO, cli_env


def test_a_run_whose_process_id_was_reused_is_not_running(tmp_path):
    run = tmp_path / "r"
    update_status(run, status="running", **process_marker())
    assert load_run_info(run).status == "running"  # this very process
    marker = process_marker()
    # the same pid, but a process that started an hour earlier: another process had it
    update_status(run, pid=marker["pid"], pid_started=marker["pid_started"] - 3600)
    assert load_run_info(run).status == "killed"
    update_status(run, pid_started=None, host=socket.gethostname())  # old runs: pid only
    assert load_run_info(run).status == "running"


def test_open_run_reads_a_run_without_the_cli(tmp_path):
    root = tmp_path / "outputs"
    update_status(root / "a", status="finished", started_ts=1.0, prior="linear")
    (root / "a" / ".hydra").mkdir()
    (root / "a" / ".hydra" / "config.yaml").write_text(
        "prior:\n  _target_: pfn_transformers.priors.LinearRegressionPrior\n  noise_std: 0.2\n"
        "training:\n  seq_len: 12\n"
    )
    run = open_run("latest", root)
    assert run.path == root / "a" and run.status["prior"] == "linear"
    assert run.prior_config["noise_std"] == 0.2 and run.training_config == {"seq_len": 12}
    assert run.prior().noise_std == 0.2 and run.checkpoint_steps == []
    with pytest.raises(RunNotFoundError, match="run=nope: the run directory does not exist"):
        open_run("nope", root)


_LIGHT = """
import sys
import pfn_transformers.runs
from pfn_transformers.runs import open_run, load_run_info
heavy = sorted(m for m in ("torch", "transformer_lens", "wandb", "omegaconf") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def test_the_runs_module_and_the_package_import_without_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _LIGHT], cwd=tmp_path, env=cli_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout


def test_unknown_devices_are_refused_where_the_config_is_built():
    with pytest.raises(
        ValueError, match=r"TrainingConfig.device='tpu' is not valid; use 'auto', 'cpu', 'cuda'"
    ):
        TrainingConfig(device="tpu")
    assert TrainingConfig(device="cuda:1").device == "cuda:1"  # availability: checked by train()
    assert TrainingConfig(device=torch.device("cpu")).device == "cpu"


def test_a_prior_drawing_nan_targets_is_named_as_the_cause(tmp_path):
    gen = DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=lambda x, w: (w * x).sum(-1) * float("nan"),
        input_dim=1,
        noise_std=0.1,
    )
    config = RegressionConfig(d_model=16, n_layers=1, n_heads=2)
    tc = TrainingConfig(batch_size=4, seq_len=8, num_steps=30, progress_bar=False, save_every=50)
    with pytest.raises(NonFiniteLossError) as info:
        train(gen, config, tc)
    msg = str(info.value)
    assert "the batch itself was not finite" in msg and "not the learning rate" in msg
    assert "Lower the learning rate" not in msg


def test_finite_batches_with_non_finite_losses_still_point_at_the_learning_rate(tmp_path):
    class HugeTargets:  # finite, but far beyond float32 once squared: the loss overflows
        input_dim = 1

        def generate_batch(self, batch_size, seq_len):
            x = torch.randn(batch_size, seq_len, 1)
            return x, torch.full((batch_size, seq_len), 3e38)

    config = RegressionConfig(d_model=16, n_layers=1, n_heads=2, prediction_type="point")
    tc = TrainingConfig(batch_size=4, seq_len=8, num_steps=30, progress_bar=False, save_every=50)
    with pytest.raises(
        NonFiniteLossError, match="The batches were finite: lower the learning rate"
    ):
        train(HugeTargets(), config, tc)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            found.update(f"{base}.{a.name}" if node.module is None else base for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize(
    ("module", "imports", "must_not_import"),
    [
        ("pfn_cli/resolvers.py", "pfn_cli/compat.py", ("pfn_cli.compat",)),
        ("pfn_transformers/data/protocol.py", "pfn_transformers/data/base.py", (".base",)),
    ],
)
def test_the_import_circles_are_gone(module, imports, must_not_import):
    """``imports`` builds on ``module``; ``module`` no longer imports it back (not even
    inside a function)."""
    stem = Path(module).stem
    assert any(m.endswith(stem) for m in _imports(REPO / imports))
    back = _imports(REPO / module)
    assert not [m for m in must_not_import if m in back], sorted(back)
