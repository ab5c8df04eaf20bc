"""Fault injection: every way an extraction can be stopped or damaged, then the same call.

Each case ends in a cache equal to an uninterrupted run's, or in a one-line
:class:`BottleneckError` with nothing final written (and then, where the error says so,
the advised command gives the equal cache).

* stops at every commit point and at every step of the assembly: SIGKILL (emulated by
  freezing the files as they are at that instant and resuming from the copy; also inside
  each of the 9 writes), SIGINT and SIGTERM (real signals, delivered in this process);
* every piece of a partial extraction deleted, truncated, corrupted or emptied;
* a full disk (``OSError(ENOSPC)``) at every write, and a read-only output folder;
* the CLI's exit status and line after a signal, in this process; the three signals for
  real, in a child process running the CLI (``slow``: one interpreter each).

The source is 16 tiny PNGs and one broken file, the base a 4-feature convolution: 5 batches
of 4, one commit after each (``BOTTLENECK_COMMIT_SECONDS=0``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer import atomic
from bottleneck_transfer.errors import CacheError, Interrupted, StaleCacheError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache import partial as partial_module
from bottleneck_transfer.features.cache import writer as cache_module
from bottleneck_transfer.features.cache.partial import PARTIAL_MARKER, partial_path
from bottleneck_transfer.features.extract import extract
from fault_fixtures import tiny_base_file, tiny_images
from feature_checks import assert_features_close
from PIL import Image

BATCH = 4
N_ITEMS = 17  # 16 images + 1 broken file
COMMITS = 5  # ceil(17 / 4): one per batch
CHUNKS = 5  # chunks streamed into the HDF5 at assembly


class _Killed(BaseException):
    """Stops the extraction where a SIGKILL would (no handler saves anything more)."""


def _kill() -> None:
    raise _Killed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The source folder, the base file, and the reference cache of an uninterrupted run."""
    root = tmp_path_factory.mktemp("faults")
    source = tiny_images(root / "images")
    base = load_base(tiny_base_file(root / "tiny.keras"))
    reference = root / "reference.h5"
    extract(source, base, reference, batch_size=BATCH, progress=False)
    return {"source": source, "base": base, "base_file": root / "tiny.keras", "ref": reference}


@pytest.fixture(autouse=True)
def _commit_every_batch(monkeypatch):
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")


