"""The HDF5 feature cache, format version 1: crash-safe writing with resume, reading.

Layout (see README, "Cache format"):

``/features`` float32 (N, D), contiguous (float16, or compressed, when asked) ·
``/labels`` int32 (N,) · ``/ids`` str (N,) ·
``/failed/ids``, ``/failed/reasons`` str · ``/manifest/{ids,size,mtime_ns}`` (file sources) ·
``/views/source_row`` int64 (N,) (caches with augmented views: after the plain rows come the
rows ``<id>#view0`` of every image in order, then ``#view1``, ... (:func:`assembled_rows`);
each row's plain row, a plain row's being its own index) ·
``/groups`` str (N,) (optional: a manifest's ``--groups`` column, e.g. a patient; each row's
image's value, ``""`` for none; rows sharing a value stay on one side of every split) ·
root attrs ``format``, ``format_version``, ``complete``, ``fingerprint``, ``identity``,
``provenance``, ``class_names`` (JSON).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from bottleneck_transfer import limits
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.display import Display, class_rows
from bottleneck_transfer.entries import (
    MANIFEST_NAME,
    EntryManifest,
    remove_entry,
    remove_temporaries,
)
from bottleneck_transfer.errors import CacheError, ResumeWarning, StaleCacheError
from bottleneck_transfer.features.choices import COMPRESSIONS, STORE_DTYPES
from bottleneck_transfer.fingerprint import diff_keys
from filelock import FileLock, Timeout

FORMAT = "bottleneck-cache"
FORMAT_VERSION = 1
#: The entry manifest of every partial folder (:mod:`bottleneck_transfer.entries`): it lists
#: each file as it is written, and only what it lists is ever deleted.
PARTIAL_MARKER = MANIFEST_NAME
_STR = h5py.string_dtype("utf-8")
#: Features whose magnitude exceeds this overflow float32 once squared (scaling, kernels).
FEATURE_LIMIT = float(np.sqrt(np.finfo(np.float32).max))
#: The id of an augmented view row: ``<plain id>#view<k>``.
_VIEW_ID = re.compile(r"^(?P<plain>.*)#view(?P<k>\d+)$")


def view_id(item_id: str, k: int) -> str:
    """The id of view ``k`` of the image ``item_id``."""
    return f"{item_id}#view{k}"


def is_view(ids: Sequence[str]) -> np.ndarray:
    """bool (N,): which ids are augmented views (``<id>#view<k>``)."""
    return np.asarray([_VIEW_ID.match(i) is not None for i in ids], dtype=bool).reshape(len(ids))


def view_count(identity: dict) -> int:
    """K: the augmented views per image of a cache with this identity (0: a plain cache)."""
    return int(identity.get("views", {}).get("count", 0))


def image_row_ids(item_id: str, count: int) -> list[str]:
    """The ids of one image's rows: its plain row, then its ``count`` views."""
    return [item_id, *(view_id(item_id, k) for k in range(count))]


def assembled_rows(ids: Sequence[str], first: int, n_plain: int, count: int) -> np.ndarray:
    """int64: where a chunk's rows go in the assembled cache, whatever their order in it.

    The layout of a cache with ``count`` views per image: the ``n_plain`` plain rows in source
    order, then view 0 of each of them in that order, then view 1, ... (view ``k`` of plain
    row ``p`` is row ``n_plain * (k + 1) + p``); the chunk's plain rows start at ``first``.

    Raises
    ------
    CacheError
        A chunk whose rows are not its plain rows and ``count`` views of each.
    """
    matches = [_VIEW_ID.match(i) for i in ids]
    plain = [i for i, match in zip(ids, matches, strict=True) if match is None]
    where = {i: first + rank for rank, i in enumerate(plain)}
    out = np.empty(len(ids), np.int64)
    for row, (i, match) in enumerate(zip(ids, matches, strict=True)):
        k = -1 if match is None else int(match["k"])
        image = i if match is None else match["plain"]
        if image not in where or k >= count:
            raise CacheError(
                f"view row {i!r} has no plain row {image!r} beside it (or k >= {count}); "
                "rerun with --force"
            )
        out[row] = n_plain * (k + 1) + where[image]
    if len(ids) != len(plain) * (count + 1) or len(set(ids)) != len(ids):
        raise CacheError(
            f"{len(ids)} rows for {len(plain)} images are not each image and its {count} "
            "views; rerun with --force"
        )
    return out


def view_source_rows(n_plain: int, count: int) -> np.ndarray:
    """int64 (n_plain * (count + 1),): ``/views/source_row`` of :func:`assembled_rows`'s
    layout (each row's plain row, a plain row's own index)."""
    return np.tile(np.arange(n_plain, dtype=np.int64), count + 1)


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


def _json_attr(handle: h5py.File, name: str, default: Any = None) -> Any:
    raw = handle.attrs.get(name)
    if raw is None:
        return default
    where = f"{handle.filename}: attribute {name!r}"
    todo = "re-extract the cache with --force"
    if not isinstance(raw, (str, bytes)):
        raise CacheError(f"{where} is not JSON text ({type(raw).__name__}); {todo}")
    return limits.load_json(raw, where, CacheError, todo)


def manifest_changes(before: dict | None, after: dict | None) -> list[str]:
    """Sentences naming the files added, removed or modified between two manifests."""
    if before is None or after is None:
        return []
    old, new = (
        dict(zip(m["ids"], zip(m["size"], m["mtime_ns"], strict=True), strict=True))
        for m in (before, after)
    )
    changed = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "modified": sorted(k for k in set(old) & set(new) if tuple(old[k]) != tuple(new[k])),
    }
    return [
        f"{len(ids)} file(s) {what}: "
        + ", ".join(ids[:5])
        + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")
        for what, ids in changed.items()
        if ids
    ]


