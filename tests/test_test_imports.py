"""No test file imports Keras, TensorFlow or another heavy framework when it is collected,
neither itself nor through the library modules it imports: they load in the tests that use
them (each xdist worker collects every file, so an import at collection costs every worker).

Run as a script with test files as arguments, this module imports each of them in turn and
prints, as JSON, every import of a framework that ran, by the file and line that ran it
(``file:line``, a test file, a test helper or the library).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SELF = str(Path(__file__).resolve())
TESTS = Path(SELF).parent
#: The imports no test file may make at import time (their submodules included): the
#: frameworks, and ``skops.io``, which imports every scikit-learn module (and so PyTorch).
FRAMEWORKS = ("keras", "tensorflow", "torch", "jax", "skops.io")


def _test_files() -> list[Path]:
    """Every file pytest imports while collecting: conftests, helpers and test modules."""
    files = sorted(TESTS.rglob("conftest.py")) + sorted(TESTS.glob("*_fixtures.py"))
    return files + sorted(TESTS.rglob("test_*.py"))


@functools.cache
def _resolved(filename: str) -> str:
    return str(Path(filename).resolve())


def _importer(frame, roots: tuple[str, ...]) -> str | None:
    """``file:line`` of the innermost frame in ``roots`` (the statement that asked)."""
    while frame is not None:
        name = frame.f_code.co_filename
        filename = "" if name.startswith("<") else _resolved(name)  # not <frozen ...>, <string>
        if filename.startswith(roots) and filename != SELF:  # not the hook's own frame
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _matches(name: str, fromlist, frameworks: tuple[str, ...]) -> str | None:
    """The framework that ``import name`` / ``from name import fromlist`` loads, if any."""
    for full in [name, *(f"{name}.{item}" for item in fromlist or ())]:
        for framework in frameworks:
            if full == framework or full.startswith(framework + "."):
                return framework
    return None


def record_framework_imports(
    files: list[Path],
    frameworks: tuple[str, ...] = FRAMEWORKS,
    library: str | None = None,
) -> list[dict[str, str]]:
    """Import ``files`` (by path, as pytest's importlib mode does) and return each import of
    one of ``frameworks`` that a test file, a helper or ``library`` (a folder; by default
    this package's) ran: ``{"file": test file, "module": framework, "by": "file:line"}``.

    A library module runs once: its imports are charged to the first file that imports it.
    """
    if library is None:
        library = importlib.util.find_spec("bottleneck_transfer").submodule_search_locations[0]
    roots = (str(TESTS) + "/", _resolved(library) + "/")
    found: set[tuple[str, str, str]] = set()
    current = [""]
    real_import = builtins.__import__

    def watching(name, globals=None, locals=None, fromlist=(), level=0):
        framework = _matches(name, fromlist, frameworks) if level == 0 else None
        if framework is not None:
            by = _importer(sys._getframe(1), roots)
            if by is not None:  # not the frameworks' imports of each other
                found.add((current[0], framework, by))
        return real_import(name, globals, locals, fromlist, level)

    sys.path.insert(0, str(TESTS))
    builtins.__import__ = watching
    try:
        for k, path in enumerate(files):
            current[0] = str(path)
            spec = importlib.util.spec_from_file_location(f"_collected_{k}", path)
            module = importlib.util.module_from_spec(spec)
            # A module that skips or fails at import is pytest's to report.
            with contextlib.suppress(BaseException):
                spec.loader.exec_module(module)
    finally:
        builtins.__import__ = real_import
    return [{"file": file, "module": name, "by": by} for file, name, by in sorted(found)]


@pytest.fixture(scope="module")
def collected() -> list[dict[str, str]]:
    """The framework imports of collecting every test file, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, __file__, *map(str, _test_files())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _relative(path: str) -> str:
    return str(Path(path).relative_to(TESTS.parent)) if path.startswith("/") else path


def test_no_test_file_imports_a_framework_at_import_time(collected):
    in_tests = sorted(
        {
            f"{_relative(i['by'])} imports {i['module']}"
            for i in collected
            if i["by"].startswith(str(TESTS))
        }
    )
    assert not in_tests, "import these inside the tests or fixtures that use them:\n" + "\n".join(
        in_tests
    )


def test_no_test_file_imports_a_framework_through_the_library(collected):
    through = sorted(
        {
            f"{_relative(i['file'])} imports {i['module']} through {_relative(i['by'])}"
            for i in collected
            if not i["by"].startswith(str(TESTS))
        }
    )
    assert not through, "import these lazily in the library, or inside the tests:\n" + "\n".join(
        through
    )


def test_the_check_finds_imports_in_test_files_helpers_and_the_library(tmp_path):
    """Stand-ins for the frameworks and the library (small stdlib modules, a folder) keep
    this test fast."""
    library = tmp_path / "lib"
    library.mkdir()
    (library / "lib_module.py").write_text("from xml import dom\n")
    (tmp_path / "helper_fixtures.py").write_text("import math\nimport colorsys\n")
    (tmp_path / "test_x.py").write_text(
        "import helper_fixtures\n\ndef test_y():\n    import wave\n"
    )
    (tmp_path / "test_z.py").write_text(
        "import sys, pytest\n\nw = pytest.importorskip('wave')\n"
        f"sys.path.insert(0, {str(library)!r})\nimport lib_module\n"
    )
    script = (
        "import json, pathlib, sys, test_test_imports as t\n"
        f"t.TESTS = pathlib.Path({str(tmp_path)!r})\n"
        "files = [t.TESTS / 'test_x.py', t.TESTS / 'test_z.py']\n"
        "stand_ins = ('colorsys', 'wave', 'xml.dom')\n"
        f"found = t.record_framework_imports(files, stand_ins, {str(library)!r})\n"
        "print(json.dumps(found))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=TESTS, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    by = {(Path(i["file"]).name, i["module"], Path(i["by"]).name) for i in found}
    assert by == {
        ("test_x.py", "colorsys", "helper_fixtures.py:2"),
        ("test_z.py", "wave", "test_z.py:3"),
        ("test_z.py", "xml.dom", "lib_module.py:1"),
    }


if __name__ == "__main__":
    print(json.dumps(record_framework_imports([Path(p) for p in sys.argv[1:]])))
