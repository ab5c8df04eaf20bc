"""The crash-safe cache writer: rows go to committed chunk files of ``<out>.partial``, and
:meth:`CacheWriter.finalize` assembles them into the final file by one atomic rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.entries import (
    EntryManifest,
)
from bottleneck_transfer.errors import CacheError, ResumeWarning, StaleCacheError
from bottleneck_transfer.features.cache.format import (
    _STR,
    _VIEW_ID,
    FORMAT,
    FORMAT_VERSION,
    _check_float16,
    assembled_rows,
    check_storage,
    describe_difference,
    view_count,
    view_source_rows,
)
from bottleneck_transfer.features.cache.partial import (
    PARTIAL_MARKER,
    _discard_stale_temps,
    _good_chunks,
    _load_chunk,
    _read_manifest,
    _reserve,
    _save_manifest,
    check_partial_folder,
    discard_partial,
    writing,
)
from bottleneck_transfer.features.targets import Target, target_values


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

    def _root_attrs(self, extraction: dict) -> dict[str, str]:
        """The complete cache's root attributes: format, fingerprint, identity, provenance
        (with ``extraction``), class names, and the target where the source declared one."""
        provenance = {**self._meta["provenance"], "extraction": extraction}
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": self._meta["fingerprint"],
            "identity": json.dumps(self._meta["identity"], sort_keys=True),
            "provenance": json.dumps(provenance, sort_keys=True),
            "class_names": json.dumps(self._meta["class_names"]),
        }
        recorded = self._meta["identity"].get("source", {}).get("target")
        if recorded is not None:
            attrs["target"] = json.dumps(recorded, sort_keys=True)
        return attrs

    def finalize(self, final_path: str | Path, extraction: dict) -> Path:
        """Assemble the chunks into a complete HDF5 cache at ``final_path`` (atomically).

        The file's disk space is reserved before anything is written (HDF5 cannot recover
        from a full disk), so a full disk is a :class:`CacheError` and the chunks stay.
        """
        self.commit()
        final_path = Path(final_path)
        rows, n_failed, _ = self._committed
        dim = self._meta["dim"]
        attrs = self._root_attrs(extraction)
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
                if manifest is not None and "target" in manifest:
                    texts = _row_groups(ids.asstr()[...], manifest, "target")
                    target = Target.from_dict(json.loads(attrs["target"]))
                    h5.create_dataset("targets", data=target_values(texts, target))
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
        if manifest is not None and "target" in manifest:
            names = len(self._meta["identity"]["source"]["target"]["names"] or [0])
            text += rows * 4 * names
        item = np.dtype(self._meta.get("store_dtype", "float32")).itemsize
        data = rows * (item * self._meta["dim"] + 12) + text + 40 * strings + attr_bytes
        return int(1.1 * data) + 2**20

    def close(self) -> None:
        """Drop batches not yet committed (the committed chunks stay for a resume)."""
        self._pending = []
        self._consistent = self._committed


def _row_groups(
    ids: Sequence[str], manifest: dict[str, np.ndarray], key: str = "group"
) -> np.ndarray:
    """Each row's declared group (or ``key``: its target text): its image's (a view's plain
    id) in the manifest's ``key``."""
    declared = dict(zip(manifest["ids"].tolist(), manifest[key].tolist(), strict=True))
    plain = [(match.group("plain") if (match := _VIEW_ID.match(i)) else i) for i in ids]
    return np.asarray([declared.get(i, "") for i in plain], dtype=object)
