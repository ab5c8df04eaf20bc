"""The one atomic write: every file or folder the package writes appears by one rename.

``with atomic_path(final) as tmp:`` hands out a path in a fresh hidden folder beside
``final`` (same file system, same name, so writers that go by the suffix still work). Write a
file *or* a folder there. When the block ends without an exception, a folder gets its
manifest (:func:`~bottleneck_transfer.entries.seal_folder`: the files written, with sizes
and hashes), everything under ``tmp`` is fsync'ed, ``os.replace`` moves it to ``final`` and
the folder holding ``final`` is fsync'ed, so after a crash ``final`` is either the old
content or the whole new one. When the block raises, nothing reaches ``final`` and the
temporary folder is removed.

A folder cannot be renamed over a folder, so an existing folder at ``final`` is first
removed by its own manifest (:func:`~bottleneck_transfer.entries.remove_entry`: only what
the package wrote there, and only when that is all it holds; otherwise nothing is replaced
and :class:`~bottleneck_transfer.entries.EntryError` says why): in between, ``final`` is
briefly absent, never partly written. A file never replaces a folder, nor a folder a file
(``OSError``, as ``os.replace``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Suffix of the hidden temporary folders (``.<name>.<random>.tmp``) beside a final path.
TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``final``; move it into place on success.

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
    if tmp.is_dir() and not tmp.is_symlink():
        from bottleneck_transfer.entries import MANIFEST_NAME, seal_folder  # it writes here

        if not (tmp / MANIFEST_NAME).exists():
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
    from bottleneck_transfer.entries import EntryError, remove_entry  # it writes here

    left = remove_entry(final).left  # all or nothing
    if left:
        path, reason = left[0]
        raise EntryError(
            f"{final} is not replaced ({path}: {reason}); remove it yourself or write elsewhere"
        )


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
