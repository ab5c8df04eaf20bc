"""Reading a source's rows: index sets kept without copies, spans, and shuffled chunk batches.

A *source* is anything sliced like the cache's ``/features``: an array, the HDF5 dataset
(:attr:`FeatureCache.features_dataset`), or a :class:`RowSubset` of either (a split's rows,
kept as indices). The estimators (:mod:`heads.estimators`) and the streaming heads
(:mod:`heads.streaming`) both read through here; it knows nothing of head kinds.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

#: A chunk's rows are read as one span when the span holds at most this many times their
#: number of rows (dense index sets), else by HDF5's point selection.
SPAN_FACTOR = 4


class RowSubset:
    """The rows ``rows`` (sorted) of a source, without reading them: a split kept as indices.

    Sliced like an array (``subset[a:b]``, ``subset[sorted_index]``), it reads only those rows
    of ``source``.
    """

    def __init__(self, source: Any, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if isinstance(source, RowSubset):
            source, rows = source.source, source.rows[rows]
        self.source, self.rows = source, rows
        self.shape = (len(rows), *source.shape[1:])
        self.ndim, self.dtype = len(self.shape), np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_rows(self.source, self.rows[key])


def read_rows(source: Any, rows: np.ndarray) -> np.ndarray:
    """float32 features of the sorted ``rows`` of ``source``: one contiguous read of their span
    when they are dense in it (:data:`SPAN_FACTOR`), else a point selection."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(source, (np.ndarray, RowSubset)):
        return np.asarray(source[rows], dtype=np.float32)
    if not len(rows):
        return np.zeros((0, *source.shape[1:]), np.float32)
    first, stop = int(rows[0]), int(rows[-1]) + 1
    if stop - first == len(rows):
        return np.asarray(source[first:stop], dtype=np.float32)
    if stop - first <= SPAN_FACTOR * len(rows):
        return np.asarray(source[first:stop], dtype=np.float32)[rows - first]
    return np.asarray(source[rows], dtype=np.float32)


def chunk_starts(n: int, chunk_rows: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Starts of the ``chunk_rows`` pieces of ``n`` positions, shuffled by ``rng`` when given."""
    starts = np.arange(0, n, max(1, chunk_rows))
    return starts if rng is None else rng.permutation(starts)


@functools.cache
def _batches_class() -> type:
    """The Keras ``PyDataset`` of :func:`chunk_batches` (Keras imported on first use)."""
    import keras

    class ChunkBatches(keras.utils.PyDataset):
        """Batches of ``batch_size`` rows: chunks in a seeded shuffled order, each read once
        (one HDF5 slice), its rows shuffled and cut into batches, the last topped up from the
        same chunk (one batch shape: one compiled step)."""

        def __init__(self, source, y, batch_size, chunk_rows, seed) -> None:
            super().__init__()
            self.source, self.y = source, y
            self.batch_size = min(batch_size, len(y))
            self.chunk_rows = max(self.batch_size, chunk_rows // self.batch_size * self.batch_size)
            self.rng = np.random.default_rng(seed)
            self._cached: tuple | None = None
            self.epoch = -1
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            n, self.epoch = len(self.y), self.epoch + 1
            self.starts = chunk_starts(n, self.chunk_rows, self.rng)
            per = [math.ceil(min(self.chunk_rows, n - s) / self.batch_size) for s in self.starts]
            self.index = [(c, b) for c, count in enumerate(per) for b in range(count)]

        @property
        def num_batches(self) -> int:
            return len(self.index)

        def __len__(self) -> int:
            return len(self.index)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            chunk, batch = self.index[i]
            if self._cached is None or self._cached[0] != (self.epoch, chunk):
                start = int(self.starts[chunk])
                X = self.source[start : start + self.chunk_rows]
                y = self.y[start : start + self.chunk_rows]
                order = self.rng.permutation(len(y))
                total = math.ceil(len(y) / self.batch_size) * self.batch_size
                order = np.concatenate([order, order[: total - len(y)]])
                self._cached = ((self.epoch, chunk), X, y, order)
            _, X, y, order = self._cached
            rows = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            return X[rows], y[rows]

    return ChunkBatches


def chunk_batches(
    source: Any, y: np.ndarray, *, batch_size: int, chunk_rows: int, seed: int
) -> Any:
    """A Keras ``PyDataset`` of ``(X, y)`` batches streaming ``source`` in seeded chunks."""
    return _batches_class()(source, y, batch_size, chunk_rows, seed)
