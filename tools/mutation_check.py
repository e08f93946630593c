"""Mutation check: every known break must be caught by the tests aimed at it.

Each entry of ``tools/mutants.py`` names one deliberate bug: a piece of code (which must occur
exactly once in its file) and what replaces it, plus the tests that must catch it. The check
copies the working tree (tracked and untracked, not ignored, files) to a scratch folder, runs
every entry's tests there unpatched (a baseline that fails would make every break look
caught), then for each entry patches the copy, runs its tests and restores the file. The
working tree itself is never touched.

An entry is *caught* when one of its tests fails (with ``all_must_fail``, when every listed
test fails). The check exits 1 when any break survives, when a patch no longer applies (the
code moved: update the entry), when a break makes the tests error out instead of fail (a
broken import, not a bug the tests can see) or when the baseline fails.

    python tools/mutation_check.py                 # every entry (`make test-mutants`)
    python tools/mutation_check.py -k resume -k kv  # entries whose name contains a word
    python tools/mutation_check.py --list          # the entries and their tests
    python tools/mutation_check.py --json report.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mutants import MUTANTS, Mutant  # noqa: E402

CAUGHT, SURVIVED, STALE, ERROR = "caught", "survived", "stale", "error"


@dataclass
class Outcome:
    """What one pytest run reported."""

    returncode: int | None  # None: killed at the timeout
    failed: list[str] = field(default_factory=list)  # node ids that failed or errored
    messages: dict[str, str] = field(default_factory=dict)  # node id -> its failure message
    passed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tail: str = ""  # the end of pytest's output, for the report


@dataclass
class Result:
    name: str
    status: str
    caught_by: list[str]
    survived_in: list[str]
    seconds: float
    detail: str = ""  # why it survived or errored; for a caught one, the failure message


# ----------------------------------------------------------------------------- patches
def check_applies(mutant: Mutant, root: Path) -> str | None:
    """None when the entry's ``old`` text occurs exactly once in its file, else why not."""
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.path} does not exist"
    count = path.read_text().count(mutant.old)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        return f"the code to replace {where} in {mutant.path}; update the entry"
    return None


def apply(mutant: Mutant, root: Path) -> str:
    """Patch the file under ``root``; returns its original text (for ``restore``)."""
    path = root / mutant.path
    original = path.read_text()
    path.write_text(original.replace(mutant.old, mutant.new, 1))
    return original


def restore(mutant: Mutant, root: Path, original: str) -> None:
    (root / mutant.path).write_text(original)


# ----------------------------------------------------------------------------- scratch copy
def tree_files(root: Path) -> list[str]:
    """Files a fresh checkout plus local edits would hold: git's tracked and untracked,
    not-ignored files (every file, outside .git, when ``root`` is not a git work tree)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        return sorted({name for name in out.decode().split("\0") if name})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__"}
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if (p.is_file() or p.is_symlink()) and not skip & set(p.relative_to(root).parts)
        )


def copy_tree(root: Path, dest: Path) -> None:
    """Copy the tree's files to ``dest``, links kept as links (pfn_cli/conf is one)."""
    for name in tree_files(root):
        src, dst = root / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


# ----------------------------------------------------------------------------- running tests
def _node_id(case: ET.Element) -> str:
    """pytest node id of a junit ``testcase`` (``tests.test_x`` + ``name`` -> file::name)."""
    parts = case.get("classname", "").split(".")
    # classname is the dotted module path, then any test class names (capitalised)
    split = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    path = "/".join(parts[:split]) + ".py"
    return "::".join([path, *parts[split:], case.get("name", "")])