def describe_difference(
    path: str | Path,
    old_identity: dict,
    new_identity: dict,
    old_manifest: dict | None = None,
    new_manifest: dict | None = None,
) -> str:
    """A sentence naming the fields (and source files) in which two cache inputs differ."""
    keys = diff_keys(old_identity, new_identity) or ["fingerprint"]
    files = manifest_changes(old_manifest, new_manifest)
    changed = f"; {'; '.join(files)}" if files else ""
    return f"{path} was made from different inputs (differs in: {', '.join(keys)}{changed})"


def unusable_rows(features: Any, block_rows: int | None = None) -> np.ndarray:
    """Indices of the rows holding NaN, Inf, or values beyond :data:`FEATURE_LIMIT`.

    ``features`` is an array or an HDF5 dataset, read ``block_rows`` rows at a time
    (default: about 4M values).
    """
    step = block_rows or max(1, 2**22 // max(1, int(np.prod(features.shape[1:]))))
    bad = [
        start + np.flatnonzero(~(np.abs(features[start : start + step]) <= FEATURE_LIMIT).all(1))
        for start in range(0, len(features), step)
    ]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def describe_unusable(rows: np.ndarray, ids: Sequence[str]) -> str:
    """``"3 rows hold NaN, Inf or overflowing ... features (rows 2, 7, 9: ids a, b, c)"``."""
    shown = [int(r) for r in rows[:3]]
    more = " …" if len(rows) > 3 else ""
    return (
        f"{len(rows)} rows hold NaN, Inf or overflowing (|x| > {FEATURE_LIMIT:.2g}) features "
        f"(rows {', '.join(map(str, shown))}{more}: ids {', '.join(ids[r] for r in shown)}{more})"
    )


def check_features(features: np.ndarray, ids: Sequence[str], where: str | Path) -> None:
    """Refuse features heads cannot use, naming the rows.

    Raises
    ------
    CacheError
        If any row holds NaN, Inf or a value beyond :data:`FEATURE_LIMIT`.
    """
    bad = unusable_rows(features)
    if bad.size:
        raise CacheError(
            f"{where}: {describe_unusable(bad, ids)}; re-extract those images (check the base "
            "and its preprocessing) or drop the rows"
        )


def check_storage(store_dtype: str, compression: str | None) -> None:
    """Refuse a ``store_dtype`` or ``compression`` the cache format does not offer."""
    if store_dtype not in STORE_DTYPES:
        raise ValueError(
            f"store_dtype must be one of {', '.join(STORE_DTYPES)}. "
            f"Received: store_dtype={store_dtype!r}"
        )
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSIONS)} or None. "
            f"Received: compression={compression!r}"
        )


def _check_float16(features: np.ndarray, ids: Sequence[str], where: Path) -> None:
    """Refuse rows that float16 cannot hold (they would be stored as Inf)."""
    limit = float(np.finfo(np.float16).max)
    rows = np.flatnonzero(~(np.abs(np.asarray(features, np.float32)) <= limit).all(1))
    if rows.size:
        raise CacheError(
            f"{where}: {rows.size} rows hold features beyond float16's range (|x| > {limit:g}; "
            f"first id {ids[int(rows[0])]}); extract with --store-dtype float32"
        )


