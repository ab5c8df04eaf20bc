"""Every failure is one line (issue 24, part 7): unwritable outputs, a full disk (the file
size limit), exports whose metadata disagrees with their model; exit 1, the path named,
nothing left under the final name, the user's files intact, ``--debug`` for the traceback."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
from bottleneck_transfer.errors import WriteError
from heads_fixtures import blobs, write_cache
from loader_fixtures import one_line, run_cli, tree_hashes

pytestmark = pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    X, y = blobs(n=90, dim=4, centers=3)
    return write_cache(tmp_path_factory.mktemp("cache") / "c.h5", X, y)


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of a folder holding one user file (skipped where mounts are
    not allowed: root ignores file modes, so chmod would not do)."""
    source, mounted = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    (source / "keep.txt").write_text("mine")
    bind = ["mount", "--bind", str(source), str(mounted)]
    remount = ["mount", "-o", "remount,ro,bind", str(mounted)]
    if shutil.which("mount") is None or any(
        subprocess.run(command, capture_output=True).returncode for command in (bind, remount)
    ):
        pytest.skip("cannot make a read-only bind mount here")
    yield mounted
    subprocess.run(["umount", str(mounted)], check=True)


@pytest.mark.parametrize(
    ("out", "advice"),
    [
        ("/sys/bottleneck-test/head.skops", "choose a folder you may write to"),
        ("/proc/self/head.skops", "choose another path"),
        ("{user}/notes.txt/head.skops", "a file stands where a folder is needed"),
    ],
    ids=["sys", "proc", "file-as-folder"],
)
def test_train_to_an_unwritable_place_is_one_line(cache, tmp_path, out, advice):
    (tmp_path / "notes.txt").write_text("mine")
    out = out.format(user=tmp_path)
    before = tree_hashes(tmp_path)
    one_line(run_cli("train", cache, "-o", out), f"cannot write {out}", advice)
    assert tree_hashes(tmp_path) == before
    assert not os.path.exists(out)


def test_a_read_only_folder_is_one_line(cache, read_only):
    before = tree_hashes(read_only)
    out = read_only / "head.skops"
    one_line(run_cli("train", cache, "-o", out), f"cannot write {out}", "read-only")
    assert tree_hashes(read_only) == before


def test_a_report_folder_that_cannot_be_made_is_one_line(cache, tmp_path):
    out = "/sys/bottleneck-test/report"
    result = run_cli("compare", cache, "--cv", 3, "--heads", "logreg", "-o", out)
    one_line(result, f"cannot write {out}")


def test_debug_shows_the_traceback(cache):
    result = run_cli("--debug", "train", cache, "-o", "/proc/self/head.skops")
    assert result.exit_code == 1 and isinstance(result.exception, WriteError)
    assert result.exception.filename == "/proc/self/head.skops"


def _limited(limit: int, *args: object) -> subprocess.CompletedProcess:
    """``bottleneck ARGS`` in a process that may write files of at most ``limit`` bytes (a
    full disk as the file system reports it: EFBIG, SIGXFSZ ignored)."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "bottleneck_transfer", *map(str, args)]
    return subprocess.run(command, preexec_fn=cap, capture_output=True, text=True, timeout=300)


def test_a_full_disk_leaves_nothing_half_written(cache, tmp_path):
    out = tmp_path / "heads" / "head.skops"
    (tmp_path / "heads").mkdir()
    (tmp_path / "heads" / "old.txt").write_text("mine")
    before = tree_hashes(tmp_path)
    done = _limited(2000, "train", cache, "-o", out)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: cannot write {out}: File too large"), done.stderr
    assert "file size limit" in lines[-1] and "Traceback" not in done.stderr
    assert tree_hashes(tmp_path) == before  # no head, no temporary folder beside it


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real folder export (knn) of a tiny base, made by the CLI."""
    from fault_fixtures import tiny_base_file, tiny_images

    root = tmp_path_factory.mktemp("export")
    images = tiny_images(root / "imgs", broken=False)
    base = tiny_base_file(root / "base.keras")
    result = run_cli("extract", images, "--base", base, "-o", root / "c.h5", "--quiet")
    assert result.exit_code == 0, result.output
    result = run_cli("export", root / "c.h5", "--head", "knn", "-o", root / "knn", "--sample", 0)
    assert result.exit_code == 0, result.output
    return root / "knn", images


def _edit(exported, tmp_path, change):
    folder = shutil.copytree(exported, tmp_path / "knn")
    metadata = json.loads((folder / "model.json").read_text())
    change(folder, metadata)
    (folder / "model.json").write_text(json.dumps(metadata))
    return folder


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda _, m: m.update(classes=["a"]), "names 1 classes but the model gives 2 scores"),
        (lambda _, m: m.update(classes=["a", "b", "c"]), "names 3 classes but the model gives 2"),
        (lambda _, m: m.update(classes="ab"), "classes must be a list of distinct names"),
        (lambda _, m: m.update(classes=["a", "a"]), "classes must be a list of distinct names"),
        (lambda _, m: m.update(input_shape=[8, "x"]), "input_shape must be [height, width"),
        (lambda f, _: (f / "labels.txt").write_text("b\na\n"), "labels.txt does not list"),
    ],
    ids=["fewer-classes", "more-classes", "string", "repeated", "shape", "labels"],
)
def test_an_export_whose_metadata_disagrees_with_its_model_is_one_line(
    exported, tmp_path, change, named
):
    folder = _edit(exported[0], tmp_path, change)
    before = tree_hashes(tmp_path)
    out = tmp_path / "p.csv"
    one_line(run_cli("predict", folder, exported[1], "-o", out), str(folder), named)
    assert tree_hashes(tmp_path) == before and not out.exists()
