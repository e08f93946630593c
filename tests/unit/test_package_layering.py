"""The package's import graph (issue 25): no cycle, and the light modules stay light.

The graph is read from the source with ``ast``, not by importing: an edge for every
``import``/``from ... import`` statement naming a ``pfn_transformers`` module, at module level
or inside functions and methods alike (imports under ``if TYPE_CHECKING:`` never run and are
skipped). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pfn_transformers"
LEGACY_RUN = Path(__file__).parents[1] / "data" / "legacy_run"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its code)."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    if target.split(".")[0] != top:
                        continue
                    while target not in modules:
                        target = target.rsplit(".", 1)[0]
                    deps.add(target)
                continue
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1])
                target = base + (f".{node.module}" if node.module else "")
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                deps.add(sub if sub in modules else target)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def test_the_checker_sees_a_cycle_closed_inside_a_function(tmp_path):
    pkg = tmp_path / "pfn_transformers"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
    )
    graph = import_graph(pkg)
    assert graph["pfn_transformers.c"] == set()
    assert find_cycles(graph) == [["pfn_transformers.a", "pfn_transformers.sub.b"]]


def test_pfn_transformers_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 60  # the whole package was read
    assert "pfn_transformers.persistence.loading" in graph["pfn_transformers.runs"]
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_model_depends_on_persistence_only_through_its_hooks_and_the_builder():
    graph = import_graph()
    uses = {
        mod: sorted(d for d in deps if d.startswith("pfn_transformers.persistence"))
        for mod, deps in graph.items()
        if mod.startswith("pfn_transformers.model")
    }
    assert {m: d for m, d in uses.items() if d} == {
        "pfn_transformers.model.build": ["pfn_transformers.persistence.errors"],
        "pfn_transformers.model.pfn": ["pfn_transformers.persistence.hub"],
    }


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "module", ["pfn_transformers.wandb", "pfn_transformers.runs", "pfn_transformers.persistence"]
)
def test_light_modules_import_no_torch(module):
    loaded = _imported_after(f"import {module}")
    assert module in loaded
    assert "torch" not in loaded
    assert "wandb" not in loaded  # the W&B library, not pfn_transformers.wandb


def test_from_pretrained_of_a_run_folder_never_imports_wandb():
    loaded = _imported_after(
        "from pfn_transformers import PFN\n"
        f"model = PFN.from_pretrained({str(LEGACY_RUN)!r}, device='cpu')\n"
        "assert model.provenance['origin']['kind'] == 'run'"
    )
    assert "torch" in loaded
    assert not {"wandb", "pfn_transformers.wandb"} & loaded