class CacheWriter:
    """Crash-safe writer: batches go to a ``<out>.partial/`` folder, assembled at the end.

    HDF5 is not crash-safe (a process killed mid-write can corrupt the file's heap, so the
    rows it did commit are lost too). The partial state is therefore a folder: the marker
    ``bottleneck-partial.json`` (written first), ``meta.json`` (fingerprint, identity,
    provenance, class names), ``manifest.npz``, and one ``chunk-NNNNNN.npz`` per
    :meth:`commit`, each fsync'ed and renamed into place, so a chunk is either wholly there
    or absent. Each chunk records how many source items are handled after it; :meth:`resume`
    keeps the chunks that are contiguous and account for every item (rows + failures) and
    redoes the rest. :meth:`finalize` streams the chunks into one contiguous HDF5 file,
    with its disk space reserved first, and renames it to the final path. Nothing is pickled.
    """

    def __init__(
        self,
        folder: Path,
        meta: dict,
        chunks: list[Path],
        committed: tuple[int, int, int],
    ) -> None:
        self.path = folder
        self._meta = meta
        self._chunks = chunks
        self._pending: list[dict[str, np.ndarray]] = []
        self._committed = committed
        self._consistent = committed

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        dim: int,
        fingerprint: str,
        identity: dict,
        provenance: dict,
        class_names: Sequence[str],
        manifest: dict[str, Sequence] | None = None,
        store_dtype: str = "float32",
        compression: str | None = None,
    ) -> CacheWriter:
        """Start a new partial folder at ``path`` (discarding an old one this package wrote).

        ``store_dtype`` and ``compression`` say how :meth:`finalize` stores ``/features``
        (see :func:`check_storage`); chunks always hold float32.

        Raises
        ------
        CacheError
            If ``path`` is something this package did not write, or cannot be written.
        """
        check_storage(store_dtype, compression)
        folder = Path(path)
        discard_partial(folder)
        meta = {
            "dim": int(dim),
            "store_dtype": store_dtype,
            "compression": compression,
            "fingerprint": fingerprint,
            "identity": identity,
            "provenance": provenance,
            "class_names": list(class_names),
        }
        with writing(folder):
            folder.mkdir(parents=True)
            entry = EntryManifest(folder / PARTIAL_MARKER)  # first: it lists all the rest
            entry.save()
            if manifest is not None:
                with entry.writing("manifest.npz") as tmp:
                    _save_manifest(tmp, manifest)
            with entry.writing("meta.json") as tmp:
                tmp.write_text(json.dumps(meta, sort_keys=True))
        return cls(folder, meta, [], (0, 0, 0))

    @classmethod
    def resume(
        cls,
        path: str | Path,
        fingerprint: str,
        identity: dict,
        *,
        item_ids: Sequence[str] | None = None,
        manifest: dict[str, Sequence] | None = None,
    ) -> CacheWriter | None:
        """Reopen a partial folder made for the same fingerprint, after its last good chunk.

        Chunks must be numbered without gaps, readable, and account for every item they
        cover (rows + failures; with ``item_ids``, exactly those items): the first that does
        not, and every chunk after it, are removed with a :class:`ResumeWarning`, and their
        items are redone. A missing or damaged manifest is rewritten from ``manifest``.
        Returns None when nothing was committed yet (start a new writer).

        Raises
        ------
        StaleCacheError
            If the partial extraction was started for different inputs (changed files named).
        CacheError
            If the folder is not this package's, or its ``meta.json`` cannot be read.
        """
        folder = Path(path)
        check_partial_folder(folder)
        chunk_files = sorted(folder.glob("chunk-*.npz"))
        if not (folder / "meta.json").exists() and not chunk_files:
            return None  # stopped while starting: nothing to keep
        try:
            meta = json.loads((folder / "meta.json").read_text())
            dim = int(meta["dim"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheError(
                f"cannot resume the unfinished extraction {folder}: its meta.json is unreadable "
                f"({exc}); rerun with --force to start over"
            ) from exc
        stored = _read_manifest(folder)
        if meta.get("fingerprint") != fingerprint:
            raise StaleCacheError(
                "unfinished extraction: "
                + describe_difference(folder, meta.get("identity", {}), identity, stored, manifest)
                + "; rerun with --force to discard it and start over"
            )
        entry = EntryManifest.load(folder / PARTIAL_MARKER)
        if stored is None and manifest is not None:
            with writing(folder / "manifest.npz"), entry.writing("manifest.npz") as tmp:
                _save_manifest(tmp, manifest)
        chunks, committed, problem = _good_chunks(chunk_files, dim, item_ids, entry)
        if problem:
            dropped = chunk_files[len(chunks) :]
            warnings.warn(
                f"{folder}: {problem}; redoing items from {committed[2]} "
                f"({len(dropped)} chunk file(s) removed)",
                ResumeWarning,
                stacklevel=2,
            )
            with writing(folder):
                entry.discard([chunk.name for chunk in dropped])
        return cls(folder, meta, chunks, committed)

    def write_batch(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        ids: Sequence[str],
        failures: Sequence[tuple[str, str]],
        items_done: int,
    ) -> None:
        """Add one batch's rows and failures; ``items_done`` source items are then handled.

        Becomes durable at the next :meth:`commit`.
        """
        n = len(ids)
        if features.shape[0] != n or labels.shape[0] != n:
            raise ValueError(
                f"rows disagree: {features.shape[0]} features, {labels.shape[0]} labels, {n} ids"
            )
        if not np.issubdtype(np.asarray(labels).dtype, np.integer):
            raise ValueError(f"labels must be integers. Received: labels.dtype={labels.dtype}")
        failed_ids = [f[0] for f in failures]
        if self._meta.get("store_dtype") == "float16":
            _check_float16(features, ids, self.path)
        self._pending.append(
            {
                "features": np.asarray(features, np.float32).reshape(n, self._meta["dim"]),
                "labels": np.asarray(labels, np.int32),
                "ids": np.asarray(list(ids), dtype=str).reshape(n),
                "failed_ids": np.asarray(failed_ids, dtype=str).reshape(len(failures)),
                "failed_reasons": np.asarray([f[1] for f in failures], dtype=str).reshape(
                    len(failures)
                ),
            }
        )
        rows, failed, _ = self._consistent
        self._consistent = (rows + n, failed + len(failures), items_done)

    @property
    def rows(self) -> int:
        """Rows written so far (committed or pending)."""
        return self._consistent[0]

    @property
    def committed_rows(self) -> int:
        """Rows made durable by :meth:`commit` (what an interrupted run keeps)."""
        return self._committed[0]

    @property
    def n_failed(self) -> int:
        """Items recorded as failed so far, this run and any run it resumes."""
        return self._consistent[1]

    @property
    def pending_bytes(self) -> int:
        """Bytes held in memory for the next :meth:`commit` (features, labels and ids)."""
        return sum(array.nbytes for batch in self._pending for array in batch.values())

    @property
    def items_done(self) -> int:
        """Source items handled (rows + failures), committed or pending."""
        return self._consistent[2]

    def commit(self) -> None:
        """Make every batch written so far durable, as one atomically renamed chunk file.

        Raises
        ------
        CacheError
            If the chunk cannot be written (disk full, ...); the batches stay pending.
        """
        if not self._pending:
            return
        columns = {
            key: np.concatenate([batch[key] for batch in self._pending]) for key in self._pending[0]
        }
        chunk = self.path / f"chunk-{len(self._chunks):06d}.npz"
        entry = EntryManifest.load(self.path / PARTIAL_MARKER)
        with writing(chunk), entry.writing(chunk.name) as tmp:
            np.savez(tmp, items_done=np.int64(self._consistent[2]), **columns)
        self._chunks.append(chunk)
        self._pending = []
        self._committed = self._consistent

    def finalize(self, final_path: str | Path, extraction: dict) -> Path:
        """Assemble the chunks into a complete HDF5 cache at ``final_path`` (atomically).

        The file's disk space is reserved before anything is written (HDF5 cannot recover
        from a full disk), so a full disk is a :class:`CacheError` and the chunks stay.
        """
        self.commit()
        final_path = Path(final_path)
        provenance = {**self._meta["provenance"], "extraction": extraction}
        rows, n_failed, _ = self._committed
        dim = self._meta["dim"]
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": self._meta["fingerprint"],
            "identity": json.dumps(self._meta["identity"], sort_keys=True),
            "provenance": json.dumps(provenance, sort_keys=True),
            "class_names": json.dumps(self._meta["class_names"]),
        }
        manifest = _read_manifest(self.path)
        size = self._assembled_size(manifest, sum(len(str(v)) for v in attrs.values()))
        _discard_stale_temps(final_path)
        with writing(final_path), atomic_path(final_path) as assembling:
            _reserve(assembling, size)
            with h5py.File(assembling, "w") as h5:
                _reserve(assembling, size, h5.id.get_vfd_handle())
                features = h5.create_dataset(
                    "features",
                    (rows, dim),
                    self._meta.get("store_dtype", "float32"),
                    compression=self._meta.get("compression"),
                )
                labels = h5.create_dataset("labels", (rows,), np.int32)
                ids = h5.create_dataset("ids", (rows,), _STR)
                failed_ids = h5.create_dataset("failed/ids", (n_failed,), _STR)
                failed_reasons = h5.create_dataset("failed/reasons", (n_failed,), _STR)
                count = view_count(self._meta["identity"])
                n_plain, failure, first = rows // (count + 1), 0, 0
                for data in map(_load_chunk, self._chunks):
                    n, k = len(data["ids"]), len(data["failed_ids"])
                    where = (
                        assembled_rows(data["ids"], first, n_plain, count)
                        if count
                        else np.arange(first, first + n)
                    )
                    order = np.argsort(where, kind="stable")
                    ends = np.flatnonzero(np.diff(where[order]) != 1) + 1
                    for run in np.split(order, ends) if n else []:
                        start = int(where[run[0]])
                        # NumPy rounds; HDF5's own float32 -> float16 conversion does not
                        # carry a rounded mantissa into the exponent (0.99999994 -> 0.5)
                        stored = data["features"][run].astype(features.dtype)
                        features[start : start + len(run)] = stored
                        labels[start : start + len(run)] = data["labels"][run]
                        ids[start : start + len(run)] = data["ids"][run].astype(object)
                    if k:
                        failed_ids[failure : failure + k] = data["failed_ids"].astype(object)
                        reasons = data["failed_reasons"].astype(object)
                        failed_reasons[failure : failure + k] = reasons
                    failure, first = failure + k, first + n // (count + 1)
                if count:
                    h5.create_dataset("views/source_row", data=view_source_rows(n_plain, count))
                if manifest is not None and "group" in manifest:
                    row_groups = _row_groups(ids.asstr()[...], manifest)
                    h5.create_dataset("groups", data=row_groups, dtype=_STR)
                if manifest is not None:
                    group = h5.create_group("manifest")
                    group.create_dataset("ids", data=manifest["ids"].astype(object), dtype=_STR)
                    group.create_dataset("size", data=manifest["size"])
                    group.create_dataset("mtime_ns", data=manifest["mtime_ns"])
                h5.attrs.update(attrs)
                h5.attrs["complete"] = True
                h5.flush()
                end = h5.id.get_filesize()
            os.truncate(assembling, end)  # give back what the reservation did not use
            with h5py.File(assembling, "r") as h5:  # HDF5 refuses a file cut too short
                h5.attrs["complete"]
        with contextlib.suppress(CacheError):  # files someone else put there stay
            discard_partial(self.path)
        return final_path

    def _assembled_size(self, manifest: dict | None, attr_bytes: int) -> int:
        """A generous bound on the assembled file's bytes (strings cost 40 bytes + text)."""
        rows, failed, _ = self._committed
        text = 0
        for chunk in self._chunks:
            with np.load(chunk, allow_pickle=False) as data:
                text += sum(data[key].nbytes for key in ("ids", "failed_ids", "failed_reasons"))
        strings = rows + 2 * failed
        if manifest is not None:
            text += manifest["ids"].nbytes + 16 * len(manifest["ids"])
            strings += len(manifest["ids"])
        if manifest is not None and "group" in manifest:
            text += rows * manifest["group"].dtype.itemsize
            strings += rows
        item = np.dtype(self._meta.get("store_dtype", "float32")).itemsize
        data = rows * (item * self._meta["dim"] + 12) + text + 40 * strings + attr_bytes
        return int(1.1 * data) + 2**20

    def close(self) -> None:
        """Drop batches not yet committed (the committed chunks stay for a resume)."""
        self._pending = []
        self._consistent = self._committed


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
    """Write the items' stat and declared groups (``manifest.npz``) to ``path`` (a temporary)."""
    declared = {"group": np.asarray(manifest["group"], dtype=str)} if "group" in manifest else {}
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
        return {key: data[key] for key in ("ids", "size", "mtime_ns", "group") if key in data}
    except _DAMAGED:
        return None


def _row_groups(ids: Sequence[str], manifest: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's declared group: its image's (a view's plain id) in the manifest's ``group``."""
    declared = dict(zip(manifest["ids"].tolist(), manifest["group"].tolist(), strict=True))
    plain = [(match.group("plain") if (match := _VIEW_ID.match(i)) else i) for i in ids]
    return np.asarray([declared.get(i, "") for i in plain], dtype=object)


#: What h5py raises on a damaged or hostile file (bad headers, chunks, heaps, dtypes).
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def _reads(method: Callable) -> Callable:
    """Make what h5py raises while ``method`` reads the file one :class:`CacheError`."""

    @functools.wraps(method)
    def read(self: FeatureCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except CacheError:
            raise
        except _H5_ERRORS as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CacheError(
                f"{self.path} is damaged ({type(exc).__name__}: {first}); re-extract it with "
                "`bottleneck extract ... --force`"
            ) from exc

    return read


def _string_lengths(dataset: h5py.Dataset, sizeof_addr: int, userblock: int) -> np.ndarray | None:
    """The byte length of each string of a variable-length string dataset, read from its
    records on disk (4-byte length, heap address, 4-byte index) before HDF5 reads a string.

    None when the records are not stored in one contiguous block (nothing is read then).
    """
    offset = dataset.id.get_offset()
    if offset is None:
        return None
    record = np.dtype([("length", "<u4"), ("heap", f"V{sizeof_addr + 4}")])
    with open(dataset.file.filename, "rb") as handle:
        handle.seek(offset + userblock)
        raw = handle.read(record.itemsize * dataset.size)
    if len(raw) != record.itemsize * dataset.size:
        raise CacheError(f"{dataset.file.filename}: {dataset.name} runs past the end of the file")
    return np.frombuffer(raw, record)["length"]


#: Rows per block when a float16 cache is widened to float32 in memory.
WIDEN_ROWS = 8192


class FeatureCache(Display):
    """A complete, validated cache opened for reading.

    Use :meth:`open` (or ``with FeatureCache.open(path) as cache``). ``features`` loads the
    whole matrix into memory once; ``features_dataset`` and :meth:`iter_rows` stream it.

    Examples
    --------
    >>> with FeatureCache.open("caches/fm-train.h5") as cache:
    ...     X, y = cache.arrays()
    ...     names, ids = cache.class_names, cache.ids
    >>> X.dtype, X.shape[0] == len(y) == len(ids)
    (dtype('float32'), True)
    """

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self._h5 = handle
        self.path = path
        self._features: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> FeatureCache:
        """Open and validate a cache, or raise :class:`CacheError` saying what is wrong."""
        path = Path(path)
        if not path.exists():
            hint = (
                f"; an unfinished extraction is at {partial_path(path)}: rerun the `bottleneck "
                "extract` command that started it (same source, base and options) to resume it"
                if partial_path(path).exists()
                else ""
            )
            raise CacheError(f"cache not found: {path}{hint}")
        limits.regular_file_size(path, None, CacheError, "a cache (.h5)", "")
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise CacheError(f"{path} is not a readable HDF5 file ({exc})") from exc
        cache = cls(handle, path)
        try:
            cache._validate()
        except CacheError:
            handle.close()
            raise
        return cache

    @_reads
    def _validate(self) -> None:
        """Check format, version, completeness, fingerprint, attributes, dtypes and shapes,
        then the sizes the file claims (:meth:`_check_sizes`)."""
        attrs = self._h5.attrs
        if attrs.get("format") != FORMAT:
            raise CacheError(f"{self.path} is not a bottleneck cache (no format={FORMAT!r})")
        version = attrs.get("format_version")
        if not (isinstance(version, (int, np.integer)) and version == FORMAT_VERSION):
            raise CacheError(
                f"{self.path} has cache format version {version}; this bottleneck reads "
                f"version {FORMAT_VERSION}: re-extract it or use a matching bottleneck"
            )
        redo = "re-extract it with `bottleneck extract ... --force`"
        complete = attrs.get("complete")
        if not (isinstance(complete, (bool, np.bool_)) and complete):
            raise CacheError(
                f"{self.path} is marked incomplete (no finished extraction wrote it): {redo}"
            )
        fingerprint = attrs.get("fingerprint")
        if not (isinstance(fingerprint, str) and fingerprint.startswith("sha256:")):
            raise CacheError(f"{self.path} has no valid fingerprint ({fingerprint!r}): {redo}")
        for name, kind in (("identity", dict), ("provenance", dict), ("class_names", list)):
            if not isinstance(_json_attr(self._h5, name, kind()), kind):
                raise CacheError(f"{self.path}: attribute {name!r} is not a JSON {kind.__name__}")
        for name in ("features", "labels", "ids"):
            if not isinstance(self._h5.get(name), h5py.Dataset):
                raise CacheError(f"{self.path} has no /{name} dataset")
        features = self._h5["features"]
        if features.ndim != 2 or features.dtype.name not in STORE_DTYPES:
            raise CacheError(
                f"{self.path}: /features must be float32 or float16 (N, D); got {features.dtype} "
                f"{features.shape}"
            )
        labels, ids = self._h5["labels"], self._h5["ids"]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise CacheError(
                f"{self.path}: /labels must be integer class indices; got {labels.dtype} "
                f"{labels.shape} (float labels are refused, not truncated): {redo}"
            )
        if ids.ndim != 1 or h5py.check_string_dtype(ids.dtype) is None:
            raise CacheError(f"{self.path}: /ids must be strings; got {ids.dtype}: {redo}")
        n = features.shape[0]
        lengths = {"labels": labels.shape[0], "ids": ids.shape[0]}
        if any(length != n for length in lengths.values()):
            raise CacheError(f"{self.path}: row counts disagree: features {n}, {lengths}")
        failed = self._h5.get("failed")
        if failed is not None and not (
            isinstance(failed, h5py.Group)
            and all(h5py.check_string_dtype(failed[k].dtype) for k in ("ids", "reasons"))
            and failed["ids"].shape == failed["reasons"].shape
        ):
            raise CacheError(f"{self.path}: /failed must hold ids and reasons, as strings: {redo}")
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Refuse a dataset that claims more bytes than the file can hold (a forged header
        must not make a read allocate them), and strings over
        ``limits.MAX_CACHE_STRING_BYTES`` or more string bytes than the file holds."""
        file_size = self.path.stat().st_size
        sizeof_addr = self._h5.id.get_create_plist().get_sizes()[0]
        datasets: list[h5py.Dataset] = []
        self._h5.visititems(
            lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None
        )
        redo = "re-extract it with `bottleneck extract ... --force`"
        for dataset in datasets:
            where = f"{self.path}: {dataset.name}"
            string = h5py.check_string_dtype(dataset.dtype)
            variable = string is not None and string.length is None
            item = 8 + sizeof_addr if variable else dataset.dtype.itemsize
            claimed = item * dataset.size
            packed = bool(dataset.compression or dataset.chunks)
            bound = file_size * (limits.MAX_CACHE_COMPRESSION_RATIO if packed else 1)
            if claimed > bound:
                allowed = (
                    "bottleneck_transfer.limits.MAX_CACHE_COMPRESSION_RATIO = "
                    f"{limits.MAX_CACHE_COMPRESSION_RATIO} times the file's size"
                    if packed
                    else "the size of the whole file"
                )
                raise CacheError(
                    f"{where} claims {claimed:,} bytes in a file of {file_size:,} bytes, over "
                    f"{allowed}: {redo}"
                )
            if not variable or not dataset.size:
                continue
            lengths = _string_lengths(dataset, sizeof_addr, self._h5.userblock_size)
            if lengths is None:
                raise CacheError(f"{where}: strings not stored as one block, as caches are: {redo}")
            longest = int(lengths.max())
            if longest > limits.MAX_CACHE_STRING_BYTES:
                problem = limits.over(
                    "holds a string of", longest, "MAX_CACHE_STRING_BYTES", " bytes"
                )
                raise CacheError(f"{where} {problem}: {redo}")
            if int(lengths.sum(dtype=np.int64)) > file_size:
                raise CacheError(f"{where}: its strings claim more bytes than the file: {redo}")

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _display_bar = ("class", "rows")

    def _display_summary(self) -> dict[str, Any]:
        if not self._h5.id.valid:
            return {"path": str(self.path), "state": "closed"}
        base = self.identity.get("base", {})
        return {
            "path": str(self.path),
            "rows": len(self),
            "features": f"{self.dim} {self._h5['features'].dtype}",
            "base": " ".join(
                f"{key} {base[key]}" for key in ("name", "weights", "layer") if key in base
            ),
            "fingerprint": self.fingerprint,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per class: its index, name and number of rows (then unlabeled rows)."""
        if not self._h5.id.valid:
            return []
        return class_rows(self.labels, self.class_names, "rows")

    def close(self) -> None:
        """Close the file."""
        if self._h5.id.valid:
            self._h5.close()

    @_reads
    def __len__(self) -> int:
        return int(self._h5["features"].shape[0])

    def _holds(self, name: str) -> bool:
        """Whether the file has ``/name`` (a closed file says so instead of "no")."""
        if not self._h5.id.valid:
            raise CacheError(
                f"{self.path} is closed: use the cache inside `with FeatureCache.open(...)`"
            )
        return name in self._h5

    @property
    @_reads
    def dim(self) -> int:
        """Feature size D."""
        return int(self._h5["features"].shape[1])

    @property
    def features_dataset(self) -> Any:
        """The ``/features`` dataset for streaming reads; slices are float32 (a float16
        dataset through :class:`Float32View`)."""
        dataset = self._h5["features"]
        return dataset if dataset.dtype == np.float32 else Float32View(dataset)

    @property
    @_reads
    def features(self) -> np.ndarray:
        """All features as a float32 (N, D) array (read once, then kept)."""
        if self._features is None:
            dataset = self._h5["features"]
            out = np.empty(dataset.shape, np.float32)
            if dataset.dtype != np.float32:  # widened a block at a time: no float16 copy
                view = Float32View(dataset)
                for start in range(0, len(out), WIDEN_ROWS):
                    out[start : start + WIDEN_ROWS] = view[start : start + WIDEN_ROWS]
            elif out.size and not self._read_contiguous(dataset, out):
                dataset.read_direct(out)
            self._features = out
        return self._features

    def _read_contiguous(self, dataset: h5py.Dataset, out: np.ndarray) -> bool:
        """Read a contiguous, unfiltered little-endian dataset straight from the file.

        One ``readinto`` at the dataset's file offset: as fast as ``np.load`` of an ``.npy``
        (HDF5's own read of the same bytes costs about 5 % more). Returns False, reading
        nothing, whenever the layout is anything else.
        """
        offset = dataset.id.get_offset()
        little = dataset.dtype.byteorder in ("<", "=") and out.dtype == dataset.dtype
        if offset is None or not little or dataset.compression:
            return False
        offset += self._h5.userblock_size
        view = memoryview(out).cast("B")
        try:
            with open(self._h5.filename, "rb") as handle:
                handle.seek(offset)
                done = handle.readinto(view)
        except OSError:
            return False
        return done == len(view)

    def iter_rows(self, batch_rows: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield float32 ``(features, labels)`` blocks of at most ``batch_rows`` rows, in order."""
        labels = self.labels
        dataset = self.features_dataset
        for start in range(0, len(self), batch_rows):
            stop = min(start + batch_rows, len(self))
            yield dataset[start:stop], labels[start:stop]

    @property
    @_reads
    def labels(self) -> np.ndarray:
        """int32 (N,) class indices into :attr:`class_names`; -1 for unlabeled rows."""
        return self._h5["labels"][...]

    @property
    @_reads
    def ids(self) -> list[str]:
        """Row ids: paths relative to the source root, or ``array:<index>``."""
        return list(self._h5["ids"].asstr()[...])

    @property
    @_reads
    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names[i]``."""
        return _json_attr(self._h5, "class_names", [])

    @property
    @_reads
    def fingerprint(self) -> str:
        """``sha256:…`` of the inputs that determine the features."""
        return str(self._h5.attrs["fingerprint"])

    @property
    @_reads
    def identity(self) -> dict:
        """The inputs the fingerprint is computed from (base and source)."""
        return _json_attr(self._h5, "identity", {})

    @property
    @_reads
    def provenance(self) -> dict:
        """Everything about how the cache was made (base, source, software, extraction)."""
        return _json_attr(self._h5, "provenance", {})

    @property
    @_reads
    def failed(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of each item skipped during extraction."""
        if not self._holds("failed"):
            return []
        ids = self._h5["failed/ids"].asstr()[...]
        reasons = self._h5["failed/reasons"].asstr()[...]
        return list(zip(ids, reasons, strict=True))

    @property
    @_reads
    def manifest(self) -> dict[str, np.ndarray] | None:
        """Per-file ids, sizes and mtimes of the source at extraction time (file sources)."""
        if not self._holds("manifest"):
            return None
        group = self._h5["manifest"]
        return {
            "ids": np.asarray(group["ids"].asstr()[...], dtype=object),
            "size": group["size"][...],
            "mtime_ns": group["mtime_ns"][...],
        }

    @property
    @_reads
    def groups(self) -> np.ndarray | None:
        """str (N,): each row's declared group (``""``: none), from ``/groups``; None for a
        cache without (made without ``--groups``, or before it existed)."""
        if not self._holds("groups"):
            return None
        stored = self._h5["groups"]
        if not (isinstance(stored, h5py.Dataset) and stored.shape == (len(self),)):
            raise CacheError(
                f"{self.path}: /groups must hold one string per row: re-extract it with "
                "`bottleneck extract ... --groups COLUMN --force`"
            )
        return np.asarray(stored.asstr()[...], dtype=object)

    @property
    @_reads
    def source_rows(self) -> np.ndarray:
        """int64 (N,): each row's plain row (its own index for a plain row), from
        ``/views/source_row``; ``arange(N)`` for a cache without augmented views."""
        if not self._holds("views"):
            return np.arange(len(self), dtype=np.int64)
        n = len(self)
        stored = (
            self._h5.get("views/source_row") if isinstance(self._h5["views"], h5py.Group) else None
        )
        rows = None
        if (
            isinstance(stored, h5py.Dataset)
            and stored.shape == (n,)
            and np.issubdtype(stored.dtype, np.integer)
        ):
            rows = stored[...].astype(np.int64)
        if rows is None or (n and (rows.min() < 0 or rows.max() >= n)):
            raise CacheError(
                f"{self.path}: /views/source_row must hold one row index of this cache per row: "
                "re-extract it with `bottleneck extract ... --force`"
            )
        labels = self.labels
        if not np.array_equal(rows[rows], rows) or not np.array_equal(labels[rows], labels):
            problem = "ties views to rows that are views themselves or have another label"
        elif not np.array_equal(is_view(self.ids), rows != np.arange(n)):
            problem = "does not match the rows named as views (<id>#view<k>)"
        else:
            return rows
        raise CacheError(
            f"{self.path}: /views/source_row {problem}: re-extract it with "
            "`bottleneck extract ... --force`"
        )

    @property
    def has_views(self) -> bool:
        """Whether the cache holds augmented view rows (``extract --augment --views K``)."""
        return self._holds("views")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)``: the float32 (N, D) features and int32 (N,) labels, for scikit-learn.

        Example: ``X, y = FeatureCache.open("train.h5").arrays()``.
        """
        return self.features, self.labels

    def to_arrow(self, *, wide: bool = False) -> Any:
        """The cache as a ``pyarrow.Table``: id, label, class_name, features (needs pyarrow).

        Features are one fixed-size list column of float32, or with ``wide`` one column per
        feature (``f0``, ``f1``, ...); the schema metadata holds the provenance
        (:mod:`~bottleneck_transfer.features.tables`).
        """
        from bottleneck_transfer.features.tables import cache_table

        return cache_table(self, wide=wide)

    def to_pandas(self, *, wide: bool = False) -> Any:
        """The cache as a ``pandas.DataFrame`` (columns as :meth:`to_arrow`; needs pyarrow);
        unlike other results' ``to_pandas``, the data itself, not the table of the repr."""
        from bottleneck_transfer.features.tables import require

        require("pandas", extra=None)
        return self.to_arrow(wide=wide).to_pandas()


class Float32View:
    """A float16 ``/features`` dataset whose slices are float32 (converted by NumPy: HDF5's
    own float16 conversion is about 100x slower)."""

    def __init__(self, dataset: h5py.Dataset) -> None:
        self._dataset = dataset
        self.shape, self.ndim, self.dtype = dataset.shape, dataset.ndim, np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._dataset[key], np.float32)


def check_existing(
    path: str | Path, fingerprint: str, identity: dict, manifest: dict | None = None
) -> bool:
    """Whether a complete cache at ``path`` already holds exactly these inputs.

    Returns ``False`` when there is no cache. Raises :class:`StaleCacheError` when one
    exists for other inputs (naming the source files that changed, given ``manifest``), and
    :class:`CacheError` when something else is there.
    """
    path = Path(path)
    if not path.exists():
        return False
    try:
        cache = FeatureCache.open(path)
    except CacheError as exc:
        raise CacheError(
            f"{exc}. Rerun with --force to replace it, or write to another file with -o"
        ) from exc
    with cache:
        if cache.fingerprint == fingerprint:
            return True
        old_manifest = cache.manifest
        raise StaleCacheError(
            describe_difference(path, cache.identity, identity, old_manifest, manifest)
            + "; rerun with --force to replace it, or write to another file with -o"
        )
