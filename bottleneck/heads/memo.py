"""Fitted heads memoized like features: stored by what they were fitted from, never refitted.

A fit's key is the fingerprint of its training data (the cache's fingerprint, or a hash of
in-memory arrays), the hash of the row indices used, the head kind with every parameter of
its estimator, the tuning settings, the seed, the versions of the libraries that fit it and
the source of this package's own estimator classes.
The fitted head is stored under that key as a head file (skops, loaded back through
:func:`~bottleneck_transfer.heads.trust.load_trusted`); the head's predictions on an
evaluation set are stored beside it under a key that adds the evaluation data and rows.
Both are written atomically, each recorded in its entry's manifest (sizes and sha256,
:mod:`bottleneck_transfer.entries`) before it appears; a stored fit or predictions whose
files do not match their manifest are never used: one
:class:`~bottleneck_transfer.errors.StoreEntryWarning`, computed again and rewritten.

The memo lives in the ``fits/`` folder of a cache store
(:class:`~bottleneck_transfer.features.store.CacheStore`), so a pipeline run twice, or with
one more head, fits only what is new.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer import __version__
from bottleneck_transfer.entries import EntryManifest, manifest_path, reusable
from bottleneck_transfer.features.store import FITS_FOLDER, CacheStore
from bottleneck_transfer.fingerprint import fingerprint, sha256_arrays, sha256_file
from bottleneck_transfer.heads.trust import load_trusted, skops_io

_LIBRARIES = ("numpy", "scikit-learn", "keras", "skops")
_PACKAGE = __name__.split(".")[0]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def rows_key(rows: np.ndarray) -> str:
    """The hash of a set of row indices (in order)."""
    return sha256_arrays([np.asarray(rows, np.int64)])


@functools.cache
def _module_digest(module: str) -> str:
    return sha256_file(sys.modules[module].__file__)


def code_versions(steps: list[Any]) -> dict[str, str]:
    """The sha256 of the source of each of this package's modules that defines a step's class.

    The package's version does not change with every edit of its own estimators; their
    source does (a library's classes are covered by the library's version).
    """
    modules = {type(step).__module__ for step in steps}
    return {m: _module_digest(m) for m in sorted(modules) if m.split(".")[0] == _PACKAGE}


def fit_key(
    data: str,
    rows: np.ndarray,
    kind: str,
    params: dict[str, Any],
    tune: dict | None,
    seed: int,
    code: dict[str, str],
) -> str:
    """The key of one fit: data, rows, head kind and parameters, tuning, seed and versions."""
    return fingerprint(
        {
            "data": data,
            "rows": rows_key(rows),
            "head": kind,
            "params": params,
            "tune": tune,
            "seed": seed,
            "versions": {"bottleneck": __version__, **{d: _version(d) for d in _LIBRARIES}},
            "code": code,
        }
    )


def prediction_key(fit: str, data: str, rows: np.ndarray) -> str:
    """The key of a fitted head's predictions on ``rows`` of ``data``."""
    return fingerprint({"fit": fit, "data": data, "rows": rows_key(rows)})


class FitMemo:
    """Fitted heads and their predictions, one file per key under ``root``.

    Parameters
    ----------
    root : str or Path
        The folder; created on the first write.

    Examples
    --------
    >>> memo = FitMemo.of_store(CacheStore("caches"))  # doctest: +SKIP
    >>> compare_heads("caches/train.h5", "caches/test.h5", memo=memo)  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def of_store(cls, store: CacheStore) -> FitMemo:
        """The memo in a cache store's ``fits/`` folder."""
        return cls(store.root / FITS_FOLDER)

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / f"{key.split(':', 1)[-1][:32]}{suffix}"

    def _manifest(self, key: str, suffix: str) -> Path:
        """The manifest of the fit (``suffix`` ``""``) or the predictions (``".npz"``)."""
        return manifest_path(self._path(key, suffix))

    def load_meta(self, key: str) -> dict | None:
        """The metadata stored with the fit ``key``, or None when there is no intact stored
        fit: never stored, or its files not as written (pruned meanwhile, truncated, edited:
        one :class:`~bottleneck_transfer.errors.StoreEntryWarning`); refitted and stored
        again, as any cache miss."""
        path = self._path(key, ".json")
        if not reusable(path, "fit", manifest=self._manifest(key, "")):
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        CacheStore.touch(path)  # its last use: ``cache prune --older-than`` goes by it
        return meta

    def load_head(self, key: str, kind: str) -> Any:
        """The fitted head stored under ``key`` (see :meth:`load_meta` for whether there is one).

        Raises
        ------
        HeadError
            If the stored file is not a head of ``kind`` (it is never loaded then).
        """
        path = self._path(key, ".skops")
        head = load_trusted(path, kind)["head"]
        CacheStore.touch(path)
        return head

    def save_head(self, key: str, estimator: Any, metadata: dict) -> Path:
        """Store a fitted head and its metadata under ``key``: the head file, then the metadata.

        Each appears atomically, the metadata last, so a key with metadata has its head.
        """
        path = self._path(key, ".skops")
        text = json.dumps(metadata)
        manifest = EntryManifest(self._manifest(key, ""))
        with manifest.writing(path.name) as tmp:
            skops_io().dump({"head": estimator, "meta": text}, tmp)
        with manifest.writing(self._path(key, ".json").name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return path

    def load_predictions(self, key: str) -> dict[str, Any] | None:
        """The stored predictions of ``key`` (arrays and their ``meta`` dict), or None when
        there are none, or they are not as written (one
        :class:`~bottleneck_transfer.errors.StoreEntryWarning`) or unreadable: a miss,
        predicted and stored again."""
        path = self._path(key, ".npz")
        if not reusable(path, "predictions"):
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays: dict[str, Any] = {name: stored[name] for name in stored.files}
            arrays["meta"] = json.loads(str(arrays["meta"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        if not isinstance(arrays["meta"], dict):
            return None
        CacheStore.touch(path)
        return arrays

    def save_predictions(self, key: str, meta: dict, **arrays: np.ndarray) -> Path:
        """Store predictions (and any other arrays) with a JSON ``meta`` under ``key``."""
        path = self._path(key, ".npz")
        manifest = EntryManifest(self._manifest(key, ".npz"))
        with manifest.writing(path.name) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        return path
