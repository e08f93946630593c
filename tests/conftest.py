"""Shared test setup: every test runs in its own temporary working directory with W&B off."""

from __future__ import annotations

import os
import tempfile

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made in-process training steps several times slower. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hugging Face Hub
# compile timings and kernels go to a throwaway folder, never the user's cache
os.environ.setdefault("PFN_CACHE_DIR", tempfile.mkdtemp(prefix="pfn-test-cache-"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


# Reasons (prefixes) a test may skip for. None on the machines CI uses: an optional plugin
# that `make install` installs, or an import of the library, must fail when it breaks, and
# GPU tests are deselected by their `cuda` marker instead of skipped.
ALLOWED_SKIP_REASONS: tuple[str, ...] = ()
_unexpected_skips: list[tuple[str, str]] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        pytest.fail(
            f"{item.nodeid} is marked cuda but torch sees no CUDA device; run `make test-cuda` "
            "(pytest -m cuda) on a machine with a GPU and a CUDA build of torch.",
            pytrace=False,
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        if not reason.startswith(ALLOWED_SKIP_REASONS):
            _unexpected_skips.append((report.nodeid, reason))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _unexpected_skips:
        terminalreporter.section("unexpected skips (they fail the run)", red=True)
        for nodeid, reason in _unexpected_skips:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        terminalreporter.write_line(
            "A skip hides a failure: install what the test needs (`make install` installs the "
            "launcher and sweeper plugins), deselect it by a marker, or list its reason in "
            "tests/conftest.py ALLOWED_SKIP_REASONS."
        )


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Spec defaults write to ./checkpoints; keep that inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    torch.manual_seed(0)
    yield