@pytest.fixture
def ctrl_c():
    """SIGINT raises KeyboardInterrupt, as Ctrl-C at a terminal does, even where this run
    inherited SIGINT ignored (a background job of a non-interactive shell, as in CI, and the
    xdist workers it starts): Python then keeps it ignored and the signal would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _extract(world, out, **options):
    return extract(world["source"], world["base"], out, batch_size=BATCH, progress=False, **options)


def _assert_equal_to_reference(world, out: Path) -> None:
    """``out`` holds what an uninterrupted run holds, and nothing is left beside it."""
    with FeatureCache.open(world["ref"]) as ref, FeatureCache.open(out) as got:
        np.testing.assert_array_equal(got.features, ref.features)
        np.testing.assert_array_equal(got.labels, ref.labels)
        assert got.ids == ref.ids and got.failed == ref.failed
        assert got.fingerprint == ref.fingerprint
    assert sorted(os.listdir(out.parent)) == [out.name]


def _assert_one_line_and_nothing_final(error: BaseException, out: Path) -> None:
    assert "\n" not in str(error)
    assert not out.exists()


# --- stopped at every commit point and every step of the assembly --------------------------

#: Where a stop is injected: after the k-th commit, or during finalize (before each of the
#: two disk reservations, before each chunk is streamed into the HDF5 file, before the file
#: is cut to size, after the rename).
STOPS = (
    [("commit", k) for k in range(1, COMMITS + 1)]
    + [("assembly-reserve", 1), ("assembly-reserve", 2)]
    + [("assembly-chunk", j) for j in range(1, CHUNKS + 1)]
    + [("assembly-truncate", 1), ("assembly-renamed", 1)]
)


def _at(monkeypatch, where: str, nth: int, action) -> None:
    """Run ``action()`` at the ``nth`` time the extraction reaches ``where``."""
    calls = {"n": 0}

    def hit() -> None:
        calls["n"] += 1
        if calls["n"] == nth:
            action()

    if where == "write":
        real_fsync = atomic._fsync_tree

        def fsync_tree(path):
            hit()
            return real_fsync(path)

        monkeypatch.setattr(atomic, "_fsync_tree", fsync_tree)
        return
    if where == "commit":
        real_commit = cache_module.CacheWriter.commit

        def commit(self):
            pending = bool(self._pending)
            real_commit(self)
            if pending:
                hit()

        monkeypatch.setattr(cache_module.CacheWriter, "commit", commit)
        return
    name = {
        "assembly-reserve": "_reserve",
        "assembly-chunk": "_load_chunk",
        "assembly-truncate": "truncate",
        "assembly-renamed": "discard_partial",
    }[where]
    owner = cache_module.os if name == "truncate" else cache_module
    real = getattr(owner, name)
    real_finalize = cache_module.CacheWriter.finalize
    state = {"assembling": False}

    def finalize(self, *args, **kwargs):
        state["assembling"] = True
        try:
            return real_finalize(self, *args, **kwargs)
        finally:
            state["assembling"] = False

    def wrapped(*args, **kwargs):
        if state["assembling"]:
            hit()
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module.CacheWriter, "finalize", finalize)
    monkeypatch.setattr(owner, name, wrapped)


#: SIGKILL also lands inside each of the 9 writes (the temporary file written, not yet
#: renamed): the marker, manifest, meta, five chunks and the final cache.
KILLS = STOPS + [("write", k) for k in range(1, 10)]


@pytest.mark.parametrize(("where", "nth"), KILLS, ids=[f"{w}-{n}" for w, n in KILLS])
def test_sigkill_then_same_call_gives_the_same_cache(world, tmp_path, monkeypatch, where, nth):
    work, frozen = tmp_path / "work", tmp_path / "frozen"
    work.mkdir()

    def kill():
        shutil.copytree(work, frozen, symlinks=True)  # the files exactly as SIGKILL leaves them
        raise _Killed

    _at(monkeypatch, where, nth, kill)
    with pytest.raises(_Killed):
        _extract(world, work / "c.h5")
    monkeypatch.undo()
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    assert not (frozen / "c.h5").exists() or where == "assembly-renamed"
    if where == "write":  # the kill left a temporary (atomic.py's) behind
        assert any(p.name.endswith(atomic.TEMP_SUFFIX) for p in frozen.rglob(".*"))
    result = _extract(world, frozen / "c.h5")
    assert result.rows == N_ITEMS - 1
    _assert_equal_to_reference(world, frozen / "c.h5")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("where", "nth"), STOPS, ids=[f"{w}-{n}" for w, n in STOPS])
def test_signal_says_what_was_kept_and_same_call_resumes(
    world, tmp_path, monkeypatch, where, nth, sig, ctrl_c
):
    out = tmp_path / "c.h5"
    handler = signal.getsignal(signal.SIGTERM)
    _at(monkeypatch, where, nth, lambda: signal.raise_signal(sig))
    with pytest.raises(Interrupted) as caught:
        _extract(world, out)
    assert "\n" not in str(caught.value)
    assert signal.getsignal(signal.SIGTERM) == handler
    if where == "assembly-renamed":  # the cache was complete: only the cleanup was stopped
        assert str(caught.value).startswith(f"after {out} was written")
    else:
        assert re.fullmatch(
            rf"(while assembling {out}: )?\d+ rows \(\d+ of 17 images\) are kept in "
            rf"{partial_path(out)}; run the same command again to resume",
            str(caught.value),
        )
        assert not out.exists()
    monkeypatch.undo()
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    _extract(world, out)
    _assert_equal_to_reference(world, out)


VIEWS = {"augment": "flip,crop,rotate,color", "views": 2, "seed": 1}


@pytest.mark.parametrize(("where", "nth"), [("commit", 2), ("assembly-chunk", 3)])
def test_sigkill_with_views_then_resumed_in_other_batches_gives_the_same_cache(
    world, tmp_path, monkeypatch, where, nth
):
    reference = tmp_path / "ref.h5"
    _extract(world, reference, **VIEWS)
    work, frozen = tmp_path / "work", tmp_path / "frozen"
    work.mkdir()

    def kill():
        shutil.copytree(work, frozen, symlinks=True)
        raise _Killed

    _at(monkeypatch, where, nth, kill)
    with pytest.raises(_Killed):
        _extract(world, work / "c.h5", **VIEWS)
    monkeypatch.undo()
    # an image's views depend on its id alone: resuming with batches of 3 changes nothing
    result = extract(
        world["source"], world["base"], frozen / "c.h5", batch_size=3, progress=False, **VIEWS
    )
    assert result.resumed_from > 0
    with FeatureCache.open(reference) as ref, FeatureCache.open(frozen / "c.h5") as got:
        assert got.ids == ref.ids and got.fingerprint == ref.fingerprint
        np.testing.assert_array_equal(got.source_rows, ref.source_rows)
        assert_features_close(got.features, ref.features)
        assert len(got) == 3 * (N_ITEMS - 1)


# --- every piece of a partial extraction damaged ---------------------------------------------


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGES = {"delete": _delete, "truncate": _truncate, "corrupt": _corrupt, "empty": _empty}
PIECES = [
    PARTIAL_MARKER,
    "meta.json",
    "manifest.npz",
    "chunk-000000.npz",
    "chunk-000001.npz",
    "chunk-000002.npz",
]


def _expected(piece: str, damage: str):
    """What resuming gives: the equal cache, or the one-line error (and how to recover)."""
    if piece == PARTIAL_MARKER:  # its manifest: without it, nothing there is known to be ours
        return CacheError, "was not written by bottleneck", None
    if piece == "meta.json":
        return CacheError, "meta.json is unreadable", {"force": True}
    return None, None, None


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("piece", PIECES)
def test_damaged_piece_then_same_call(world, tmp_path, monkeypatch, piece, damage):
    out = tmp_path / "c.h5"
    _at(monkeypatch, "commit", 3, _kill)
    with pytest.raises(_Killed):
        _extract(world, out)
    monkeypatch.undo()
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    DAMAGES[damage](partial_path(out) / piece)
    error, words, recover = _expected(piece, damage)
    if error is None:
        _extract(world, out)
        _assert_equal_to_reference(world, out)
        return
    with pytest.raises(error, match=words) as caught:
        _extract(world, out)
    _assert_one_line_and_nothing_final(caught.value, out)
    if recover is not None:
        _extract(world, out, **recover)
        _assert_equal_to_reference(world, out)


# --- a full disk at every write; a read-only folder ------------------------------------------

#: Every write of an extraction: the marker, manifest, meta, five chunks, the final cache
#: (``atomic`` writes), and the disk space reserved for the assembly.
WRITES = [("atomic", k) for k in range(1, 10)] + [("reserve", 1)]


@pytest.mark.parametrize(("kind", "nth"), WRITES, ids=[f"{k}-{n}" for k, n in WRITES])
def test_full_disk_is_one_line_and_the_same_call_resumes(world, tmp_path, monkeypatch, kind, nth):
    out = tmp_path / "c.h5"
    calls = {"n": 0}
    real = atomic._fsync_tree if kind == "atomic" else os.posix_fallocate

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    if kind == "atomic":
        monkeypatch.setattr(atomic, "_fsync_tree", full)
    else:
        monkeypatch.setattr(cache_module.os, "posix_fallocate", full)
    words = "No space left on device; free some space, then rerun the same command"
    with pytest.raises(CacheError, match=words) as caught:
        _extract(world, out)
    _assert_one_line_and_nothing_final(caught.value, out)
    monkeypatch.undo()
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    _extract(world, out)
    _assert_equal_to_reference(world, out)


def test_read_only_output_folder_is_one_line(world, tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), self.lock_file)

    monkeypatch.setattr(partial_module.FileLock, "acquire", read_only)
    words = r"cannot write .*c\.h5\.lock: Read-only file system; write the cache to a folder"
    with pytest.raises(CacheError, match=words) as caught:
        _extract(world, tmp_path / "c.h5")
    _assert_one_line_and_nothing_final(caught.value, tmp_path / "c.h5")


def test_a_changed_source_names_the_file_and_keeps_the_partial(world, tmp_path, monkeypatch):
    out = tmp_path / "c.h5"
    _at(monkeypatch, "commit", 2, _kill)
    with pytest.raises(_Killed):
        _extract(world, out)
    monkeypatch.undo()
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    Image.new("RGB", (12, 10), "red").save(world["source"] / "b" / "99.png")
    try:
        with pytest.raises(StaleCacheError, match=r"1 file\(s\) added: b/99.png") as caught:
            _extract(world, out)
        _assert_one_line_and_nothing_final(caught.value, out)
    finally:
        (world["source"] / "b" / "99.png").unlink()
    _extract(world, out)
    _assert_equal_to_reference(world, out)


# --- real signals to a child process running the CLI ------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    # Ctrl-C as at a terminal, even where the test run inherited SIGINT ignored (see ctrl_c).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from bottleneck_transfer.features.cache import CacheWriter
    from bottleneck_transfer.cli.app import main

    sig, nth = signal.Signals[sys.argv[1]], int(sys.argv[2])
    real, count = CacheWriter.commit, [0]

    def commit(self):
        pending = bool(self._pending)
        real(self)
        count[0] += pending
        if pending and count[0] == nth:
            os.kill(os.getpid(), sig)

    CacheWriter.commit = commit
    sys.argv = ["bottleneck", "extract", *sys.argv[3:]]
    main()
    """
)


