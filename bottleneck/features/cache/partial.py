"""Partial caches: the folder of fsync'ed, renamed chunk files a cache is written to until it
is complete, its lock, and the checks that a resume continues it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.entries import (
    MANIFEST_NAME,
    EntryManifest,
    remove_entry,
    remove_temporaries,
)
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.cache.format import is_view
from filelock import FileLock, Timeout

#: The entry manifest of every partial folder (:mod:`bottleneck_transfer.entries`): it lists
#: each file as it is written, and only what it lists is ever deleted.
PARTIAL_MARKER = MANIFEST_NAME


class CacheBusyError(CacheError):
    """Another process holds the lock of the cache (it is writing or pruning it)."""


def partial_path(path: str | Path) -> Path:
    """The folder a cache is written to until it is complete."""
    return Path(f"{path}.partial")


def write_error(path: str | Path, exc: OSError) -> CacheError:
    """A one-line error for an ``OSError`` while writing ``path``, saying what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space, then rerun the same command: it resumes from what was kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "write the cache to a folder you can write to"
    else:
        todo = "fix the folder, then rerun the same command"
    return CacheError(f"cannot write {path}: {reason}; {todo}")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into :func:`write_error` for ``path``."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from exc


@contextmanager
def writer_lock(path: str | Path, wait: Callable[[str], Any] | None = None) -> Iterator[None]:
    """Hold ``<path>.lock`` for the block: one process writes (or prunes) a cache at a time.

    When another process holds it: with ``wait``, call ``wait(message)`` once and block until
    it is free; without, raise :class:`CacheBusyError`.
    """
    lock = FileLock(f"{path}.lock")
    with writing(lock.lock_file):
        try:
            lock.acquire(timeout=0)
        except Timeout:
            message = f"another extraction is writing {path} right now (lock {lock.lock_file})"
            if wait is None:
                raise CacheBusyError(
                    f"{message}: wait for it to finish or write to another file with -o"
                ) from None
            wait(f"{message}; waiting for it to finish")
            lock.acquire()
    try:
        yield
    finally:
        lock.release()
        Path(lock.lock_file).unlink(missing_ok=True)


#: What reading a damaged ``.npz`` raises (truncated, bit-flipped, emptied, not a zip).
_DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, CRC-checked; raises one of ``_DAMAGED``."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _load_chunk(chunk: Path) -> dict[str, np.ndarray]:
    """A committed chunk's arrays, or a CacheError saying how to recover."""
    try:
        return _read_npz(chunk)
    except _DAMAGED as exc:
        raise CacheError(
            f"{chunk} is damaged ({exc}); rerun the same command: it redoes that part"
        ) from exc


def _good_chunks(
    files: Sequence[Path],
    dim: int,
    item_ids: Sequence[str] | None,
    entry: EntryManifest | None = None,
) -> tuple[list[Path], tuple[int, int, int], str | None]:
    """The leading chunks that are numbered without gaps, readable and account for their
    items (and, given the folder's ``entry`` manifest, are as written); their rows, failures
    and items done; and what is wrong with the next one."""
    good: list[Path] = []
    rows = failed = done = 0
    for number, chunk in enumerate(files):
        expected = f"chunk-{number:06d}.npz"
        if chunk.name != expected:
            return good, (rows, failed, done), f"{expected} is missing"
        changed = [] if entry is None else entry.problems([chunk.name])
        if changed:
            why = changed[0].removeprefix(f"{chunk.name} ")
            return good, (rows, failed, done), f"{chunk.name} is damaged or changed ({why})"
        try:
            data = _read_npz(chunk)
            n, k, end = len(data["ids"]), len(data["failed_ids"]), int(data["items_done"])
            shapes = (data["features"].shape, data["labels"].shape, data["failed_reasons"].shape)
            if shapes != ((n, dim), (n,), (k,)):
                raise ValueError(f"its arrays disagree: {shapes} for {n} ids, {k} failures")
            plain = data["ids"][~is_view(data["ids"])].tolist()  # views cover no item
            if len(plain) + k != end - done:
                raise ValueError(f"{len(plain)} rows + {k} failures for items {done}-{end}")
            covered = plain + data["failed_ids"].tolist()
            if item_ids is not None and sorted(covered) != sorted(item_ids[done:end]):
                raise ValueError(f"its ids are not those of items {done}-{end}")
        except _DAMAGED as exc:
            return good, (rows, failed, done), f"{chunk.name} is damaged or inconsistent ({exc})"
        good.append(chunk)
        rows, failed, done = rows + n, failed + k, end
    return good, (rows, failed, done), None


