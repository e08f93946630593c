"""The mutation check (`make test-mutants`): its catalogue still applies, and its verdicts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

from mutants import MUTANTS, Mutant  # noqa: E402
from mutation_check import CAUGHT, ERROR, STALE, SURVIVED, run_check, summary  # noqa: E402


def test_every_break_applies_to_this_tree_and_names_tests_that_exist():
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "mutant names must be unique"
    problems = []
    for m in MUTANTS:
        text = (REPO / m.path).read_text() if (REPO / m.path).is_file() else ""
        if text.count(m.old) != 1 or m.old == m.new:
            problems.append(f"{m.name}: its code occurs {text.count(m.old)} times in {m.path}")
        for node in m.tests:
            match = re.fullmatch(r"([\w/]+\.py)::(\w+)(?:\[(.+)\])?", node)
            source = REPO / match.group(1) if match else None
            if source is None or not source.is_file():
                problems.append(f"{m.name}: {node} names no test file")
                continue
            body = source.read_text()
            if f"def {match.group(2)}(" not in body:
                problems.append(f"{m.name}: {node}: no function {match.group(2)}")
            if match.group(3) and f'"{match.group(3)}"' not in body:
                problems.append(f"{m.name}: {node}: no parameter id {match.group(3)!r}")
    assert not problems, "update tools/mutants.py:\n" + "\n".join(problems)


@pytest.fixture
def toy(tmp_path) -> Path:
    """A project of one module and its tests (not a git work tree: every file is copied)."""
    root = tmp_path / "toy"
    root.mkdir()
    (root / "calc.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef double(a):\n    return 2 * a\n"
    )
    (root / "test_calc.py").write_text(
        "from calc import add, double\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_double_is_an_int():\n    assert isinstance(double(2), int)\n"
    )
    return root


def _mutant(name, old, new, *tests, all_must_fail=False) -> Mutant:
    return Mutant(name, "toy", "calc.py", old, new, tests, all_must_fail)


def test_each_break_is_judged_and_the_tree_is_left_alone(toy):
    before = {p.name: p.read_text() for p in toy.iterdir()}
    mutants = [
        _mutant("add/subtracts", "a + b", "a - b", "test_calc.py::test_add"),
        _mutant("double/triples", "2 * a", "3 * a", "test_calc.py::test_double_is_an_int"),
        _mutant("gone/code", "a * b", "a / b", "test_calc.py::test_add"),
        _mutant(
            "add/both-must-fail",
            "a + b",
            "a - b",
            "test_calc.py::test_add",
            "test_calc.py::test_double_is_an_int",
            all_must_fail=True,
        ),
        _mutant("add/syntax-error", "def add(a, b):", "def add(a, b)", "test_calc.py::test_add"),
    ]
    log: list[str] = []
    results = {r.name: r for r in run_check(toy, mutants, echo=log.append, timeout=120)}
    assert results["add/subtracts"].status == CAUGHT
    assert results["add/subtracts"].caught_by == ["test_calc.py::test_add"]
    assert results["double/triples"].status == SURVIVED
    assert "test_calc.py::test_double_is_an_int" in results["double/triples"].detail
    assert results["gone/code"].status == STALE and "does not occur" in results["gone/code"].detail
    assert results["add/both-must-fail"].status == SURVIVED  # one of its tests still passed
    assert results["add/syntax-error"].status == ERROR  # an import error is not a catch
    assert "collection error" in results["add/syntax-error"].detail
    assert results["add/syntax-error"].caught_by == []
    line, ok = summary(list(results.values()))
    assert not ok and "1 caught, 2 survived, 1 stale, 1 error" in line and "FAIL" in line
    assert any("CAUGHT    add/subtracts" in entry for entry in log)
    assert {p.name: p.read_text() for p in toy.iterdir()} == before  # patched copies only

    caught = run_check(toy, mutants[:1], echo=log.append, timeout=120)
    assert summary(caught)[1] is True


@pytest.mark.parametrize("broken", ["failing-test", "missing-test"])
def test_a_baseline_that_does_not_pass_fails_the_check(toy, broken):
    test = "test_calc.py::test_add"
    if broken == "failing-test":
        (toy / "test_calc.py").write_text("def test_add():\n    assert False\n")
    else:
        test = "test_calc.py::test_nothing"
    results = run_check(toy, [_mutant("add/subtracts", "a + b", "a - b", test)], echo=print)
    assert [(r.name, r.status) for r in results] == [("baseline", ERROR)]
    assert "fail without any break" in results[0].detail
    assert summary(results)[1] is False
