"""``pfn list-runs`` on a store of fake runs: filters, sorting, fallbacks and speed."""

from __future__ import annotations

import importlib.util
import json
import os
import socket

import pytest

from pfn_cli.errors import CliError
from pfn_cli.list_runs import list_runs
from pfn_cli.runs import resolve_run, update_status
from tests.cli_helpers import REPO, run_pfn


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cli", REPO / "benchmarks" / "bench_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "outputs"
    _bench().make_fake_runs(root, 50)
    return root


def test_lists_every_run_and_sweep_job(store):
    runs = list_runs(store)
    assert len(runs) == 50
    assert sum(r.sweep is not None for r in runs) == 12
    assert all(r.model and r.prior for r in runs)  # incl. runs without status.json
    no_status = [r for r in runs if r.status == "unknown"]
    assert len(no_status) == 5 and all(r.num_steps is None for r in no_status)
    assert all(r.last_loss == pytest.approx(0.01) for r in runs)
    finished = [r for r in runs if r.status == "finished"]
    assert finished and all(r.excess_nll == pytest.approx(0.05) for r in finished)


def test_filters_and_sorting(store):
    gp = list_runs(store, prior="gp")
    assert gp and all(r.prior == "gp" for r in gp)
    two = list_runs(store, prior="gp,coin", model="regression")
    assert all(r.prior in ("gp", "coin") and r.model == "regression" for r in two)
    by_loss = list_runs(store, sort="excess_nll")
    values = [r.excess_nll for r in by_loss]
    present = [v for v in values if v is not None]
    assert values[: len(present)] == sorted(present)  # missing values last
    assert [r.name for r in list_runs(store, sort="name")] == sorted(
        r.name for r in list_runs(store, sort="name")
    )
    rev = list_runs(store, sort="step", reverse=True)
    steps = [r.step for r in rev if r.step is not None]
    assert steps == sorted(steps, reverse=True)
    assert len(list_runs(store, limit=3)) == 3
    with pytest.raises(CliError, match="--sort"):
        list_runs(store, sort="bogus")


def test_dead_running_process_shows_as_killed(tmp_path):
    run = tmp_path / "outputs" / "r1"
    update_status(run, status="running", pid=2**22 + 12345, host=socket.gethostname(), step=3)
    (run_info,) = list_runs(tmp_path / "outputs")
    assert run_info.status == "killed"
    update_status(run, pid=os.getpid())
    assert list_runs(tmp_path / "outputs")[0].status == "running"


def test_latest_is_the_newest_run(tmp_path):
    root = tmp_path / "outputs"
    for name, ts in (("b_old", 100.0), ("a_new", 300.0), ("sweep/0_job", 200.0)):
        update_status(root / name, status="finished", started_ts=ts)
    assert resolve_run("latest", root) == root / "a_new"
    assert resolve_run("sweep/0_job", root) == root / "sweep" / "0_job"  # relative to root
    with pytest.raises(CliError, match="not a pfn run directory"):
        resolve_run(str(root / "sweep"), root)


def test_cli_json_table_and_errors(store, tmp_path):
    rows = json.loads(run_pfn(["list-runs", "--json", "--status", "finished"], tmp_path).stdout)
    assert rows and all(r["status"] == "finished" for r in rows)
    table = run_pfn(["list-runs", "--dir", str(store), "--limit", "5"], tmp_path).stdout
    assert "pfn runs in" in table and "excess NLL" in table
    empty = run_pfn(["list-runs", "--dir", str(tmp_path / "empty_ok")], tmp_path, check=False)
    assert empty.returncode == 2 and "no such folder" in empty.stderr
    (tmp_path / "none").mkdir()
    assert "No runs under" in run_pfn(["list-runs", "--dir", "none"], tmp_path).stdout


def test_wandb_listing_without_project_flags_is_refused(tmp_path):
    proc = run_pfn(["list-runs", "--tags", "a"], tmp_path, check=False)
    assert proc.returncode == 2 and "--project" in proc.stderr


def test_wandb_listing_uses_library_function(monkeypatch, capsys):
    import pfn_transformers.wandb as pw
    from pfn_cli import list_runs as lr

    calls = {}

    def fake(project=None, entity=None, tags=None, api=None):
        calls.update(project=project, entity=entity, tags=tags)
        return [{"run_name": "a", "run_id": "x1", "checkpoint_step": 5, "run_url": "u"}]

    monkeypatch.setattr(pw, "list_available_models", fake, raising=False)
    assert lr.main(["--project", "p", "--entity", "e", "--tags", "t1", "--json"]) == 0
    assert calls == {"project": "p", "entity": "e", "tags": ["t1"]}
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == "x1"


def test_benchmark_script_runs_and_lists_its_fake_runs(tmp_path):
    """The list-runs benchmark runs and lists its 50 fake runs. Its time limit is not checked
    here (tests assert no timings): `make bench` runs it with the real limit."""
    proc = run_pfn([], tmp_path, check=False)  # warm the file cache of the interpreter
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_cli.py"),
            *("--repeat", "3", "--json", "--max-seconds", "1000"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout)  # the time limit is the benchmark's, not this test's
    assert figures["listed"] == 50 and figures["list_runs_median_s"] > 0
    assert proc.returncode == 2


def test_garbled_files_never_crash_list_runs_and_show_as_damaged(tmp_path):
    root = tmp_path / "outputs"
    update_status(root / "torn_status", status="finished", step=5)
    (root / "torn_status" / "status.json").write_text('{"status": "fini')
    update_status(root / "torn_metrics", status="finished", step=20)
    (root / "torn_metrics" / "metrics.jsonl").write_bytes(
        b'{"step": 10, "loss": 0.5}\n{"step": 20, "loss": 0.25}\n{"step": 3\xff\x00garbage\n'
    )
    update_status(root / "fine", status="finished", step=1)
    rows = {r.name: r for r in list_runs(root)}
    assert rows["torn_status"].status == "damaged" and rows["torn_status"].damaged == [
        "status.json"
    ]
    assert rows["torn_metrics"].status == "finished"
    assert rows["torn_metrics"].damaged == ["metrics.jsonl"]
    assert rows["torn_metrics"].last_loss == 0.25  # the readable lines still count
    assert rows["fine"].damaged == []
    out = run_pfn(["list-runs", "--dir", str(root)], tmp_path).stdout
    assert "damaged" in out


def test_list_runs_while_runs_are_writing(tmp_path):
    """A writer rewrites status.json and appends metrics as fast as it can; every listing
    in the meantime succeeds."""
    import threading

    root = tmp_path / "outputs"
    runs = [root / f"r{i}" for i in range(3)]
    for run in runs:
        update_status(run, status="running", pid=os.getpid(), host=socket.gethostname())
    stop = threading.Event()

    def writer():
        step = 0
        while not stop.is_set():
            step += 1
            for run in runs:
                update_status(run, step=step)
                with open(run / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            rows = list_runs(root)
            assert len(rows) == 3 and all(r.status == "running" for r in rows)
    finally:
        stop.set()
        thread.join()