def partial_progress(path: str | Path) -> dict[str, int]:
    """Committed rows, failures and source items of an unfinished extraction (good chunks)."""
    folder = Path(path)
    try:
        dim = int(json.loads((folder / "meta.json").read_text())["dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"rows": 0, "failed": 0, "items_done": 0}
    _, (rows, failed, items), _ = _good_chunks(sorted(folder.glob("chunk-*.npz")), dim, None)
    return {"rows": rows, "failed": failed, "items_done": items}


def check_partial_folder(folder: Path) -> None:
    """Refuse anything but a partial folder this package wrote: never follow, never guess.

    Raises
    ------
    CacheError
        For a symbolic link, a file, a folder without :data:`PARTIAL_MARKER` (unless empty
        or being marked: holding only the marker's temporary), or one holding anything its
        marker does not list.
    """
    if folder.is_symlink():
        raise CacheError(
            f"{folder} is a symbolic link; bottleneck does not follow links where it keeps "
            "unfinished extractions: remove the link (what it points to is not touched)"
        )
    if not folder.is_dir():
        raise CacheError(
            f"{folder} is a file, not an unfinished extraction: move it away or write the "
            "cache to another file"
        )
    left = remove_entry(folder, dry_run=True).left
    if left and left[0][0] == folder:
        raise CacheError(
            f"{folder} was not written by bottleneck ({left[0][1]}): move it away or write "
            "the cache to another file"
        )
    if left:
        names = ", ".join(str(path.relative_to(folder)) for path, _ in left[:3])
        raise CacheError(
            f"{folder} holds files bottleneck did not write ({names}): move them out, then rerun"
        )


def discard_partial(path: str | Path) -> None:
    """Remove an unfinished extraction's folder by its manifest (see
    :func:`~bottleneck_transfer.entries.remove_entry`), its manifest last.

    Raises
    ------
    CacheError
        If ``path`` is not a partial folder this package wrote (see
        :func:`check_partial_folder`); nothing is removed then.
    """
    folder = Path(path)
    if not (folder.exists() or folder.is_symlink()):
        return
    check_partial_folder(folder)
    with writing(folder):
        left = remove_entry(folder).left
    if left:
        raise CacheError(f"{left[0][0]} {left[0][1]}: left in place; move it out, then rerun")


def _discard_stale_temps(final: Path) -> None:
    """Remove atomic.py temporaries of ``final`` left by a killed assembly (only those).

    Only call while holding :func:`writer_lock` of ``final``: no one else writes them then.
    """
    remove_temporaries(final)


def _reserve(path: Path, size: int, fd: int | None = None) -> None:
    """Reserve ``size`` bytes of disk for ``path`` (or the open ``fd``), or raise ENOSPC."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: check the free space instead
        if shutil.disk_usage(path.parent).free < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return
    own = fd is None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644) if own else fd
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        if own:
            os.close(fd)


def _save_manifest(path: Path, manifest: dict[str, Sequence]) -> None:
    """Write the items' stat, declared groups and multi-label or regression targets
    (``manifest.npz``) to ``path`` (a temporary)."""
    declared = {k: np.asarray(manifest[k], dtype=str) for k in ("group", "target") if k in manifest}
    np.savez(
        path,
        ids=np.asarray(manifest["ids"], dtype=str),
        size=np.asarray(manifest["size"], np.int64),
        mtime_ns=np.asarray(manifest["mtime_ns"], np.int64),
        **declared,
    )


def _read_manifest(folder: Path) -> dict[str, np.ndarray] | None:
    """The partial folder's manifest (with ``group`` when declared), or None if it has none
    (or it is damaged)."""
    try:
        data = _read_npz(folder / "manifest.npz")
        keys = ("ids", "size", "mtime_ns", "group", "target")
        return {key: data[key] for key in keys if key in data}
    except _DAMAGED:
        return None
