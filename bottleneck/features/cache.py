"""The HDF5 feature cache, format version 1: crash-safe writing with resume, reading.

Layout (see README, "Cache format"):

``/features`` float32 (N, D), contiguous · ``/labels`` int32 (N,) · ``/ids`` str (N,) ·
``/failed/ids``, ``/failed/reasons`` str · ``/manifest/{ids,size,mtime_ns}`` (file sources) ·
root attrs ``format``, ``format_version``, ``complete``, ``fingerprint``, ``identity``,
``provenance``, ``class_names`` (JSON).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text
from bottleneck_transfer.errors import CacheError, StaleCacheError
from bottleneck_transfer.fingerprint import diff_keys

FORMAT = "bottleneck-cache"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


def partial_path(path: str | Path) -> Path:
    """The folder a cache is written to until it is complete."""
    return Path(f"{path}.partial")


def _json_attr(handle: h5py.File, name: str, default: Any = None) -> Any:
    raw = handle.attrs.get(name)
    return default if raw is None else json.loads(raw)


def describe_difference(path: str | Path, old_identity: dict, new_identity: dict) -> str:
    """A sentence naming the fields in which two cache identities differ."""
    keys = diff_keys(old_identity, new_identity) or ["fingerprint"]
    return f"{path} was made from different inputs (differs in: {', '.join(keys)})"


class CacheWriter:
    """Crash-safe writer: batches go to a ``<out>.partial/`` folder, assembled at the end.

    HDF5 is not crash-safe (a process killed mid-write can corrupt the file's heap, so the
    rows it did commit are lost too). The partial state is therefore a folder: ``meta.json``
    (fingerprint, identity, provenance, class names), ``manifest.npz``, and one
    ``chunk-NNNNNN.npz`` per :meth:`commit`, each fsync'ed and renamed into place, so a chunk
    is either wholly there or absent. :meth:`resume` continues after the last chunk;
    :meth:`finalize` streams the chunks into one contiguous HDF5 file and renames it to the
    final path. Nothing is pickled.
    """

    def __init__(self, folder: Path, meta: dict, chunks: list[Path]) -> None:
        self.path = folder
        self._meta = meta
        self._chunks = chunks
        self._pending: list[dict[str, np.ndarray]] = []
        self._committed = _count_chunks(chunks)
        self._consistent = self._committed

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
    ) -> CacheWriter:
        """Start a new partial folder at ``path`` (discarding any old one)."""
        folder = Path(path)
        discard_partial(folder)
        folder.mkdir(parents=True)
        meta = {
            "dim": int(dim),
            "fingerprint": fingerprint,
            "identity": identity,
            "provenance": provenance,
            "class_names": list(class_names),
        }
        if manifest is not None:
            _atomic_npz(
                folder / "manifest.npz",
                ids=np.asarray(manifest["ids"], dtype=str),
                size=np.asarray(manifest["size"], np.int64),
                mtime_ns=np.asarray(manifest["mtime_ns"], np.int64),
            )
        atomic_write_text(folder / "meta.json", json.dumps(meta, sort_keys=True))
        return cls(folder, meta, [])

    @classmethod
    def resume(cls, path: str | Path, fingerprint: str, identity: dict) -> CacheWriter:
        """Reopen a partial folder made for the same fingerprint, after its last chunk.

        Raises
        ------
        StaleCacheError
            If the partial extraction was started for different inputs.
        CacheError
            If it cannot be read; delete it (or use --force) to start over.
        """
        folder = Path(path)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            chunks = sorted(folder.glob("chunk-*.npz"))
            writer = cls(folder, meta, chunks)
        except (OSError, ValueError, KeyError) as exc:
            raise CacheError(
                f"cannot resume the unfinished extraction {folder} ({exc}); "
                "delete it or rerun with --force to start over"
            ) from exc
        if meta.get("fingerprint") != fingerprint:
            raise StaleCacheError(
                describe_difference(folder, meta.get("identity", {}), identity)
                + "; rerun with --force to discard it and start over"
            )
        return writer

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
        failed_ids = [f[0] for f in failures]
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
        """Make every batch written so far durable, as one atomically renamed chunk file."""
        if not self._pending:
            return
        columns = {
            key: np.concatenate([batch[key] for batch in self._pending]) for key in self._pending[0]
        }
        chunk = self.path / f"chunk-{len(self._chunks):06d}.npz"
        _atomic_npz(chunk, items_done=np.int64(self._consistent[2]), **columns)
        self._chunks.append(chunk)
        self._pending = []
        self._committed = self._consistent

    def finalize(self, final_path: str | Path, extraction: dict) -> Path:
        """Assemble the chunks into a complete HDF5 cache at ``final_path`` (atomically)."""
        self.commit()
        final_path = Path(final_path)
        provenance = {**self._meta["provenance"], "extraction": extraction}
        rows, n_failed, _ = self._committed
        dim = self._meta["dim"]
        with atomic_path(final_path) as assembling, h5py.File(assembling, "w") as h5:
            features = h5.create_dataset("features", (rows, dim), np.float32)
            labels = h5.create_dataset("labels", (rows,), np.int32)
            ids = h5.create_dataset("ids", (rows,), _STR)
            failed_ids = h5.create_dataset("failed/ids", (n_failed,), _STR)
            failed_reasons = h5.create_dataset("failed/reasons", (n_failed,), _STR)
            row = failure = 0
            for chunk in self._chunks:
                with np.load(chunk, allow_pickle=False) as data:
                    n, k = len(data["labels"]), len(data["failed_ids"])
                    if n:
                        features[row : row + n] = data["features"]
                        labels[row : row + n] = data["labels"]
                        ids[row : row + n] = data["ids"].astype(object)
                    if k:
                        failed_ids[failure : failure + k] = data["failed_ids"].astype(object)
                        failed_reasons[failure : failure + k] = data["failed_reasons"].astype(
                            object
                        )
                row, failure = row + n, failure + k
            manifest = self.path / "manifest.npz"
            if manifest.exists():
                with np.load(manifest, allow_pickle=False) as data:
                    group = h5.create_group("manifest")
                    group.create_dataset("ids", data=data["ids"].astype(object), dtype=_STR)
                    group.create_dataset("size", data=data["size"])
                    group.create_dataset("mtime_ns", data=data["mtime_ns"])
            h5.attrs.update(
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "fingerprint": self._meta["fingerprint"],
                    "identity": json.dumps(self._meta["identity"], sort_keys=True),
                    "provenance": json.dumps(provenance, sort_keys=True),
                    "class_names": json.dumps(self._meta["class_names"]),
                }
            )
            h5.attrs["complete"] = True
        discard_partial(self.path)
        return final_path

    def close(self) -> None:
        """Drop batches not yet committed (the committed chunks stay for a resume)."""
        self._pending = []
        self._consistent = self._committed


def _count_chunks(chunks: Sequence[Path]) -> tuple[int, int, int]:
    """Rows, failures and source items handled, summed over committed chunk files."""
    rows = failed = items = 0
    for chunk in chunks:
        with np.load(chunk, allow_pickle=False) as data:
            rows += len(data["labels"])
            failed += len(data["failed_ids"])
            items = int(data["items_done"])
    return rows, failed, items


def partial_progress(path: str | Path) -> dict[str, int]:
    """Committed rows, failures and source items of an unfinished extraction."""
    rows, failed, items = _count_chunks(sorted(Path(path).glob("chunk-*.npz")))
    return {"rows": rows, "failed": failed, "items_done": items}


def discard_partial(path: str | Path) -> None:
    """Remove an unfinished extraction's folder (or a stray file of that name)."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


