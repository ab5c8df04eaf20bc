"""A cache in the loaders people train with: ``tf.data``, PyTorch and Hugging Face ``datasets``.

Each reads the cache's file by its path (an open :class:`~.reader.FeatureCache` need not stay
open) in slices, never the whole matrix at once, except :func:`to_hf_dataset`, which makes an
in-memory Arrow table. TensorFlow, torch and datasets are imported only when asked for; a
missing one is one line saying how to install it.

Examples
--------
>>> with FeatureCache.open("caches/train.h5") as cache:  # doctest: +SKIP
...     train = cache.to_tf_dataset(batch_size=64, shuffle=True, seed=0)
...     rows = cache.to_torch()
...     hf = cache.to_hf_dataset()
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.features.cache.tables import record_batches, require

if TYPE_CHECKING:
    from bottleneck_transfer.features.cache.reader import FeatureCache


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size that is not a positive integer."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )


def batch_order(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Row indices of each batch: in order, or shuffled by ``rng`` (a new order each call)."""
    rows = np.arange(n) if rng is None else rng.permutation(n)
    for start in range(0, n, batch_size):
        yield rows[start : start + batch_size]


def read_rows(dataset: Any, labels: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 features (from a ``features_dataset``) and int32 labels of ``rows`` (any order,
    repeats allowed): one slice when they are consecutive, else one sorted HDF5 selection."""
    rows = np.asarray(rows, np.int64)
    if rows.size and (np.diff(rows) == 1).all():
        features = dataset[int(rows[0]) : int(rows[-1]) + 1]
    else:
        unique, inverse = np.unique(rows, return_inverse=True)
        features = np.asarray(dataset[unique])[inverse]
    return np.asarray(features, np.float32), labels[rows].astype(np.int32)


def to_tf_dataset(
    cache: FeatureCache, *, batch_size: int = 32, shuffle: bool = False, seed: int | None = None
) -> Any:
    """A ``tf.data.Dataset`` of ``(features, labels)`` batches read from the file.

    Parameters
    ----------
    cache : FeatureCache
        The cache (its path is read; it may be closed afterwards).
    batch_size : int, default=32
        Rows per batch (the last may be smaller).
    shuffle : bool, default=False
        A new row order on each pass over the dataset, drawn from ``seed``.
    seed : int, optional
        Makes the sequence of orders repeatable.

    Returns
    -------
    tf.data.Dataset
        float32 ``(batch, D)`` features and int32 ``(batch,)`` labels (-1: unlabeled).
    """
    tf = require("tensorflow", extra=None)
    path, n, dim, reopen = Path(cache.path), len(cache), cache.dim, type(cache).open
    check_batch_size(batch_size)
    rng = np.random.default_rng(seed) if shuffle else None

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with reopen(path) as opened:
            dataset, labels = opened.features_dataset, opened.labels
            for rows in batch_order(n, batch_size, rng):
                yield read_rows(dataset, labels, rows)

    signature = (
        tf.TensorSpec((None, dim), tf.float32),
        tf.TensorSpec((None,), tf.int32),
    )
    return tf.data.Dataset.from_generator(batches, output_signature=signature)


@functools.cache
def _torch_dataset_class() -> type:
    """:class:`torch.utils.data.Dataset` over a cache's rows (made once torch is imported)."""
    torch = require("torch", extra=None)

    class CacheDataset(torch.utils.data.Dataset):
        """Rows of a cache as ``(features float32 (D,), label int64)`` tensors.

        The file is opened in each process that reads it (DataLoader workers included).
        """

        def __init__(self, cache: FeatureCache) -> None:
            self.path, self._n, self._reopen = Path(cache.path), len(cache), type(cache).open
            self._open: tuple[int, FeatureCache, np.ndarray] | None = None

        def __len__(self) -> int:
            return self._n

        def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if self._open is None or self._open[0] != os.getpid():
                cache = self._reopen(self.path)
                self._open = (os.getpid(), cache, cache.labels)
            _, cache, labels = self._open
            bad = rows[(rows < -self._n) | (rows >= self._n)]
            if bad.size:
                raise IndexError(f"row {bad[0]} is outside this cache's {self._n} rows")
            return read_rows(cache.features_dataset, labels, rows % self._n)

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            X, y = self._read(np.asarray([index]))
            return torch.from_numpy(X[0]), torch.tensor(int(y[0]))

        def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any]]:
            X, y = self._read(np.asarray(indices, np.int64))
            return [(torch.from_numpy(x), torch.tensor(int(t))) for x, t in zip(X, y, strict=True)]

        def __getstate__(self) -> dict:
            return {**self.__dict__, "_open": None}  # a worker opens its own handle

    return CacheDataset


def to_torch(cache: FeatureCache) -> Any:
    """A ``torch.utils.data.Dataset`` of ``(features, label)`` rows, for a ``DataLoader``.

    Features are float32 ``(D,)`` tensors, labels int64 scalars (-1: unlabeled); rows are
    read from the file when asked for. Needs torch (``pip install torch``).
    """
    return _torch_dataset_class()(cache)


def to_hf_dataset(cache: FeatureCache) -> Any:
    """A Hugging Face ``datasets.Dataset``: ``id``, ``label`` (a ``ClassLabel`` with the
    cache's class names; -1 unlabeled) and ``features`` (float32 lists of length D).

    Held in memory as one Arrow table. Needs ``pip install 'bottleneck-transfer[hf]'``.
    """
    pa = require("pyarrow")
    datasets = require("datasets", extra="hf")
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "label": datasets.ClassLabel(names=cache.class_names),
            "features": datasets.List(datasets.Value("float32"), length=cache.dim),
        }
    )
    batches = [batch.select(["id", "label", "features"]) for batch in record_batches(cache)]
    table = pa.Table.from_batches(batches).cast(features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