def tree_env(tree: Path) -> dict[str, str]:
    """The environment of a run in ``tree``: its packages first on the path (ahead of an
    editable install of the working tree), no bytecode (a patch and its undo can share one
    mtime), W&B off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(PYTHONDONTWRITEBYTECODE="1", WANDB_MODE="disabled", WANDB_SILENT="true")
    return env


def imports_from(tree: Path, modules: Sequence[str], python: str) -> list[str]:
    """The modules of ``modules`` that a run in ``tree`` would import from elsewhere."""
    code = (
        "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    )
    proc = subprocess.run(
        [python, "-c", code, *modules], cwd=tree, env=tree_env(tree), capture_output=True, text=True
    )
    files = proc.stdout.split() if proc.returncode == 0 else []
    if len(files) != len(modules):
        return [f"{', '.join(modules)} (import failed: {proc.stderr.strip()[-300:]})"]
    return [f"{m} from {f}" for m, f in zip(modules, files) if not Path(f).is_relative_to(tree)]


def run_pytest(
    tree: Path, tests: Sequence[str], *, stop_early: bool, timeout: float, python: str
) -> Outcome:
    """Run ``tests`` in ``tree`` and read the junit report: which node ids failed."""
    xml = tree / ".mutation-junit.xml"
    xml.unlink(missing_ok=True)
    cmd = [python, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", "--junitxml", str(xml)]
    cmd += ["-m", ""]  # overrides the ini's marker filter: the named tests, slow ones included
    if stop_early:
        cmd.append("-x")
    env = tree_env(tree)
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, output = None, str(exc.stdout or "") + f"\n(timed out after {timeout:.0f} s)"
    outcome = Outcome(returncode, seconds=time.perf_counter() - started, tail=output[-3000:])
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            bad = case.find("failure")
            bad = bad if bad is not None else case.find("error")
            skipped = case.find("skipped") is not None
            if bad is not None:
                outcome.failed.append(_node_id(case))
                message = " ".join((bad.get("message") or "").split())
                outcome.messages[_node_id(case)] = message[:160]
            elif not skipped:
                outcome.passed.append(_node_id(case))
    return outcome


def judge(mutant: Mutant, outcome: Outcome) -> Result:
    """Caught, survived or error, from what the tests of one patched tree reported."""
    res = Result(mutant.name, SURVIVED, outcome.failed, outcome.passed, outcome.seconds)
    if outcome.returncode is None:
        res.status, res.caught_by = CAUGHT, [*outcome.failed, "(timed out)"]
    elif outcome.returncode == 1 and outcome.failed:
        res.status = SURVIVED if mutant.all_must_fail and outcome.passed else CAUGHT
        res.detail = outcome.messages.get(outcome.failed[0], "")
    elif outcome.returncode != 0:
        res.status, res.caught_by = ERROR, []
        res.detail = (
            f"pytest exited {outcome.returncode} (collection error or bad test id?): "
            + outcome.tail[-800:]
        )
    if res.status == SURVIVED and not res.detail:
        res.detail = "these tests passed with the break in place: " + ", ".join(outcome.passed)
    return res


# ----------------------------------------------------------------------------- the check
def run_check(
    root: Path,
    mutants: Sequence[Mutant],
    *,
    timeout: float = 600.0,
    python: str = sys.executable,
    echo: Callable[[str], None] = print,
) -> list[Result]:
    """Every mutant of ``mutants`` against a scratch copy of ``root``; one Result each (a
    first Result named "baseline" when the unpatched tests fail)."""
    results: list[Result] = []
    live = []
    for m in mutants:
        problem = check_applies(m, root)
        if problem:
            results.append(Result(m.name, STALE, [], [], 0.0, problem))
            echo(f"  STALE     {m.name}: {problem}")
        else:
            live.append(m)
    if not live:
        return results
    with tempfile.TemporaryDirectory(prefix="pfn-mutants-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(root, tree)
        packages = sorted({Path(m.path).parts[0] for m in live if len(Path(m.path).parts) > 1})
        elsewhere = imports_from(tree, packages, python) if packages else []
        if elsewhere:
            detail = "the scratch copy is not what the tests import: " + "; ".join(elsewhere)
            echo(f"  ERROR     {detail}")
            return [*results, Result("baseline", ERROR, [], [], 0.0, detail)]
        tests = list(dict.fromkeys(t for m in live for t in m.tests))
        echo(f"baseline: {len(tests)} test(s) on the unpatched copy ...")
        base = run_pytest(tree, tests, stop_early=True, timeout=timeout, python=python)
        if base.returncode != 0:
            detail = "the tests fail without any break: " + base.tail[-1500:]
            echo(f"  ERROR     baseline ({base.seconds:.0f} s): {detail}")
            return [*results, Result("baseline", ERROR, base.failed, [], base.seconds, detail)]
        echo(f"  ok        baseline ({base.seconds:.0f} s)")
        for m in live:
            original = apply(m, tree)
            try:
                outcome = run_pytest(
                    tree, m.tests, stop_early=not m.all_must_fail, timeout=timeout, python=python
                )
            finally:
                restore(m, tree, original)
            res = judge(m, outcome)
            results.append(res)
            shown = ", ".join(res.caught_by) if res.status == CAUGHT else res.detail
            echo(f"  {res.status.upper():<9} {m.name} ({res.seconds:.0f} s): {shown}")
            if res.status == CAUGHT and res.detail:
                echo(f"            {res.detail}")
    return results


def summary(results: Sequence[Result]) -> tuple[str, bool]:
    """One line of counts, and whether the check passed (every break caught)."""
    counts = {s: sum(r.status == s for r in results) for s in (CAUGHT, SURVIVED, STALE, ERROR)}
    ok = bool(results) and counts[CAUGHT] == len(results)
    line = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no mutants"
    return f"mutation check: {line} ({'PASS' if ok else 'FAIL'})", ok


def select(mutants: Sequence[Mutant], words: Sequence[str]) -> list[Mutant]:
    return [m for m in mutants if not words or any(w in m.name for w in words)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="words", action="append", default=[], help="name contains")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    chosen = select(MUTANTS, args.words)
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.why}\n    {m.path}; tests: {', '.join(m.tests)}")
        return 0
    if not chosen:
        print(f"no mutant name contains any of {args.words}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"mutation check: {len(chosen)} break(s), tests run in a scratch copy of {REPO}")
    results = run_check(REPO, chosen, timeout=args.timeout)
    line, ok = summary(results)
    print(f"{line} in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
