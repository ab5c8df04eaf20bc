"""The package's shape: imports run one way, features -> heads -> deploy -> rank -> pipeline
-> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bottleneck"
NAME = "bottleneck_transfer"
# Each part may import only the parts listed before it (and itself).
ORDER = ("kernel", "features", "heads", "deploy", "rank", "pipeline", "cli")
OUTSIDE = ("bench",)  # the benchmarks: imported by the CLI only, never by the library
#: The benchmarks measure shipped pipeline specs, so they may import every part but the CLI.
OUTSIDE_MAY_IMPORT = ORDER[:-1]


def _part(module: str) -> str:
    parts = module.split(".")
    if parts[0] != NAME or len(parts) == 1:
        return "kernel"
    return parts[1] if parts[1] in (*ORDER, *OUTSIDE) else "kernel"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == NAME]


def _module_part(path: Path) -> str:
    relative = path.relative_to(PACKAGE).parts
    if relative == ("__main__.py",):
        return "cli"  # `python -m bottleneck_transfer` is the CLI's entry point
    return relative[0] if len(relative) > 1 and relative[0] in (*ORDER, *OUTSIDE) else "kernel"


@pytest.mark.parametrize("part", [*ORDER, *OUTSIDE])
def test_imports_point_only_to_earlier_stages(part):
    allowed = set(ORDER[: ORDER.index(part) + 1]) if part in ORDER else {*OUTSIDE_MAY_IMPORT, part}
    if part == "cli":
        allowed.add("bench")
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _module_part(path) != part:
            continue
        for line, name in _imports(path):
            if _part(name) not in allowed:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_benchmarks():
    users = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if _module_part(path) not in ("bench", "cli")
        and any(_part(name) == "bench" for _, name in _imports(path))
    ]
    assert users == []


def test_the_layout_check_sees_a_backward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text(f"from {NAME}.heads.registry import make_head\nimport {NAME}.deploy.export\n")
    assert [_part(name) for _, name in _imports(bad)] == ["heads", "heads", "deploy"]


def test_no_private_name_is_imported_from_another_package():
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name in _imports(path)
        if name.rsplit(".", 1)[-1][:1] == "_"
        and not name.endswith("__")
        and _part(name) != _module_part(path)
    ]
    assert not bad, "\n".join(bad)
