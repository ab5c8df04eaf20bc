"""Stage 1's shape: a one-way chain of small packages (no import circles, no long functions).

The import graph is read from the source with ``ast`` (every import, those inside functions
included; those under ``if TYPE_CHECKING:`` are annotations only and never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bottleneck"
NAME = "bottleneck_transfer"
#: The most lines (signature, docstring and body) a function of the package may have.
MAX_FUNCTION_LINES = 80
#: Stage 1's chain, each stage importing only the ones before it. ``decode`` (bytes or paths
#: to pixels) comes first: a source loads its items through it.
CHAIN = (
    ("cache", "choices", "duplicates"),
    ("decode",),
    ("sources",),
    ("batches",),
    ("bases",),
    ("runtimes",),
    ("views", "options"),
    ("loop",),
    ("update",),
    ("engines",),
    ("extract",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([NAME, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return skipped


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package counts as
    its submodule when there is one)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        graph[module] = {name for name in found if name in modules and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one
    module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circle():
    found = cycles(import_graph(_modules()))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_stage_one_has_no_import_circle():
    graph = import_graph(_modules())
    found = [c for c in cycles(graph) if any(f"{NAME}.features." in m for m in c)]
    assert found == []


def test_the_circle_check_sees_a_circle(tmp_path):
    (tmp_path / "a.py").write_text(f"def f():\n    from {NAME}.b import g\n")
    (tmp_path / "b.py").write_text(f"from {NAME}.c import h\n")
    (tmp_path / "c.py").write_text(f"from {NAME} import a\n")
    (tmp_path / "d.py").write_text(
        f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import {NAME}.a\n"
    )
    modules = {f"{NAME}.{p.stem}": p for p in sorted(tmp_path.glob("*.py"))}
    graph = import_graph(modules)
    assert graph[f"{NAME}.d"] == set()
    assert cycles(graph) == [[f"{NAME}.a", f"{NAME}.b", f"{NAME}.c"]]


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != [NAME, "features"] or len(parts) < 3:
        return None
    return next((rank for rank, names in enumerate(CHAIN) if parts[2] in names), None)


def test_stage_one_imports_run_down_the_chain():
    graph = import_graph(_modules())
    bad = [
        f"{module} imports {name}"
        for module, names in graph.items()
        for name in sorted(names)
        if _stage(module) is not None and _stage(name) is not None and _stage(name) > _stage(module)
    ]
    assert not bad, "\n".join(bad)


#: What the length check covers: every module of the package, by top-level folder or module.
LENGTH_CHECKED = sorted(
    path.name
    for path in PACKAGE.iterdir()
    if path.suffix == ".py" or (path.is_dir() and any(path.rglob("*.py")))
)


def _long_functions(path: Path) -> list[str]:
    """``module:line name lines`` of each function of ``path`` over the limit."""
    long = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} {lines}")
    return long


def _length_checked(target: str) -> list[Path]:
    path = PACKAGE / target
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("target", LENGTH_CHECKED)
def test_no_function_is_longer_than_the_limit(target):
    paths = _length_checked(target)
    assert paths, f"{target}: no module there"
    long = [entry for path in paths for entry in _long_functions(path)]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_no_module_of_stage_one_imports_keras_or_tensorflow_at_import_time():
    bad = []
    for path in sorted((PACKAGE / "features").rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] in ("keras", "tensorflow") for name in names):
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not bad, "module-level keras/tensorflow imports:\n" + "\n".join(bad)
