"""No test file imports Keras or TensorFlow when it is collected: they load in the tests that
use them (collecting the suite must not cost a framework import per worker).

Run as a script with test files as arguments, this module imports each of them in turn and
prints, as JSON, every ``import keras``/``import tensorflow`` statement that ran, by the file
and line that ran it (``file:line``, a test file, a test helper or the library).
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

SELF = str(Path(__file__).resolve())
TESTS = Path(SELF).parent
#: The frameworks no test file may import at import time (their submodules included).
FRAMEWORKS = ("keras", "tensorflow")


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
        filename = _resolved(frame.f_code.co_filename)
        if filename.startswith(roots) and filename != SELF:  # not the hook's own frame
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def record_framework_imports(
    files: list[Path], frameworks: tuple[str, ...] = FRAMEWORKS
) -> list[dict[str, str]]:
    """Import ``files`` (by path, as pytest's importlib mode does) and return each import of
    one of ``frameworks`` that ran: ``{"file": test file, "module": name, "by": "file:line"}``.
    """
    library = importlib.util.find_spec("bottleneck_transfer").submodule_search_locations[0]
    roots = (str(TESTS) + "/", _resolved(library) + "/")
    found: set[tuple[str, str, str]] = set()
    current = [""]
    real_import = builtins.__import__

    def watching(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.split(".")[0] in frameworks:
            by = _importer(sys._getframe(1), roots)
            found.add((current[0], name, str(by)))
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


def test_no_test_file_imports_keras_or_tensorflow_at_import_time():
    result = subprocess.run(
        [sys.executable, __file__, *map(str, _test_files())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imports = json.loads(result.stdout.splitlines()[-1])
    in_tests = sorted(
        {f"{i['by']} imports {i['module']}" for i in imports if i["by"].startswith(str(TESTS))}
    )
    assert not in_tests, "import these inside the tests or fixtures that use them:\n" + "\n".join(
        in_tests
    )


def test_the_check_finds_imports_in_test_files_and_in_helpers_they_import(tmp_path):
    """Stand-ins for the frameworks (two small stdlib modules) keep this test fast."""
    (tmp_path / "helper_fixtures.py").write_text("import math\nimport colorsys\n")
    (tmp_path / "test_x.py").write_text(
        "import helper_fixtures\n\ndef test_y():\n    import wave\n"
    )
    (tmp_path / "test_z.py").write_text("import pytest\n\nw = pytest.importorskip('wave')\n")
    script = (
        "import json, pathlib, sys, test_test_imports as t\n"
        f"t.TESTS = pathlib.Path({str(tmp_path)!r})\n"
        "files = [t.TESTS / 'test_x.py', t.TESTS / 'test_z.py']\n"
        "print(json.dumps(t.record_framework_imports(files, ('colorsys', 'wave'))))\n"
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
    }


if __name__ == "__main__":
    print(json.dumps(record_framework_imports([Path(p) for p in sys.argv[1:]])))
