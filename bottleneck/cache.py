"""The HDF5 feature cache, format version 1: writing with resume, atomic finalize, reading.

Layout (see README, "Cache format"):

``/features`` float32 (N, D) · ``/labels`` int32 (N,) · ``/ids`` str (N,) ·
``/failed/ids``, ``/failed/reasons`` str · ``/manifest/{ids,size,mtime_ns}`` (file sources) ·
root attrs ``format``, ``format_version``, ``complete``, ``fingerprint``, ``identity``,
``provenance``, ``class_names`` (JSON) and, while writing, ``rows_committed``,
``failed_committed``, ``items_done``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bottleneck.errors import CacheError, StaleCacheError
from bottleneck.fingerprint import diff_keys

FORMAT = "bottleneck-cache"
FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20
_STR = h5py.string_dtype("utf-8")


def partial_path(path: str | Path) -> Path:
    """The path a cache is written to until it is complete."""
    return Path(f"{path}.partial")


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.asarray(list(values), dtype=object)


def _json_attr(handle: h5py.File, name: str, default: Any = None) -> Any:
    raw = handle.attrs.get(name)
    return default if raw is None else json.loads(raw)


def describe_difference(path: str | Path, old_identity: dict, new_identity: dict) -> str:
    """A sentence naming the fields in which two cache identities differ."""
    keys = diff_keys(old_identity, new_identity) or ["fingerprint"]
    return f"{path} was made from different inputs (differs in: {', '.join(keys)})"


class CacheWriter:
    """Append-only writer of a ``.partial`` cache, committed in consistent steps.

    Batches are appended in source order; :meth:`commit` records how many rows, failures
    and source items are durable and flushes, so a crash or Ctrl-C at any point leaves a
    file that :meth:`resume` truncates back to the last commit.
    """

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self._h5 = handle
        self.path = path
        self._consistent = (
            int(handle.attrs["rows_committed"]),
            int(handle.attrs["failed_committed"]),
            int(handle.attrs["items_done"]),
        )

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
        manifest: dict[str, np.ndarray] | None = None,
    ) -> CacheWriter:
        """Start a new ``.partial`` file at ``path`` (overwriting any old one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        h5 = h5py.File(path, "w")
        rows_per_chunk = max(1, min(CHUNK_BYTES // (4 * dim), 1 << 16))
        h5.create_dataset(
            "features", (0, dim), np.float32, maxshape=(None, dim), chunks=(rows_per_chunk, dim)
        )
        h5.create_dataset("labels", (0,), np.int32, maxshape=(None,), chunks=(1 << 14,))
        h5.create_dataset("ids", (0,), _STR, maxshape=(None,), chunks=(1 << 12,))
        failed = h5.create_group("failed")
        for name in ("ids", "reasons"):
            failed.create_dataset(name, (0,), _STR, maxshape=(None,), chunks=(256,))
        if manifest is not None:
            group = h5.create_group("manifest")
            group.create_dataset("ids", data=_strings(manifest["ids"]), dtype=_STR)
            group.create_dataset("size", data=np.asarray(manifest["size"], np.int64))
            group.create_dataset("mtime_ns", data=np.asarray(manifest["mtime_ns"], np.int64))
        h5.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "complete": False,
                "fingerprint": fingerprint,
                "identity": json.dumps(identity, sort_keys=True),
                "provenance": json.dumps(provenance, sort_keys=True),
                "class_names": json.dumps(list(class_names)),
                "rows_committed": 0,
                "failed_committed": 0,
                "items_done": 0,
            }
        )
        h5.flush()
        return cls(h5, path)

    @classmethod
    def resume(cls, path: str | Path, fingerprint: str, identity: dict) -> CacheWriter:
        """Reopen a ``.partial`` file made for the same fingerprint, truncated to its last commit.

        Raises
        ------
        StaleCacheError
            If the partial file was started for different inputs.
        CacheError
            If the file cannot be read (e.g. the crash damaged it); delete it to start over.
        """
        path = Path(path)
        try:
            h5 = h5py.File(path, "r+")
        except OSError as exc:
            raise CacheError(
                f"cannot reopen the interrupted extraction {path} ({exc}); delete it to start over"
            ) from exc
        if h5.attrs.get("fingerprint") != fingerprint:
            old = _json_attr(h5, "identity", {})
            h5.close()
            raise StaleCacheError(
                describe_difference(path, old, identity)
                + "; rerun with --force to discard it and start over"
            )
        writer = cls(h5, path)
        writer._truncate()
        return writer

    def _truncate(self) -> None:
        rows, n_failed, _ = self._consistent
        for name in ("features", "labels", "ids"):
            self._h5[name].resize(rows, axis=0)
        for name in ("failed/ids", "failed/reasons"):
            self._h5[name].resize(n_failed, axis=0)

    def write_batch(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        ids: Sequence[str],
        failures: Sequence[tuple[str, str]],
        items_done: int,
    ) -> None:
        """Append one batch's rows and failures; ``items_done`` source items are then handled.

        Becomes durable at the next :meth:`commit`. An interruption inside this call leaves
        the previous batch as the last consistent state.
        """
        n = len(ids)
        if features.shape[0] != n or labels.shape[0] != n:
            raise ValueError(
                f"rows disagree: {features.shape[0]} features, {labels.shape[0]} labels, {n} ids"
            )
        rows, n_failed = self._consistent[0], self._consistent[1]
        self._extend(
            rows,
            [
                ("features", np.asarray(features, np.float32)),
                ("labels", np.asarray(labels, np.int32)),
                ("ids", _strings(ids)),
            ],
        )
        if failures:
            failed_ids, reasons = zip(*failures, strict=True)
            self._extend(
                n_failed,
                [("failed/ids", _strings(failed_ids)), ("failed/reasons", _strings(reasons))],
            )
        self._consistent = (rows + n, n_failed + len(failures), items_done)

    def _extend(self, start: int, columns: list[tuple[str, np.ndarray]]) -> None:
        for name, values in columns:
            dataset = self._h5[name]
            stop = start + len(values)
            if dataset.shape[0] != stop:
                dataset.resize(stop, axis=0)
            if len(values):
                dataset[start:stop] = values

    @property
    def rows(self) -> int:
        """Rows written up to the last complete batch."""
        return self._consistent[0]

    @property
    def items_done(self) -> int:
        """Source items handled (rows + failures) up to the last complete batch."""
        return self._consistent[2]

    def commit(self) -> None:
        """Make everything up to the last complete batch durable."""
        rows, n_failed, items_done = self._consistent
        self._h5.attrs.update(
            {"rows_committed": rows, "failed_committed": n_failed, "items_done": items_done}
        )
        self._h5.flush()

    def finalize(self, final_path: str | Path, extraction: dict) -> Path:
        """Mark complete, close and atomically move the file to ``final_path``."""
        provenance = _json_attr(self._h5, "provenance", {})
        provenance["extraction"] = extraction
        self._h5.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        self._truncate()
        for name in ("rows_committed", "failed_committed", "items_done"):
            del self._h5.attrs[name]
        self._h5.attrs["complete"] = True
        self._h5.close()
        os.replace(self.path, final_path)
        return Path(final_path)

    def close(self) -> None:
        """Close without finalizing (the partial file stays for a later resume)."""
        if self._h5.id.valid:
            self._h5.close()


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
            if out.size:
                dataset.read_direct(out)
            self._features = out
        return self._features

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
