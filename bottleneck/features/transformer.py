"""A scikit-learn transformer from images to cached bottleneck features.

:class:`BottleneckFeatures` maps image paths (or a whole source) to the frozen base's
features through the cache store, so that in a ``Pipeline`` under ``GridSearchCV`` the base
runs once per image, however many folds and parameter settings ask for it::

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("features", BottleneckFeatures(base="resnet50")),
                     ("clf", LogisticRegression(max_iter=1000))])
    GridSearchCV(pipe, {"clf__C": [0.1, 1, 10]}).fit(paths, labels)

Every image is looked up first in the store's caches made by the same base (any cache of a
file source: ``bottleneck extract`` or an earlier transform), matched by its absolute path,
size and modification time; only the images found nowhere are extracted, into one new
store cache keyed by its fingerprint.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import CacheError, SourceError
from bottleneck_transfer.estimator import LightEstimator

if TYPE_CHECKING:
    from bottleneck_transfer.features.bases.common import Base
    from bottleneck_transfer.features.sources import Source
    from bottleneck_transfer.features.store import CacheStore

#: Source kind of the caches the transformer writes for lists of image files.
FILES_KIND = "files"
#: Where a rowed image lives: (cache path, row).
_Location = tuple[Path, int]


@functools.lru_cache(maxsize=4)
def _cached_base(base: str, options: tuple, stamp: tuple) -> Base:
    """Build a base once per process (``stamp`` changes when a model file changes)."""
    from bottleneck_transfer.features.bases.load import load_base

    return load_base(base, **dict(options))


def _base_stamp(base: str) -> tuple:
    try:
        stat = os.stat(base)
    except OSError:
        return ()
    return (stat.st_size, stat.st_mtime_ns)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _item_folder(described: dict) -> Path:
    """The folder a file source's ids are relative to (a CSV's ids: its own folder)."""
    root = Path(described.get("root", ""))
    return root.parent if described.get("kind") == "csv" else root


def _as_paths(X: Any) -> list[str]:
    """Absolute, symlink-free paths from a sequence (or one-column array) of image paths."""
    values = np.asarray(X, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or not all(isinstance(v, (str, os.PathLike)) for v in values):
        raise SourceError(
            "BottleneckFeatures takes a sequence of image paths (or one column of them), or "
            f"one source (a folder, a CSV manifest, fashion-mnist:train). Received: X of shape "
            f"{values.shape}"
        )
    return [os.path.realpath(os.fspath(v)) for v in values]


class BottleneckFeatures(LightEstimator):
    """Images → a frozen base's bottleneck features, cached in the store.

    Parameters
    ----------
    base : str
        A ``keras.applications`` name, a ``.keras``/``.h5`` model file, or ``pixels``
        (see :func:`~bottleneck_transfer.features.bases.load_base`).
    weights, image_size, pooling, layer, preprocess
        As for :func:`~bottleneck_transfer.features.bases.load_base`.
    cache_dir : str or Path, optional
        The cache store (default: ``$BOTTLENECK_CACHE_DIR``, else ``./caches``).
    batch_size : int, optional
        Images per model call when extracting.
    progress : bool, default=False
        Show a progress bar while extracting.

    Attributes
    ----------
    base_description_ : dict
        The base's identity (part of every cache fingerprint).
    n_features_out_ : int
        Feature size D.

    Examples
    --------
    >>> features = BottleneckFeatures(base="data/bases/fashion_mnist_0-4.keras")
    >>> X = features.fit_transform(["img/a.png", "img/b.png"])  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (2, 128)
    """

    def __init__(
        self,
        base: str = "resnet50",
        *,
        weights: str | None = None,
        image_size: int | None = None,
        pooling: str = "avg",
        layer: str | None = None,
        preprocess: str | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> None:
        self.base = base
        self.weights = weights
        self.image_size = image_size
        self.pooling = pooling
        self.layer = layer
        self.preprocess = preprocess
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.progress = progress

    def _base(self) -> Base:
        options = (
            ("weights", self.weights),
            ("image_size", self.image_size),
            ("pooling", self.pooling),
            ("layer", self.layer),
            ("preprocess", self.preprocess),
        )
        return _cached_base(str(self.base), options, _base_stamp(str(self.base)))

    def _store(self) -> CacheStore:
        from bottleneck_transfer.features.store import CacheStore, default_cache_dir

        return CacheStore(self.cache_dir or default_cache_dir())

    def fit(self, X: Any = None, y: Any = None) -> BottleneckFeatures:
        """Build the base (once per process); the features need no fitting. Returns self."""
        base = self._base()
        self.base_description_ = base.description
        self.n_features_out_ = int(base.description["feature_dim"])
        return self

    def transform(self, X: Any) -> Any:
        """Features of each image, float32 ``(n_images, D)``, in the order given.

        ``X`` is a sequence of image paths (or a one-column array of them), or one source:
        a :class:`~bottleneck_transfer.features.sources.Source`, or a string or Path naming
        one (a folder, a CSV manifest, ``fashion-mnist:test``). Images already in a store
        cache of this base are read from it; the others are extracted once.

        Raises
        ------
        ImageError
            If an image cannot be decoded (the transformer returns one row per image).
        """
        from bottleneck_transfer.features.sources import Source, open_source

        self.check_fitted()
        if isinstance(X, (str, os.PathLike)):
            X = open_source(X)
        if isinstance(X, Source) and X.arrays is not None:
            return self.wrap_output(self._whole_source(X), X)
        if isinstance(X, Source):
            paths = [os.path.realpath(item.path) for item in X.items]
        else:
            paths = _as_paths(X)
        if not paths:
            return self.wrap_output(np.empty((0, self.n_features_out_), np.float32), X)
        stats = {path: _stat(path) for path in dict.fromkeys(paths)}
        found = self._lookup(stats)
        missing = [path for path in stats if path not in found]
        if missing:
            found.update(self._extract(missing))
        return self.wrap_output(self._gather([found[path] for path in paths]), X)

    def _whole_source(self, source: Source) -> np.ndarray:
        from bottleneck_transfer.features.cache.reader import FeatureCache
        from bottleneck_transfer.features.extract import extract
        from bottleneck_transfer.features.loop import cache_identity
        from bottleneck_transfer.fingerprint import fingerprint

        base = self._base()
        store = self._store()
        out = store.path_for(fingerprint(cache_identity(base, source, source.manifest())))
        extract(source, base, out, batch_size=self.batch_size, strict=True, progress=self.progress)
        store.touch(out)
        with FeatureCache.open(out) as cache:
            return cache.features

    def _lookup(self, stats: dict[str, tuple[int, int] | None]) -> dict[str, _Location]:
        """Where each wanted image already is, in a store cache of this base and file."""
        from bottleneck_transfer.features.cache.reader import FeatureCache

        found: dict[str, _Location] = {}
        root = self._store().root
        for path in sorted(root.glob("*.h5")) if root.is_dir() else []:
            try:
                cache = FeatureCache.open(path)
            except CacheError:  # not a complete cache (someone else's file): skip it
                continue
            with cache:
                manifest = cache.manifest
                if manifest is None or cache.identity.get("base") != self.base_description_:
                    continue
                folder = _item_folder(cache.provenance.get("source", {}))
                sizes, mtimes = manifest["size"], manifest["mtime_ns"]
                row_of = {item_id: row for row, item_id in enumerate(cache.ids)}
                for k, item_id in enumerate(manifest["ids"]):
                    image = os.path.realpath(folder / item_id)
                    if image in found or image not in stats or item_id not in row_of:
                        continue
                    if stats[image] == (int(sizes[k]), int(mtimes[k])):
                        found[image] = (path, row_of[item_id])
        return found

    def _extract(self, paths: Sequence[str]) -> dict[str, _Location]:
        """Extract the images found in no cache into one new store cache; where each went."""
        from bottleneck_transfer.features.extract import extract
        from bottleneck_transfer.features.loop import cache_identity
        from bottleneck_transfer.features.sources import Item, Source
        from bottleneck_transfer.fingerprint import fingerprint

        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
        items = [Item(os.path.relpath(p, folder), -1, Path(p)) for p in paths]
        source = Source(FILES_KIND, folder, [], items, {"spec": None, "files": len(items)})
        base = self._base()
        store = self._store()
        out = store.path_for(fingerprint(cache_identity(base, source, source.manifest())))
        extract(source, base, out, batch_size=self.batch_size, strict=True, progress=self.progress)
        store.touch(out)
        return {path: (out, row) for row, path in enumerate(paths)}

    @staticmethod
    def _gather(locations: list[_Location]) -> np.ndarray:
        """Read each ``(cache, row)`` once, grouped by cache, in increasing row order."""
        from bottleneck_transfer.features.cache.reader import FeatureCache

        by_cache: dict[Path, list[int]] = {}
        for k, (path, _) in enumerate(locations):
            by_cache.setdefault(path, []).append(k)
        out: np.ndarray | None = None
        for path, positions in by_cache.items():
            rows = np.asarray([locations[k][1] for k in positions])
            unique, inverse = np.unique(rows, return_inverse=True)
            with FeatureCache.open(path) as cache:
                block = cache.features_dataset[unique.tolist()]
                if out is None:
                    out = np.empty((len(locations), cache.dim), np.float32)
            out[positions] = block[inverse]
        assert out is not None
        return out