class FeatureCache:
    """A complete, validated cache opened for reading.

    Use :meth:`open` (or ``with FeatureCache.open(path) as cache``). ``features`` loads the
    whole matrix into memory once; ``features_dataset`` and :meth:`iter_rows` stream it.
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
                "; an unfinished extraction is there: rerun `bottleneck extract` to resume it"
                if partial_path(path).exists()
                else ""
            )
            raise CacheError(f"cache not found: {path}{hint}")
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

    def _validate(self) -> None:
        attrs = self._h5.attrs
        if attrs.get("format") != FORMAT:
            raise CacheError(f"{self.path} is not a bottleneck cache (no format={FORMAT!r})")
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CacheError(
                f"{self.path} has cache format version {version}; this bottleneck reads "
                f"version {FORMAT_VERSION}: re-extract it or use a matching bottleneck"
            )
        if not bool(attrs.get("complete", False)):
            raise CacheError(f"{self.path} is incomplete; rerun `bottleneck extract` to finish it")
        for name in ("features", "labels", "ids"):
            if name not in self._h5:
                raise CacheError(f"{self.path} has no /{name} dataset")
        features = self._h5["features"]
        if features.ndim != 2 or features.dtype != np.float32:
            raise CacheError(
                f"{self.path}: /features must be float32 (N, D); got {features.dtype} "
                f"{features.shape}"
            )
        n = features.shape[0]
        lengths = {name: self._h5[name].shape[0] for name in ("labels", "ids")}
        if any(length != n for length in lengths.values()):
            raise CacheError(f"{self.path}: row counts disagree: features {n}, {lengths}")

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        if self._h5.id.valid:
            self._h5.close()

    def __len__(self) -> int:
        return int(self._h5["features"].shape[0])

    @property
    def dim(self) -> int:
        """Feature size D."""
        return int(self._h5["features"].shape[1])

    @property
    def features_dataset(self) -> h5py.Dataset:
        """The ``/features`` dataset, for streaming reads."""
        return self._h5["features"]

    @property
    def features(self) -> np.ndarray:
        """All features as a float32 (N, D) array (read once, then kept)."""
        if self._features is None:
            dataset = self._h5["features"]
            out = np.empty(dataset.shape, np.float32)
            if out.size and not self._read_contiguous(dataset, out):
                dataset.read_direct(out)
            self._features = out
        return self._features

    def _read_contiguous(self, dataset: h5py.Dataset, out: np.ndarray) -> bool:
        """Read a contiguous, unfiltered little-endian float32 dataset straight from the file.

        One ``readinto`` at the dataset's file offset: as fast as ``np.load`` of an ``.npy``
        (HDF5's own read of the same bytes costs about 5 % more). Returns False, reading
        nothing, whenever the layout is anything else.
        """
        offset = dataset.id.get_offset()
        if offset is None or dataset.dtype != np.dtype("<f4") or dataset.compression:
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
        """Yield ``(features, labels)`` blocks of at most ``batch_rows`` rows, in order."""
        labels = self.labels
        dataset = self._h5["features"]
        for start in range(0, len(self), batch_rows):
            stop = min(start + batch_rows, len(self))
            yield dataset[start:stop], labels[start:stop]

    @property
    def labels(self) -> np.ndarray:
        """int32 (N,) class indices into :attr:`class_names`; -1 for unlabeled rows."""
        return self._h5["labels"][...]

    @property
    def ids(self) -> list[str]:
        """Row ids: paths relative to the source root, or ``array:<index>``."""
        return list(self._h5["ids"].asstr()[...])

    @property
    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names[i]``."""
        return _json_attr(self._h5, "class_names", [])

    @property
    def fingerprint(self) -> str:
        """``sha256:…`` of the inputs that determine the features."""
        return str(self._h5.attrs["fingerprint"])

    @property
    def identity(self) -> dict:
        """The inputs the fingerprint is computed from (base and source)."""
        return _json_attr(self._h5, "identity", {})

    @property
    def provenance(self) -> dict:
        """Everything about how the cache was made (base, source, software, extraction)."""
        return _json_attr(self._h5, "provenance", {})

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of each item skipped during extraction."""
        if "failed" not in self._h5:
            return []
        ids = self._h5["failed/ids"].asstr()[...]
        reasons = self._h5["failed/reasons"].asstr()[...]
        return list(zip(ids, reasons, strict=True))

    @property
    def manifest(self) -> dict[str, np.ndarray] | None:
        """Per-file ids, sizes and mtimes of the source at extraction time (file sources)."""
        if "manifest" not in self._h5:
            return None
        group = self._h5["manifest"]
        return {
            "ids": np.asarray(group["ids"].asstr()[...], dtype=object),
            "size": group["size"][...],
            "mtime_ns": group["mtime_ns"][...],
        }

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
        """The cache as a ``pandas.DataFrame`` (columns as :meth:`to_arrow`; needs pyarrow)."""
        from bottleneck_transfer.features.tables import require

        require("pandas", extra=None)
        return self.to_arrow(wide=wide).to_pandas()


def check_existing(path: str | Path, fingerprint: str, identity: dict) -> bool:
    """Whether a complete cache at ``path`` already holds exactly these inputs.

    Returns ``False`` when there is no cache. Raises :class:`StaleCacheError` when one
    exists for other inputs, and :class:`CacheError` when it is unreadable.
    """
    path = Path(path)
    if not path.exists():
        return False
    with FeatureCache.open(path) as cache:
        if cache.fingerprint == fingerprint:
            return True
        raise StaleCacheError(
            describe_difference(path, cache.identity, identity)
            + "; rerun with --force to replace it, or write to another file with -o"
        )
