"""Issue 26 part 4: ``cache export`` streams row groups; it never reads the whole features."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.export import export_cache
from heads_fixtures import write_cache

pq = pytest.importorskip("pyarrow.parquet")


class RecordingDataset:
    """The features dataset, recording the rows of every read."""

    def __init__(self, dataset) -> None:
        self.dataset, self.shape, self.dtype = dataset, dataset.shape, np.dtype(np.float32)
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        block = np.asarray(self.dataset[key], np.float32)
        self.reads.append(len(block))
        return block


def test_export_reads_and_writes_one_row_group_at_a_time(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    cache = write_cache(tmp_path / "c.h5", X, rng.integers(0, 3, 50), class_names=["a", "b", "c"])
    recorders: list[RecordingDataset] = []
    original = FeatureCache.features_dataset

    def recording(self):
        recorders.append(RecordingDataset(original.fget(self)))
        return recorders[-1]

    def whole(self):
        raise AssertionError("export must not read every feature row at once")

    monkeypatch.setattr(FeatureCache, "features_dataset", property(recording))
    monkeypatch.setattr(FeatureCache, "features", property(whole))
    out = export_cache(cache, tmp_path / "c.parquet", batch_rows=16)
    assert [read for r in recorders for read in r.reads] == [16, 16, 16, 2]
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [16, 16, 16, 2]
    features = np.stack(pq.read_table(out)["features"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(features, X)
