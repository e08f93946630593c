"""The ``pfn`` command end to end, in subprocesses inside temporary folders.

Tiny models and schedules (training=tiny, d_model 32, 2 layers, 30 steps): these tests check
the plumbing (run folders, status, resume, errors), not model quality.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import TINY, cli_env, pfn_command, read_status, run_dirs, run_pfn

pytestmark = pytest.mark.timeout(600)


# ---------------------------------------------------------------------------- dispatcher
def test_top_level_help_lists_commands(tmp_path):
    out = run_pfn(["--help"], tmp_path).stdout
    for cmd in ("train", "eval", "sample", "list-runs"):
        assert f"  {cmd}" in out
    assert "--cfg job" in out


@pytest.mark.parametrize("cmd", ["train", "eval", "sample"])
def test_subcommand_help_lists_what_it_takes(cmd, tmp_path):
    out = run_pfn([cmd, "--help"], tmp_path).stdout
    assert f"pfn {cmd}" in out
    assert "== Config groups" in out
    if cmd == "train":
        for group in ("model:", "prior:", "training:", "wandb:", "experiment:"):
            assert group in out
        assert "regression" in out and "gp" in out and "quick" in out
    else:
        assert "run:" in out and "prior:" in out


def test_list_runs_help(tmp_path):
    out = run_pfn(["list-runs", "--help"], tmp_path).stdout
    for flag in ("--dir", "--model", "--prior", "--sort", "--json", "--project"):
        assert flag in out


def test_unknown_command_is_a_clear_error(tmp_path):
    proc = run_pfn(["trian"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "unknown command 'trian'" in proc.stderr and "pfn train" in proc.stderr


def test_hydra_flags_pass_through(tmp_path):
    cfg = run_pfn(["train", "--cfg", "job", "prior=gp", "training.num_steps=7"], tmp_path).stdout
    assert "GPPrior" in cfg and "num_steps: 7" in cfg
    info = run_pfn(["train", "--info", "searchpath"], tmp_path).stdout
    assert "conf" in info
    assert not (tmp_path / "outputs").exists()  # --cfg/--info run nothing


def test_shell_completion(tmp_path):
    script = run_pfn(["-sc", "install=bash"], tmp_path).stdout
    assert "hydra_bash_completion" in script and script.rstrip().endswith("pfn")
    words = run_pfn(["-sc", "query=bash"], tmp_path, COMP_LINE="pfn tr").stdout.split()
    assert words == ["train"]
    words = run_pfn(["-sc", "query=bash"], tmp_path, COMP_LINE="pfn train pri").stdout.split()
    assert "prior=" in words
    words = run_pfn(["-sc", "query=bash"], tmp_path, COMP_LINE="pfn train prior=g").stdout
    assert "prior=gp" in words.split()


_IMPORT_PROBE = """
import contextlib, io, sys
from pfn_cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "transformer_lens", "wandb") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["list-runs"], ["list-runs", "--json"], ["train", "--cfg", "job"]],
    ids=["help", "list-runs", "list-runs-json", "train-cfg-job"],
)
def test_dispatcher_and_list_runs_stay_light(argv, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(argv=argv)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------- full runs
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def linear_run(workdir) -> Path:
    run_pfn(["train", "prior=linear", *TINY], workdir)
    runs = [d for d in run_dirs(workdir / "outputs") if d.name.endswith("regression-linear")]
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def coin_run(workdir, linear_run) -> Path:
    run_pfn(["train", "model=unsupervised_discrete", "prior=coin", *TINY], workdir)
    runs = [d for d in run_dirs(workdir / "outputs") if d.name.endswith("-coin")]
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize("which", ["linear_run", "coin_run"])
def test_train_leaves_a_complete_run_dir(which, request):
    run = request.getfixturevalue(which)
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "step-30.pt").is_file()
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 30 and "loss" in lines[-1]
    st = read_status(run)
    assert st["status"] == "finished" and st["step"] == 30 and st["num_steps"] == 30
    ev = json.loads((run / "eval.json").read_text())
    assert ev["has_exact"] is True and ev["excess_nll"]["mean"] is not None
    assert ev["step"] == 30


