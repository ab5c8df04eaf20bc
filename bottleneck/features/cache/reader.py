"""Reading a complete cache: :class:`FeatureCache` checks format, version, completeness, shapes
and finiteness before it hands out arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from bottleneck_transfer import limits
from bottleneck_transfer.display import Display, class_rows
from bottleneck_transfer.errors import CacheError, StaleCacheError
from bottleneck_transfer.features.cache.format import (
    FORMAT,
    FORMAT_VERSION,
    _json_attr,
    describe_difference,
    is_view,
)
from bottleneck_transfer.features.cache.partial import partial_path
from bottleneck_transfer.features.choices import STORE_DTYPES
from bottleneck_transfer.features.targets import VALUE_KINDS, Target, target_rows

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
        } | ({"target": self.target.describe()} if self._h5.attrs.get("target") else {})

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per class: its index, name and number of rows (then unlabeled rows)."""
        if not self._h5.id.valid:
            return []
        if self.target.kind in VALUE_KINDS:
            return target_rows(self.targets, self.target)
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
    def lazy_ids(self) -> CacheIds:
        """Row ids read from the file when asked for (streaming data: flat memory in rows)."""
        return CacheIds(self._h5["ids"])

    @_reads
    def read_ids(self, start: int, stop: int) -> list[str]:
        """The ids of rows ``start:stop`` alone (streaming readers: never all ids at once)."""
        return list(self._h5["ids"].asstr()[start:stop])

    @property
    @_reads
    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names[i]``."""
        return _json_attr(self._h5, "class_names", [])

    @property
    @_reads
    def target(self) -> Target:
        """What the rows are labelled with (:mod:`~bottleneck_transfer.features.targets`); a
        cache that records none (every cache before targets) has class targets."""
        return Target.from_dict(_json_attr(self._h5, "target"), self.class_names)

    @property
    @_reads
    def targets(self) -> np.ndarray:
        """float32 ``/targets``: (N, K) tag indicators (multi-label) or (N,) values
        (regression); for class and binary targets, :attr:`labels`."""
        kind = self.target.kind
        if kind not in VALUE_KINDS:
            return self.labels
        if not self._holds("targets"):
            raise CacheError(
                f"{self.path} records a {kind} target but holds no /targets: re-extract it "
                "with --force"
            )
        values = self._h5["targets"][...].astype(np.float32)
        expected = (len(self), 1 if kind == "regression" else len(self.target.names))
        if values.shape != expected:
            raise CacheError(
                f"{self.path}: /targets has shape {values.shape}, expected {expected}: "
                "re-extract it with --force"
            )
        return values[:, 0] if kind == "regression" else values

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
        (:mod:`~bottleneck_transfer.features.cache.tables`).
        """
        from bottleneck_transfer.features.cache.tables import cache_table

        return cache_table(self, wide=wide)

    def to_pandas(self, *, wide: bool = False) -> Any:
        """The cache as a ``pandas.DataFrame`` (columns as :meth:`to_arrow`; needs pyarrow);
        unlike other results' ``to_pandas``, the data itself, not the table of the repr."""
        from bottleneck_transfer.features.cache.tables import require

        require("pandas", extra=None)
        return self.to_arrow(wide=wide).to_pandas()

    def to_tf_dataset(
        self, *, batch_size: int = 32, shuffle: bool = False, seed: int | None = None
    ) -> Any:
        """A ``tf.data.Dataset`` of float32 ``(features, labels)`` batches read from the file
        (:func:`~bottleneck_transfer.features.cache.loaders.to_tf_dataset`; needs TensorFlow).

        Example: ``model.fit(cache.to_tf_dataset(batch_size=64, shuffle=True, seed=0))``.
        """
        from bottleneck_transfer.features.cache.loaders import to_tf_dataset

        return to_tf_dataset(self, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def to_torch(self) -> Any:
        """A ``torch.utils.data.Dataset`` of ``(features, label)`` rows read from the file
        (:func:`~bottleneck_transfer.features.cache.loaders.to_torch`; needs torch).

        Example: ``DataLoader(cache.to_torch(), batch_size=64, shuffle=True)``.
        """
        from bottleneck_transfer.features.cache.loaders import to_torch

        return to_torch(self)

    def to_hf_dataset(self) -> Any:
        """A Hugging Face ``datasets.Dataset`` (id, ClassLabel label, features), in memory
        (:func:`~bottleneck_transfer.features.cache.loaders.to_hf_dataset`; needs datasets)."""
        from bottleneck_transfer.features.cache.loaders import to_hf_dataset

        return to_hf_dataset(self)


class CacheIds(Sequence):
    """The ids of ``rows`` (sorted; default all) of a cache's ``/ids`` dataset, read from the
    file when indexed or iterated (a block at a time): a list of millions of ids costs
    about 150 bytes a row, which streaming heads otherwise never hold."""

    #: Ids read at a time when iterating or comparing.
    BLOCK = 65_536

    def __init__(self, dataset: h5py.Dataset, rows: np.ndarray | None = None) -> None:
        self._dataset, self._rows = dataset, rows

    def __len__(self) -> int:
        return len(self._dataset) if self._rows is None else len(self._rows)

    def _read(self, rows: np.ndarray) -> list[str]:
        """The ids of positions ``rows`` of this sequence (one read of their span)."""
        if self._rows is not None:
            rows = self._rows[rows]
        if not len(rows):
            return []
        first, stop = int(rows.min()), int(rows.max()) + 1
        return list(self._dataset.asstr()[first:stop][rows - first])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"id {key} of {len(self)}")
            return self._read(np.array([index]))[0]
        return self._read(np.arange(len(self))[key])

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), self.BLOCK):
            yield from self._read(np.arange(start, min(start + self.BLOCK, len(self))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        blocks = range(0, len(self), self.BLOCK)
        return all(
            list(self[s : s + self.BLOCK]) == list(other[s : s + self.BLOCK]) for s in blocks
        )

    __hash__ = None  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> CacheIds:
        """The ids of positions ``rows`` (sorted), still unread."""
        rows = np.asarray(rows, dtype=np.int64)
        return CacheIds(self._dataset, rows if self._rows is None else self._rows[rows])


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


def target_kind_of(path: str | Path) -> str:
    """The target kind of the cache at ``path``; ``"class"`` also when it cannot be opened
    (the class path then names what is wrong with it)."""
    try:
        with FeatureCache.open(path) as cache:
            return cache.target.kind
    except (CacheError, OSError):
        return "class"
