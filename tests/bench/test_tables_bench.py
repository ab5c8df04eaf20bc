"""The table-export benchmark runs end to end on a tiny cache (no times asserted)."""

from __future__ import annotations

import numpy as np
import pytest
from heads_fixtures import write_cache

pytest.importorskip("polars")
pytest.importorskip("duckdb")


def test_bench_tables_reads_every_format_back(tmp_path):
    from bottleneck_transfer.bench.tables import bench_tables

    rng = np.random.default_rng(0)
    cache = write_cache(tmp_path / "c.h5", rng.normal(size=(40, 6)), rng.integers(0, 3, 40))
    out = tmp_path / "out"
    out.mkdir()
    result = bench_tables(cache, out, repeats=1)
    assert result["rows"] == 40 and result["dim"] == 6
    assert set(result["sizes_mb"]) == {"hdf5", "parquet", "arrow", "feather", "parquet-wide"}
    assert result["read_vs_hdf5"]["hdf5 FeatureCache.arrays"] == 1.0
    assert len(result["read_seconds"]) == 8 and all(v >= 0 for v in result["read_seconds"].values())
