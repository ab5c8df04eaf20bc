"""The one atomic write: every file or folder the package writes appears by one rename.

``with atomic_path(final) as tmp:`` hands out a path in a fresh hidden folder beside
``final`` (same file system, same name, so writers that go by the suffix still work). Write a
file *or* a folder there. When the block ends without an exception, a folder gets its
manifest (:func:`~bottleneck_transfer.manifests.seal_folder`: the files written, with sizes
and hashes), everything under ``tmp`` is fsync'ed, ``os.replace`` moves it to ``final`` and
the folder holding ``final`` is fsync'ed, so after a crash ``final`` is either the old
content or the whole new one. When the block raises, nothing reaches ``final`` and the
temporary folder is removed.

A folder cannot be renamed over a folder, so an existing folder at ``final`` is first
removed by its own manifest (:func:`~bottleneck_transfer.manifests.remove_entry`: only what
the package wrote there, and only when that is all it holds; otherwise nothing is replaced
and :class:`~bottleneck_transfer.manifests.EntryError` says why): in between, ``final`` is
briefly absent, never partly written. A file never replaces a folder, nor a folder a file
(``OSError``, as ``os.replace``).

A failure to write (no permission, a read-only or full disk, the file size limit, a file
where a folder is expected) is a :class:`~bottleneck_transfer.errors.WriteError` naming
``final`` and what to do (:func:`write_error`): the CLI prints it as one line.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bottleneck_transfer.errors import BottleneckError, WriteError
from bottleneck_transfer.manifests import (
    MANIFEST_NAME,
    TEMP_SUFFIX,
    EntryError,
    remove_entry,
    seal_folder,
)

__all__ = [
    "TEMP_SUFFIX",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "make_folder",
    "write_error",
]


#: Failures that are about writing whatever file they name: the disk, its limits, its mode.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
#: What to do about a failed write, by errno (else: choose another path).
_ADVICE = {
    errno.ENOSPC: "free some space on that disk or write somewhere else",
    errno.EDQUOT: "free some space (disk quota exceeded) or write somewhere else",
    errno.EFBIG: "the file exceeds the file size limit (ulimit -f) or the file system's; "
    "raise the limit or write somewhere else",
    errno.EROFS: "that file system is read-only: write somewhere else",
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EEXIST: "a file stands where a folder is needed: choose another path",
    errno.EISDIR: "a folder stands where the file goes: choose another path",
}


def write_error(final: str | Path, exc: OSError) -> WriteError:
    """A one-line :class:`~bottleneck_transfer.errors.WriteError` for ``exc`` while writing
    ``final``, saying what to do; it keeps ``exc``'s ``errno`` and ``strerror``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    in_the_way = exc.filename and _absolute(exc.filename) in _absolute(final).parents
    culprit = f" ({exc.filename})" if in_the_way else ""
    advice = _ADVICE.get(exc.errno, "choose another path")
    error = WriteError(f"cannot write {final}: {reason}{culprit}; {advice}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, str(final)
    return error


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _concerns(final: Path, exc: OSError) -> bool:
    """Whether an ``OSError`` raised while writing ``final`` is a failure to write it."""
    if isinstance(exc, BottleneckError):
        return False  # already says what it is
    if exc.errno in WRITE_ERRNOS:
        return True
    if not exc.filename:
        return False
    named, final = _absolute(exc.filename), _absolute(final)
    if named == final or named in final.parents:
        return True
    inside = named.relative_to(final.parent).parts if named.is_relative_to(final.parent) else ()
    return bool(inside) and (inside[0] == final.name or inside[0].startswith(f".{final.name}."))


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``final``; move it into place on success.

    Raises :class:`~bottleneck_transfer.errors.WriteError` when ``final`` cannot be written
    (:func:`write_error`); other errors raised in the block pass through unchanged.

    Parameters
    ----------
    final : str or Path
        Where the file or folder must appear. Its parent folder is created if missing.

    Yields
    ------
    Path
        ``<parent>/.<name>.<random>.tmp/<name>``: write a file or a folder there.
    """
    final = Path(final)
    try:
        with _atomic_path(final) as tmp:
            yield tmp
    except OSError as exc:
        if _concerns(final, exc):
            raise write_error(final, exc) from exc
        raise


@contextmanager
def _atomic_path(final: Path) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=final.parent))
    try:
        tmp = holder / final.name
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {final}")
        _seal(tmp)
        _fsync_tree(tmp)
        if final.is_dir() and tmp.is_dir():
            _clear_folder(final, holder)
        os.replace(tmp, final)
        _fsync(final.parent)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _seal(tmp: Path) -> None:
    """Give a folder written here its manifest (the files it was written with), unless it
    has one: what the package writes it can later check, and replace or remove exactly."""
    if tmp.is_dir() and not tmp.is_symlink() and not (tmp / MANIFEST_NAME).exists():
        seal_folder(tmp)


def _clear_folder(final: Path, holder: Path) -> None:
    """Make way for a new folder at ``final``: a link is moved aside (into ``holder``, deleted
    with it; what it points to is not touched), an empty folder removed, any other folder
    removed by its manifest, or refused."""
    if final.is_symlink():
        os.replace(final, holder / f"{final.name}.old")
        return
    if not any(final.iterdir()):
        final.rmdir()
        return
    left = remove_entry(final).left  # all or nothing
    if left:
        path, reason = left[0]
        raise EntryError(
            f"{final} is not replaced ({path}: {reason}); remove it yourself or write elsewhere"
        )


def make_folder(path: str | Path) -> Path:
    """Create the folder ``path`` and its parents if missing; returns it.

    Raises
    ------
    WriteError
        If it cannot be created (naming ``path`` and what to do, as :func:`write_error`).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from exc
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync(path: Path) -> None:
    """Flush one file's or folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync a file, or every file and folder under a folder (folders after their entries)."""
    if path.is_dir():
        for root, folders, files in os.walk(path, topdown=False):
            for name in files:
                _fsync(Path(root, name))
            for name in folders:
                _fsync(Path(root, name))
    _fsync(path)
