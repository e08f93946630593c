"""Runs that survive kill -9, full disks and damaged files.

Faults are injected without any hook in the product: a ``sitecustomize`` module on the
subprocess's PYTHONPATH wraps ``os.fsync``/``os.replace``/``os.write`` and SIGKILLs the
process at the N-th checkpoint write, status update or metrics append.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from pfn_transformers import (
    DeterministicGenerator,
    RegressionConfig,
    TrainingConfig,
    checkpointing,
    train,
)
from tests.cli_helpers import TINY, cli_env, pfn_command, read_status, run_dirs, run_pfn

KILLER = textwrap.dedent(
    '''
    """Test-only fault injection: SIGKILL this process at the N-th matching call."""
    import os
    import signal

    _SPEC = os.environ.get("PFN_TEST_KILL_AT", "")
    if _SPEC:
        _KIND, _N = _SPEC.rsplit(":", 1)
        _N, _SEEN = int(_N), [0]

        def _hit():
            _SEEN[0] += 1
            return _SEEN[0] == _N

        def _die():
            os.kill(os.getpid(), signal.SIGKILL)

        if _KIND == "checkpoint":  # the temp file is written, not yet renamed into place
            _fsync = os.fsync

            def fsync(fd):
                if _hit():
                    _die()
                return _fsync(fd)

            os.fsync = fsync
        elif _KIND == "status":  # the new status.json is written, not yet renamed
            _replace = os.replace

            def replace(src, dst, *a, **k):
                if str(dst).endswith("status.json") and _hit():
                    _die()
                return _replace(src, dst, *a, **k)

            os.replace = replace
        elif _KIND == "metrics":  # half a line reaches the file (as on a disk that filled up)
            _write = os.write

            def write(fd, data):
                try:
                    name = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    name = ""
                if name.endswith("metrics.jsonl") and _hit():
                    _write(fd, data[: len(data) // 2])
                    _die()
                return _write(fd, data)

            os.write = write
    '''
)

RUN_ARGS = [*TINY, "eval.enabled=false", "training.log_every=5"]


def pfn_killed_at(spec: str, cwd: Path, inject: Path) -> subprocess.CompletedProcess:
    env = cli_env(PFN_TEST_KILL_AT=spec)
    env["PYTHONPATH"] = os.pathsep.join([str(inject), env["PYTHONPATH"]])
    return subprocess.run(
        [*pfn_command(), "train", *RUN_ARGS],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def metrics_by_step(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"steps repeated or out of order: {steps}"
    return {r["step"]: r["loss"] for r in rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every killed-and-resumed run must reproduce."""
    cwd = tmp_path_factory.mktemp("reference")
    run_pfn(["train", *RUN_ARGS], cwd)
    (run,) = run_dirs(cwd / "outputs")
    return run


@pytest.mark.parametrize(
    "spec",
    ["checkpoint:2", "status:3", "metrics:3"],
    ids=["mid-checkpoint", "mid-status-update", "mid-metrics-append"],
)
def test_kill_9_then_resume_follows_the_uninterrupted_run(spec, reference, tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(KILLER)
    proc = pfn_killed_at(spec, tmp_path, inject)
    assert proc.returncode == -9, proc.stderr  # SIGKILL: no clean-up ran
    (run,) = run_dirs(tmp_path / "outputs")

    # what survived: complete checkpoints under their final names, a parseable status
    steps = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))
    for step in steps:
        _, _, meta = checkpointing.load_checkpoint(run / "checkpoints" / f"step-{step}.pt")
        assert meta.step == step
    if spec.startswith("checkpoint"):
        assert steps == [10] and list((run / "checkpoints").glob(".step-20.pt.*.tmp"))
    assert read_status(run)["status"] == "running"  # it never got to say otherwise
    rows = json.loads(run_pfn(["list-runs", "--json"], tmp_path).stdout)
    assert [r["status"] for r in rows] == ["killed"]

    run_pfn(["train", "resume=latest"], tmp_path)
    st = read_status(run)
    assert st["status"] == "finished" and st["step"] == 30
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the killed write's leftovers
    resumed = metrics_by_step(run)
    expected = metrics_by_step(reference)
    assert resumed.keys() == expected.keys()
    # the tiny profile (lr 1e-3, 5 warmup steps) resumes at step 10 or 20, in the cosine
    # decay; same machine and thread count, CPU: the resumed run must match bit for bit
    assert resumed == expected
    mine = torch.load(run / "checkpoints" / "step-30.pt", weights_only=True)["model_state"]
    theirs = torch.load(reference / "checkpoints" / "step-30.pt", weights_only=True)
    for key, value in theirs["model_state"].items():
        assert torch.equal(mine[key], value), key


# ----------------------------------------------------------------------------- library level
def linear_gen():
    return DeterministicGenerator(
        prior=torch.distributions.Normal(0.0, 1.0),
        function=lambda x, w: (w * x).sum(-1),
        input_dim=1,
        noise_std=0.1,
    )


TINY_MODEL = RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1, d_vocab=10)


def tc(tmp_path, **kw):
    base = {
        "batch_size": 4,
        "seq_len": 6,
        "num_steps": 15,
        "save_every": 5,
        "log_every": 5,
        "progress_bar": False,
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "metrics_path": str(tmp_path / "metrics.jsonl"),
    }
    return TrainingConfig(**{**base, **kw})


def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", save)
    with pytest.raises(checkpointing.CheckpointWriteError) as info:
        train(linear_gen(), TINY_MODEL, tc(tmp_path))
    msg = str(info.value)
    assert "step-10.pt at step 10" in msg and "No space left on device" in msg
    assert f"previous checkpoint {tmp_path / 'ckpt' / 'step-5.pt'} is intact" in msg
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step-5.pt"]  # nothing half-written, under any name
    _, _, meta = checkpointing.load_checkpoint(tmp_path / "ckpt" / "step-5.pt")
    assert meta.step == 5


def test_an_unwritable_checkpoint_folder_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(checkpointing.CheckpointWriteError, match="checkpoint_dir=.*a-file/ckpt"):
        train(linear_gen(), TINY_MODEL, tc(tmp_path, checkpoint_dir=str(blocker / "ckpt")))
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before the first step


def test_resume_drops_torn_and_redone_metric_lines(tmp_path):
    train(linear_gen(), TINY_MODEL, tc(tmp_path, num_steps=10))
    metrics = tmp_path / "metrics.jsonl"
    (tmp_path / "ckpt" / "step-10.pt").unlink()  # as if killed between step 5 and step 10's save
    with metrics.open("a") as fh:
        fh.write('{"step": 11, "loss": 1.0}\n{"step": 1')  # a torn line at the end
    train(linear_gen(), TINY_MODEL, tc(tmp_path, num_steps=15), resume_from=tmp_path / "ckpt")
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [5, 10, 15]