def test_eval_writes_json_and_figures(linear_run, workdir):
    proc = run_pfn(
        ["eval", f"run={linear_run}", "step=30", "num_datasets=32", "batch_size=32", "seq_len=8"],
        workdir,
    )
    assert "excess NLL" in proc.stdout
    ev = json.loads((linear_run / "eval.json").read_text())
    assert ev["num_datasets"] == 32 and ev["seq_len"] == 8 and ev["step"] == 30
    assert list((linear_run / "figures").glob("*.png"))
    cal = ev["calibration"]  # PIT of the predictive on data from the prior
    assert cal["source"] == "model" and cal["ks"]["samples"] == 32 * 8
    assert len(cal["ks"]["per_n"]) == 8 and isinstance(cal["calibrated"], bool)
    assert (linear_run / "figures" / "pit_calibration.png").stat().st_size > 0
    assert "PIT calibration:" in proc.stdout
    assert not (workdir / ".hydra").exists() and not list(workdir.glob("*.log"))  # no litter


def test_eval_past_the_trained_length_reports_both_parts_apart(linear_run, workdir):
    out = workdir / "eval_long.json"
    args = ["eval", f"run={linear_run}", "num_datasets=32", "batch_size=32", "seq_len=24"]
    proc = run_pfn([*args, f"out={out}", "plots=false"], workdir)
    ev = json.loads(out.read_text())
    length = ev["length"]  # tiny trains on 16 points
    assert length["trained_seq_len"] == 16
    within, beyond = length["within"]["excess_nll"], length["beyond"]["excess_nll"]
    assert len(within["per_n"]) == 16 and len(beyond["per_n"]) == 8
    assert within["per_n"] == ev["excess_nll"]["per_n"][:16]
    assert "(n < 16, trained)" in proc.stdout and "(n >= 16, beyond)" in proc.stdout


