"""DDP: per-rank draws from (seed, rank, step), exact resume, rank 0 alone writing, SLURM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pfn_cli.main import worker_overrides
from pfn_transformers.training.distributed import data_seed, export_slurm_environment, launch_rank

SCRIPT = """
import json, sys, torch
from pfn_transformers import DeterministicGenerator, RegressionConfig, TrainingConfig, train

class Recording(DeterministicGenerator):
    sums = []
    def generate_batch(self, batch_size, seq_len):
        x, y = super().generate_batch(batch_size, seq_len)
        Recording.sums.append(float(y.double().sum()))
        return x, y

out, ck, resume, batch, steps = sys.argv[1], sys.argv[2], sys.argv[3] or None, *map(int, sys.argv[4:6])
gen = Recording(torch.distributions.Normal(0.0, 1.0), lambda x, w: (w * x).sum(-1), 1, 0.1)
cfg = RegressionConfig(d_model=32, n_layers=1, n_heads=2, input_dim=1, d_vocab=20)
model = train(gen, cfg, TrainingConfig(batch_size=batch, seq_len=8, num_steps=steps, save_every=steps // 2,
    log_every=steps // 4, learning_rate=3e-3, warmup_steps=1, device="cpu", progress_bar=False,
    checkpoint_dir=ck, metrics_path=ck + "/m.jsonl"), resume_from=resume)
import torch.distributed as dist
rank = int(__import__("os").environ.get("RANK", "0"))
weights = float(sum(p.double().sum() for p in model.parameters()))
json.dump({"sums": Recording.sums, "weights": weights}, open(f"{out}-{rank}.json", "w"))
"""


def _torchrun(tmp_path: Path, args: list[str], nproc: int = 2, port: int = 29541) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={port}", str(script), *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _read(prefix: Path, rank: int) -> dict:
    return json.loads(Path(f"{prefix}-{rank}.json").read_text())


def test_data_seed_is_a_function_of_seed_rank_and_step_alone():
    assert data_seed(0, 1, 5) == data_seed(0, 1, 5)
    seeds = {data_seed(s, r, t) for s in (0, 1) for r in range(4) for t in range(50)}
    assert len(seeds) == 2 * 4 * 50  # independent streams per (seed, rank, step)
    assert all(0 <= s < 2**63 for s in seeds)


def _unset_launch_variables(monkeypatch) -> None:
    """Unset, and restored after the test (the export writes os.environ directly)."""
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT"):  # fmt: skip
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def test_a_submitit_slurm_task_exports_the_rendezvous(monkeypatch):
    _unset_launch_variables(monkeypatch)
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "123", "SLURM_NTASKS": "4",
             "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert launch_rank() == 3
    assert (os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("4", "1")
    assert os.environ["MASTER_ADDR"] == "gpu07"


def test_the_exported_rendezvous_does_not_outlive_the_test():
    assert "WORLD_SIZE" not in os.environ and "MASTER_ADDR" not in os.environ


def test_a_single_task_or_hand_written_sbatch_stays_one_process(monkeypatch):
    _unset_launch_variables(monkeypatch)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # an sbatch with --ntasks=4 running plain python
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert export_slurm_environment() is False and "WORLD_SIZE" not in os.environ
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert export_slurm_environment() is False and launch_rank() == 0


def test_ranks_above_zero_keep_hydra_out_of_the_run_folder():
    args = ["prior=gp", "hydra.run.dir=run"]
    assert worker_overrides(args, {"RANK": "0"}) == args
    moved = worker_overrides(args, {"RANK": "1"})
    assert "hydra.run.dir=run" not in moved and "prior=gp" in moved
    assert "hydra.output_subdir=null" in moved
    scratch = Path(next(a for a in moved if a.startswith("hydra.run.dir="))[14:])
    assert scratch.is_dir() and "pfn-rank1-" in scratch.name


@pytest.mark.slow
def test_ddp_ranks_draw_apart_stay_in_sync_and_resume_exactly(tmp_path):
    _torchrun(tmp_path, [str(tmp_path / "full"), str(tmp_path / "ck"), "", "8", "8"])
    full = [_read(tmp_path / "full", r) for r in (0, 1)]
    assert full[0]["sums"][-8:] != full[1]["sums"][-8:]  # each rank its own draws
    assert full[0]["weights"] == full[1]["weights"]  # gradients averaged: one model
    resumed_ck = tmp_path / "ck2"
    resumed_ck.mkdir()
    (resumed_ck / "step-4.pt").write_bytes((tmp_path / "ck" / "step-4.pt").read_bytes())
    _torchrun(tmp_path, [str(tmp_path / "res"), str(resumed_ck), str(resumed_ck), "8", "8"])
    for rank in (0, 1):
        resumed = _read(tmp_path / "res", rank)
        assert resumed["sums"][-4:] == full[rank]["sums"][-4:]  # steps 5-8 drawn again
        assert resumed["weights"] == full[rank]["weights"]  # and trained to the same model


@pytest.mark.slow
def test_torchrun_pfn_train_writes_one_run_folder_from_rank_zero(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29547", "-m", "pfn_cli", "train", "training=tiny", "training.num_steps=6",
           "training.device=cpu", "model.d_model=32", "model.n_layers=1", "eval.num_datasets=16",
           "hydra.run.dir=run"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert proc.stdout.count("Final evaluation") == 1  # rank 0 alone evaluates and reports
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 6
    assert (tmp_path / "run" / "eval.json").exists()
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == sorted(set(steps))  # one writer: no step twice
    assert torch.load(next((tmp_path / "run/checkpoints").glob("step-6*")), weights_only=False)


GLOBAL_BATCH_SCRIPT = """
import json, os, sys, torch
import torch.distributed as dist
from pfn_transformers import RegressionConfig, TrainingConfig, train

