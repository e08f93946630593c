"""Sweeps that optimise: the objective each job returns, Optuna, and the launchers."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pfn_cli.closing import objective
from pfn_cli.list_runs import sweep_jobs
from tests.cli_helpers import TINY, read_status, run_dirs, run_pfn

FAST = [*TINY, "training.num_steps=10", "eval.num_datasets=8", "eval.batch_size=8"]


def test_objective_prefers_the_excess_nll_and_falls_back(tmp_path):
    results = {"excess_nll": {"mean": 0.25}, "nll": {"mean": 1.5}}
    assert objective("excess_nll", results, tmp_path) == ("excess_nll", 0.25)
    no_exact = {"excess_nll": None, "nll": {"mean": 1.5}}
    assert objective("excess_nll", no_exact, tmp_path) == ("nll", 1.5)
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 2.0, "loss_avg": 2.5}\n')
    assert objective("nll", None, tmp_path) == ("loss", 2.5)  # no evaluation ran
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": null, "loss_avg": null}\n')
    assert objective("excess_nll", None, tmp_path) == ("excess_nll", None)


def test_a_run_records_its_objective_and_a_bad_objective_is_refused(tmp_path):
    run_pfn(["train", *FAST], tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    st = read_status(run)
    ev = json.loads((run / "eval.json").read_text())
    assert st["objective_name"] == "excess_nll"
    assert st["objective"] == pytest.approx(ev["excess_nll"]["mean"])
    bad = run_pfn(["train", *FAST, "objective=accuracy"], tmp_path, check=False)
    assert bad.returncode == 2 and "objective='accuracy' is not valid" in bad.stderr
    assert len(run_dirs(tmp_path / "outputs")) == 1  # refused before a run folder was kept


def test_optuna_sweep_ranks_trials_and_records_a_failing_one_as_failed(tmp_path):
    # n_heads=3 does not divide d_model=32, so those trials fail to build; the seeded
    # sampler's four random start-up trials draw both values
    proc = run_pfn(
        [
            "train",
            "-m",
            "experiment=tune_gp",
            *(a for a in FAST if not a.startswith("model.n_heads")),
            "hydra.sweeper.n_trials=4",
            "model.n_heads=choice(2,3)",  # swept by Optuna beside the experiment's params
        ],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 1 and "sweep job(s) failed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    jobs = run_dirs(tmp_path / "outputs")
    statuses = {read_status(j)["status"] for j in jobs}
    assert len(jobs) == 4 and statuses == {"failed", "finished"}
    ranked, varied = sweep_jobs(jobs[0].parent)
    assert "model.n_heads" in varied and "training.learning_rate" in varied
    for job in ranked:  # finished trials first, by objective; failed ones last, no objective
        failed = job.extra["params"]["model.n_heads"] == "3"
        assert (job.status, job.objective is None) == (
            ("failed", True) if failed else ("finished", False)
        )
    assert ranked[0].status == "finished" and ranked[-1].status == "failed"
    assert re.search(rf"Best job: \S*{ranked[0].name} \(objective", proc.stdout)
    # each finished trial's objective is its final evaluation's excess NLL ...
    finished = [j for j in ranked if j.status == "finished"]
    for job in finished:
        ev = json.loads((Path(job.path) / "eval.json").read_text())
        assert job.objective == ev["excess_nll"]["mean"], job.name
    assert len({j.objective for j in finished}) == len(finished)  # distinct: a ranking to get
    # ... and what Optuna minimised: its best value is the lowest objective, its best
    # parameters those of that trial
    results = OmegaConf.load(jobs[0].parent / "optimization_results.yaml")
    best = finished[0]
    assert results.best_value == best.objective == min(j.objective for j in finished)
    assert results.best_params["model.n_heads"] == 2
    params = OmegaConf.load(Path(best.path) / ".hydra" / "overrides.yaml")
    lr = next(float(o.split("=", 1)[1]) for o in params if o.startswith("training.learning_rate="))
    assert results.best_params["training.learning_rate"] == lr


def test_list_runs_shows_one_sweep_ranked(tmp_path):
    run_pfn(["train", "-m", *FAST, "training.learning_rate=1e-3,3e-3"], tmp_path)
    table = run_pfn(["list-runs", "--sweep", "latest"], tmp_path).stdout
    assert "training.learning_rate" in table and "Best job:" in table
    rows = json.loads(run_pfn(["list-runs", "--sweep", "latest", "--json"], tmp_path).stdout)
    objectives = [r["objective"] for r in rows]
    assert len(rows) == 2 and objectives == sorted(objectives)
    assert {r["extra"]["params"]["training.learning_rate"] for r in rows} == {"0.001", "0.003"}


@pytest.mark.parametrize(
    ("launcher", "plugin"),
    [
        ("parallel", "hydra_plugins.hydra_joblib_launcher"),
        pytest.param(
            "slurm_local", "hydra_plugins.hydra_submitit_launcher", marks=pytest.mark.slow
        ),
    ],
)
def test_launchers_run_sweep_jobs(launcher, plugin, tmp_path):
    importlib.import_module(plugin)  # `make install` installs it: missing fails, never skips
    run_pfn(["train", "-m", f"hydra/launcher={launcher}", *FAST, "prior=linear,gp"], tmp_path)
    jobs = run_dirs(tmp_path / "outputs")
    assert {read_status(j)["prior"] for j in jobs} == {"linear", "gp"}
    for job in jobs:
        st = read_status(job)
        assert st["status"] == "finished" and isinstance(st["objective"], float)
        assert (job / "checkpoints" / "step-10.pt").is_file()


@pytest.mark.slow
def test_optuna_sweep_of_eight_trials_prints_the_best(tmp_path):
    proc = run_pfn(["train", "-m", "experiment=tune_gp", *FAST, "model.n_heads=2"], tmp_path)
    jobs = run_dirs(tmp_path / "outputs")
    assert len(jobs) == 8 and all(read_status(j)["status"] == "finished" for j in jobs)
    ranked, _ = sweep_jobs(jobs[0].parent)
    assert re.search(rf"Best job: \S*{ranked[0].name} \(objective", proc.stdout)
    assert ranked[0].objective == min(r.objective for r in ranked)