def test_eval_latest_on_a_prior_the_model_cannot_score(coin_run, workdir):
    # run=latest is the coin run (2 tokens); categorical draws 5 tokens: a clear refusal
    proc = run_pfn(["eval", "run=latest", "prior=categorical"], workdir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "prior=categorical" in proc.stderr and "d_vocab=2" in proc.stderr


def test_sample_multirun_over_both_runs(linear_run, coin_run, workdir):
    """Rollouts (coin) and posterior-predictive samples (linear) in one `pfn sample -m`."""
    import torch

    run_pfn(
        [
            "sample",
            "-m",
            f"run={linear_run},{coin_run}",
            "num_samples=3",
            "seq_len=12",
            "context.num_query=5",
        ],
        workdir,
    )
    out = next((linear_run / "samples").iterdir())
    data = torch.load(out / "samples.pt", weights_only=False)
    assert tuple(data["samples"].shape) == (3, 5)
    assert (out / "samples.csv").read_text().startswith("sample,query,x0,y")
    assert (out / "samples.png").is_file()

    out = next((coin_run / "samples").iterdir())
    data = torch.load(out / "samples.pt", weights_only=False)
    assert tuple(data["samples"].shape) == (3, 12)
    assert set(data["samples"].unique().tolist()) <= {0, 1}
    assert data["samples"][:, :10].eq(data["prefix"]).all()  # context.n=10 prefix kept
    assert (out / "samples.csv").read_text().startswith("sample,t0,t1")


def test_sample_keeps_within_the_trained_length_and_warns_beyond(linear_run, coin_run, workdir):
    """The tiny runs trained on sequences of 16: by default 10 context points leave room for
    6 queries; asking for more (or a longer rollout) works but says it extrapolates."""
    import torch

    proc = run_pfn(["sample", f"run={linear_run}", "num_samples=2", "out=fit"], workdir)
    data = torch.load(workdir / "fit" / "samples.pt", weights_only=False)
    assert tuple(data["samples"].shape) == (2, 6)
    assert "extrapolation" not in proc.stderr + proc.stdout
    proc = run_pfn(
        ["sample", f"run={linear_run}", "num_samples=2", "context.num_query=20", "out=far"], workdir
    )
    said = proc.stdout + proc.stderr  # the log goes to the console (hydra/job_logging: stdout)
    assert "needs 30 positions but the model was trained on sequences of 16" in said
    proc = run_pfn(
        ["sample", f"run={coin_run}", "num_samples=2", "seq_len=40", "out=roll"], workdir
    )
    said = proc.stdout + proc.stderr
    assert "seq_len=40 needs 40 positions" in said and "extrapolation" in said


def test_sample_context_from_file(linear_run, workdir):
    import torch

    (workdir / "ctx.csv").write_text("x,y\n-0.5,0.1\n0.0,0.4\n0.5,0.9\n")
    run_pfn(
        [
            "sample",
            f"run={linear_run}",
            "context.source=file",
            "context.path=ctx.csv",
            "num_samples=2",
            "context.num_query=4",
            "out=file_s",
        ],
        workdir,
    )
    data = torch.load(workdir / "file_s" / "samples.pt", weights_only=False)
    assert tuple(data["samples"].shape) == (2, 4)
    assert data["y_context"].tolist() == pytest.approx([0.1, 0.4, 0.9])


def test_list_runs_table_and_json(linear_run, coin_run, workdir):
    table = run_pfn(["list-runs"], workdir).stdout
    assert linear_run.name in table and coin_run.name in table
    assert "finished" in table and "30/30" in table
    rows = json.loads(run_pfn(["list-runs", "--json"], workdir).stdout)
    by_name = {r["name"]: r for r in rows}
    lin = by_name[linear_run.name]
    assert (lin["model"], lin["prior"], lin["status"]) == ("regression", "linear", "finished")
    assert lin["step"] == 30 and lin["num_steps"] == 30
    assert lin["last_loss"] is not None and lin["excess_nll"] is not None
    only = json.loads(run_pfn(["list-runs", "--json", "--prior", "coin"], workdir).stdout)
    assert [r["name"] for r in only] == [coin_run.name]
    srt = json.loads(run_pfn(["list-runs", "--json", "--sort", "prior"], workdir).stdout)
    assert [r["prior"] for r in srt][:2] == ["coin", "linear"]


# ---------------------------------------------------------------------------- errors
def test_bad_override_is_a_clear_error(tmp_path):
    proc = run_pfn(["train", "training.lr=1e-3"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "training.lr" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_pfn(["train", "prior=nope"], tmp_path, check=False)
    assert proc.returncode != 0 and "Available options in 'prior'" in proc.stderr
    assert not run_dirs(tmp_path / "outputs")


def test_incompatible_pair_is_refused_before_training(tmp_path):
    proc = run_pfn(["train", "model=classification", "prior=gp"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "model=classification" in proc.stderr and "prior=gp" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path / "outputs")  # nothing half-made is left behind


@pytest.mark.parametrize("cmd", ["eval", "sample"])
def test_missing_run_dir_is_a_clear_error(cmd, tmp_path):
    proc = run_pfn([cmd, "run=no/such/run"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "run=no/such/run" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_pfn([cmd], tmp_path, check=False)  # run=latest with no runs at all
    assert proc.returncode == 2 and "no runs under" in proc.stderr


def test_resume_of_missing_run_is_a_clear_error(tmp_path):
    proc = run_pfn(["train", "resume=no/such/run"], tmp_path, check=False)
    assert proc.returncode == 2 and "resume=no/such/run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path / "outputs")


def test_corrupt_checkpoint_is_a_clear_error(linear_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(linear_run, run)
    (run / "checkpoints" / "step-40.pt").write_bytes(b"not a checkpoint")
    proc = run_pfn(["eval", f"run={run}"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "step-40.pt" in proc.stderr and "step=N" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_checkpoint_step_is_a_clear_error(linear_run, tmp_path):
    proc = run_pfn(["eval", f"run={linear_run}", "step=7"], tmp_path, check=False)
    assert proc.returncode == 2 and "step 7" in proc.stderr and "30" in proc.stderr


# ---------------------------------------------------------------------------- sweeps
def test_multirun_2x2_lands_in_job_folders(tmp_path):
    run_pfn(
        [
            "train",
            "-m",
            "prior=linear,gp",
            "training.learning_rate=1e-3,3e-4",
            *TINY,
            "training.num_steps=10",
            "training.save_every=10",
        ],
        tmp_path,
    )
    jobs = run_dirs(tmp_path / "outputs")
    assert len(jobs) == 4
    assert len({j.parent for j in jobs}) == 1 and jobs[0].parent.name.endswith("_train_sweep")
    assert sorted(j.name for j in jobs) == [
        "0_regression-linear",
        "1_regression-linear",
        "2_regression-gp",
        "3_regression-gp",
    ]
    for job in jobs:
        assert read_status(job)["status"] == "finished"
        assert (job / "checkpoints" / "step-10.pt").is_file()
    rows = json.loads(run_pfn(["list-runs", "--json"], tmp_path).stdout)
    assert len(rows) == 4 and all(r["sweep"] for r in rows)
    assert {r["prior"] for r in rows} == {"linear", "gp"}


# ---------------------------------------------------------------------------- user prior
OWN_PRIOR = Path(__file__).resolve().parents[2] / "docs" / "guides" / "your-own-prior.md"


def readme_block(after: str, lang: str) -> str:
    """The first ``lang`` code block after the line ``after`` in the user-prior guide."""
    text = OWN_PRIOR.read_text()
    section = text[text.index("## Your own prior") :]
    rest = section[section.index(after) :]
    match = re.search(rf"```{lang}\n(.*?)```", rest, re.S)
    assert match, f"docs/guides/your-own-prior.md lost its {after} block"
    return match.group(1)


def test_user_prior_from_own_config_dir(tmp_path):
    # exactly the files the guide tells users to write
    (tmp_path / "my_priors.py").write_text(readme_block("`my_priors.py`", "python"))
    (tmp_path / "my_conf" / "prior").mkdir(parents=True)
    (tmp_path / "my_conf" / "prior" / "sine.yaml").write_text(
        readme_block("`my_conf/prior/sine.yaml`", "yaml")
    )
    help_text = run_pfn(["train", "--config-dir", "my_conf", "--help"], tmp_path).stdout
    assert "sine" in help_text
    run_pfn(["train", "--config-dir", "my_conf", "prior=sine", *TINY], tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    assert run.name.endswith("regression-sine")
    st = read_status(run)
    assert st["status"] == "finished" and st["prior"] == "sine"
    ev = json.loads((run / "eval.json").read_text())
    assert ev["has_exact"] is False and ev["nll"]["mean"] is not None
    # the run's own (user) prior is found again by eval
    run_pfn(["eval", "run=latest", "num_datasets=16", "plots=false"], tmp_path)


# ---------------------------------------------------------------------------- Ctrl-C
@contextlib.contextmanager
def cpu_load(processes: int = 2):
    """Busy processes beside the test, as on a shared CI machine."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for p in burners:
            p.kill()
            p.wait()


def start_long_run(tmp_path, *extra):
    args = [*TINY, "training.num_steps=100000", "training.save_every=10", "eval.enabled=false"]
    return subprocess.Popen(
        [*pfn_command(), "train", *args, *extra],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(proc, tmp_path, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if list((tmp_path / "outputs").glob("*/checkpoints/step-*.pt")):
            return
        time.sleep(0.3)
    raise AssertionError(f"no checkpoint appeared: {proc.poll()} {proc.communicate(timeout=5)}")


def signal_run(proc, tmp_path, *signals, gap=0.0):
    """Send ``signals`` once the first checkpoint exists; returns stderr."""
    try:
        wait_for_checkpoint(proc, tmp_path)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(gap)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_under_load_stops_cleanly_then_resumes(tmp_path, sig):
    proc = start_long_run(tmp_path)
    with cpu_load():
        err = signal_run(proc, tmp_path, sig)
    assert proc.returncode == 130, err
    assert f"{sig.name}: stopped cleanly" in err and "resume=" in err and "Traceback" not in err
    (run,) = run_dirs(tmp_path / "outputs")
    st = read_status(run)
    assert st["status"] == "interrupted" and st["signal"] == sig.name and st["step"] > 0
    steps = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))
    assert steps[-1] == st["step"]  # the clean stop wrote the step it stopped at
    assert not list((run / "checkpoints").glob(".*tmp"))  # nothing half-written left behind
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == st["step"]  # the steps after the last log step were logged too
    if sig == signal.SIGTERM:
        return
    target = st["step"] + 10
    run_pfn(["train", f"resume={run}", f"training.num_steps={target}"], tmp_path)
    assert run_dirs(tmp_path / "outputs") == [run]  # continued in place
    st = read_status(run)
    assert st["status"] == "finished" and st["step"] == target and st["resumed"]
    assert (run / "checkpoints" / f"step-{target}.pt").is_file()
    assert (run / "eval.json").is_file() is False  # eval.enabled=false came from the run
    rows = json.loads(run_pfn(["list-runs", "--json"], tmp_path).stdout)
    assert rows[0]["status"] == "finished" and rows[0]["step"] == target


def test_a_second_signal_stops_at_once(tmp_path):
    proc = start_long_run(tmp_path)
    err = signal_run(proc, tmp_path, signal.SIGINT, signal.SIGINT, gap=0.0)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume=" in err
    (run,) = run_dirs(tmp_path / "outputs")
    st = read_status(run)
    assert st["status"] == "interrupted"
    steps = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))
    assert steps and steps[-1] == st["step"]  # the status names a checkpoint that exists


# ---------------------------------------------------------------------------- slow extras
@pytest.mark.slow
def test_sweep_with_a_failing_job_finishes_the_others(tmp_path):
    proc = run_pfn(
        ["train", "-m", "prior=linear,coin", *TINY, "training.num_steps=10"], tmp_path, check=False
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "1 sweep job(s) failed" in proc.stderr and "prior=coin" in proc.stderr
    statuses = {
        read_status(j)["prior"]: read_status(j)["status"] for j in run_dirs(tmp_path / "outputs")
    }
    assert statuses == {"linear": "finished", "coin": "failed"}


@pytest.mark.slow
def test_wandb_offline_run_lands_in_the_run_dir(tmp_path):
    run_pfn(
        ["train", "wandb=offline", *TINY, "training.num_steps=10"],
        tmp_path,
        WANDB_MODE=None,
        WANDB_DIR=None,
    )
    (run,) = run_dirs(tmp_path / "outputs")
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert read_status(run)["status"] == "finished"


def test_runs_started_at_the_same_moment_never_share_a_folder(tmp_path):
    args = [*TINY, "training.num_steps=5", "eval.enabled=false"]
    procs = [
        subprocess.Popen(
            [*pfn_command(), "train", *args],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = run_dirs(tmp_path / "outputs")
    assert len(runs) == 2
    for run, proc in zip(
        sorted(runs, key=lambda r: read_status(r)["pid"]),
        sorted(procs, key=lambda p: p.pid),
        strict=True,
    ):
        assert f"-p{proc.pid}_train_" in run.name  # start time to the microsecond + process id
        assert read_status(run)["status"] == "finished"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_an_unwritable_outputs_folder_is_refused_before_training(tmp_path, multirun):
    (tmp_path / "a-file").write_text("not a folder")
    args = ["train", *(["-m"] if multirun else []), *TINY, "outputs_root=a-file/outputs"]
    proc = run_pfn(args, tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write runs there" in proc.stderr and "Not a directory" in proc.stderr
    assert "Training" not in proc.stdout + proc.stderr  # refused before any training


def test_the_cli_picks_a_short_openmp_spin_unless_the_environment_chose():
    from pfn_cli.main import set_openmp_waiting

    env: dict[str, str] = {}
    set_openmp_waiting(env)
    assert env == {"GOMP_SPINCOUNT": "3000"}
    for chosen in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "99"}):
        env = dict(chosen)
        set_openmp_waiting(env)
        assert env == chosen