class GlobalBatchSlices:
    '''Step k's global batch of `world * batch_size` datasets comes from a generator seeded
    by k alone; each rank takes its own rows, so N ranks together see one process's batch.'''
    input_dim, target_type = 1, "continuous"
    calls = 0
    def generate_batch(self, batch_size, seq_len):
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        g = torch.Generator().manual_seed(1000 + GlobalBatchSlices.calls)
        GlobalBatchSlices.calls += 1
        n = world * batch_size
        x = torch.rand(n, seq_len, 1, generator=g) * 2 - 1
        w = torch.randn(n, 1, 1, generator=g)
        y = (x * w).squeeze(-1) + 0.1 * torch.randn(n, seq_len, generator=g)
        rows = slice(rank * batch_size, (rank + 1) * batch_size)
        return x[rows], y[rows]

out, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = RegressionConfig(d_model=32, n_layers=1, n_heads=2, input_dim=1, d_vocab=20)
model = train(GlobalBatchSlices(), cfg, TrainingConfig(batch_size=batch, seq_len=8,
    num_steps=steps, log_every=1, learning_rate=3e-3, warmup_steps=1, device="cpu", precision="fp32",
    progress_bar=False, save_checkpoint=False, metrics_path=out + ".jsonl"))
if int(os.environ.get("RANK", "0")) == 0:
    params = {k: v.double().tolist() for k, v in model.state_dict().items() if v.is_floating_point()}
    json.dump(params, open(out + ".json", "w"))
"""


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_same_global_batch(tmp_path):
    """2 ranks x batch 4 and 1 process x batch 8 on the same global batches: the same loss
    per step (ranks' losses averaged) and the same weights, to float tolerance."""
    script = tmp_path / "global.py"
    script.write_text(textwrap.dedent(GLOBAL_BATCH_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, str(script), str(tmp_path / "one"), "8", "12"]
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29547", str(script), str(tmp_path / "two"), "4", "12"]  # fmt: skip
    for cmd in (one, two):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]

    def losses(name: str) -> list[float]:
        lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        return [rec["loss"] for rec in map(json.loads, lines) if "loss" in rec]

    single, ddp = losses("one"), losses("two")
    assert len(single) == len(ddp) == 12
    assert single[0] != single[-1]  # it learns: a frozen model would match trivially
    assert ddp == pytest.approx(single, rel=1e-4, abs=1e-5)
    w1 = json.loads((tmp_path / "one.json").read_text())
    w2 = json.loads((tmp_path / "two.json").read_text())
    assert w1.keys() == w2.keys()
    # Muon orthogonalises in bf16 (its matrices then differ by ~2% between the runs) and Adam
    # normalises near-zero gradients: compare the whole parameter vector (measured 3e-3)
    flat1 = torch.cat([torch.tensor(w1[k]).flatten() for k in w1])
    flat2 = torch.cat([torch.tensor(w2[k]).flatten() for k in w1])
    assert (flat2 - flat1).norm() / flat1.norm() < 1e-2
