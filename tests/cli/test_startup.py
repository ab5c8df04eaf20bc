"""Commands that run no model start no backend: ``info``, ``verify``, ``cache`` and ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bottleneck_transfer.features.extract import extract

# Runs one command line in a fresh interpreter, then prints the backends it imported.
SCRIPT = """
import json, sys
BACKENDS = ("keras", "tensorflow", "jax", "torch")
from bottleneck_transfer.cli import cli
try:
    code = cli.main(sys.argv[1:], prog_name="bottleneck", standalone_mode=False) or 0
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "backends": [m for m in BACKENDS if m in sys.modules]}))
"""


def _run(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(photo_folder, tmp_path_factory):
    """A cache store holding one small cache extracted from real files."""
    folder = tmp_path_factory.mktemp("store")
    extract(photo_folder, "pixels", folder / "photos.h5", image_size=8, progress=False)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["info", "{cache}"],
        ["info", "{cache}", "--json"],
        ["verify", "{cache}"],
        ["cache", "ls", "--cache-dir", "{store}"],
        ["--help"],
        ["extract", "--help"],
        ["compare", "--help"],
        ["cache", "ls", "--help"],
    ],
    ids=lambda args: " ".join(args),
)
def test_command_imports_no_backend(store, args):
    filled = [a.format(cache=store / "photos.h5", store=store) for a in args]
    assert _run(*filled) == {"code": 0, "backends": []}


def test_the_check_sees_a_backend_where_a_model_runs(store):
    # A model command starts the backend before its work (here: a refused overwrite).
    out = store / "photos.h5"
    result = _run("train", str(out), "-o", str(out))
    assert result["code"] == 1 and "keras" in result["backends"]
