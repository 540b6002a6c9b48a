"""The package's shape, checked: layers point down, no import circles, small modules.

The folder tree is the architecture (docs/layout.md); these tests keep it that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "batch"
# Top to bottom: a package may import from its own layer's package or any layer below it.
LAYERS = ["cli", "job", "runners", "reports", "flow", "prefilter", "output", "engine", "policy"]
BASE = {"errors", "vocab", ""}  # batch/errors.py, batch/vocab.py, batch/__init__.py
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The ``batch`` modules a file imports at run time (lazy imports too, not type hints)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "batch")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "batch":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, known) - {name} for name, path in found.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


def test_every_package_is_a_known_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(LAYERS)
    top_modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top_modules == BASE - {""}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in edges.items()
        for target in targets
        if layer(target) < layer(module)
    ]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle a depth-first walk meets."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    found: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    return found


def test_imports_point_down_the_layers():
    assert not upward_imports(graph())


def test_there_are_no_import_circles():
    assert not circles(graph())


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in modules().items():
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long


def test_only_the_command_line_knows_click():
    users = [
        name
        for name, path in modules().items()
        if not name.startswith("batch.cli")
        and any(
            isinstance(n, ast.Import | ast.ImportFrom)
            and any(
                (getattr(n, "module", None) or a.name).split(".")[0] == "click" for a in n.names
            )
            for n in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert not users


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path):
    """The checks above can fail: planted circles and upward imports are found."""
    edges = {"batch.flow.a": {"batch.flow.b"}, "batch.flow.b": {"batch.output.c"},
             "batch.output.c": {"batch.flow.a"}}  # fmt: skip
    assert circles(edges) == [["batch.flow.a", "batch.flow.b", "batch.output.c", "batch.flow.a"]]
    assert upward_imports(edges) == ["batch.output.c imports batch.flow.a"]
    # Lazy imports count, type-checking imports do not.
    (tmp_path / "m.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import batch.cli\n"
        "def f():\n    from batch.job import label\n"
    )
    assert imports_of(tmp_path / "m.py", {"batch.job.label"}) == {"batch.job.label"}