def _interrupted_line(stderr: str, out: Path) -> int:
    """The images kept, from the CLI's one ``Interrupted:`` line on ``stderr``."""
    lines = [line for line in stderr.splitlines() if line.startswith("Interrupted: ")]
    assert len(lines) == 1, stderr
    match = re.fullmatch(
        rf"Interrupted: (\d+) rows \((\d+) of 17 images\) are kept in "
        rf"{re.escape(str(partial_path(out)))}; run the same command again to resume",
        lines[0],
    )
    assert match, lines[0]
    return int(match.group(2))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_cli_exits_130_with_one_line(world, tmp_path, monkeypatch, sig, ctrl_c):
    """The CLI after a signal, in this process: status 130, one line naming what was kept."""
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    out = tmp_path / "c.h5"
    _at(monkeypatch, "commit", 2, lambda: signal.raise_signal(sig))
    args = [str(world["source"]), "--base", str(world["base_file"]), "-o", str(out)]
    done = CliRunner().invoke(cli, ["extract", *args, "--batch-size", "4", "--quiet"])
    assert done.exit_code == 130, done.output
    assert "Traceback" not in done.stderr
    assert _interrupted_line(done.stderr, out) == 8  # two commits of 4 images
    assert not out.exists()


@pytest.mark.slow  # three interpreters start Keras
def test_real_signals_to_the_cli(world, tmp_path):
    """SIGKILL, SIGTERM and SIGINT to ``bottleneck extract`` after its second commit."""
    env = {**os.environ, "BOTTLENECK_COMMIT_SECONDS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = {}
    for name in ("SIGKILL", "SIGTERM", "SIGINT"):
        out = tmp_path / name / "c.h5"
        args = [str(world["source"]), "--base", str(world["base_file"]), "-o", str(out)]
        children[name] = (
            out,
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, name, "2", *args, "--batch-size", "4", "--quiet"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    for name, (out, child) in children.items():
        _, stderr = child.communicate(timeout=300)
        assert not out.exists()
        kept = 8  # two commits of 4 images
        if name == "SIGKILL":
            assert child.returncode == -signal.SIGKILL
        else:
            assert child.returncode == 130, stderr
            assert "Traceback" not in stderr
            kept = _interrupted_line(stderr, out)
        result = _extract(world, out)
        assert result.resumed_from == kept
        _assert_equal_to_reference(world, out)
