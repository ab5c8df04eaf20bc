"""Benchmark: exporting a cache as Parquet/Arrow/Feather, and reading it back, against HDF5.

``python -m bottleneck_transfer.bench.tables CACHE [--repeats 3] [-o FOLDER]`` exports CACHE in
every format (and wide Parquet), then times reading the whole table back into a float32
(N, D) matrix with each reader (pyarrow, pandas, polars, DuckDB) against
``FeatureCache.open(...).arrays()`` on the HDF5 file. Prints JSON: median seconds per step,
file sizes, and each read's ratio to the HDF5 read. Needs pyarrow, pandas, polars, duckdb.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.export import export_cache


def _matrix(column: Any, dim: int) -> np.ndarray:
    """A fixed-size-list Arrow column as a float32 (N, dim) array, without a Python loop."""
    return column.combine_chunks().flatten().to_numpy().reshape(-1, dim)


def _readers(dim: int) -> dict[str, Callable[[Path], np.ndarray]]:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    def hdf5(path: Path) -> np.ndarray:
        with FeatureCache.open(path) as cache:
            X, _ = cache.arrays()
            cache.ids  # noqa: B018 - a table read brings the ids too
            return X

    return {
        "hdf5 FeatureCache.arrays": hdf5,
        "parquet pyarrow": lambda p: _matrix(pq.read_table(p)["features"], dim),
        "parquet pandas": lambda p: np.stack(pd.read_parquet(p)["features"].to_numpy()),
        "parquet polars": lambda p: pl.read_parquet(p)["features"].to_numpy(),
        "parquet duckdb": lambda p: _matrix(
            duckdb.sql(f"select * from '{p}'").to_arrow_table()["features"], dim
        ),
        "arrow pyarrow (memory map)": lambda p: _matrix(
            pa.ipc.open_file(pa.memory_map(str(p))).read_all()["features"], dim
        ),
        "feather pyarrow": lambda p: _matrix(pa.ipc.open_file(p).read_all()["features"], dim),
        "parquet-wide pandas": lambda p: pd.read_parquet(p).iloc[:, 3:].to_numpy(np.float32),
    }


def _median_seconds(step: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_tables(cache: str | Path, folder: str | Path, repeats: int = 3) -> dict[str, Any]:
    """Export and read times (median of ``repeats``) and sizes for every table format."""
    cache, folder = Path(cache), Path(folder)
    with FeatureCache.open(cache) as opened:
        rows, dim = len(opened), opened.dim
        reference = opened.features.copy()
    files = {
        "parquet": folder / "t.parquet",
        "arrow": folder / "t.arrow",
        "feather": folder / "t.feather",
        "parquet-wide": folder / "t-wide.parquet",
    }
    export = {
        kind: _median_seconds(
            lambda kind=kind, path=path: export_cache(cache, path, wide=kind == "parquet-wide"),
            repeats,
        )
        for kind, path in files.items()
    }
    sources = {"hdf5": cache, **files}
    read: dict[str, float] = {}
    for name, reader in _readers(dim).items():
        path = sources[name.split(" ", 1)[0]]
        np.testing.assert_array_equal(reader(path), reference)  # and warms the file cache
        read[name] = _median_seconds(lambda reader=reader, path=path: reader(path), repeats)
    hdf5 = read["hdf5 FeatureCache.arrays"]
    return {
        "cache": str(cache),
        "rows": rows,
        "dim": dim,
        "repeats": repeats,
        "sizes_mb": {kind: round(path.stat().st_size / 1e6, 1) for kind, path in sources.items()},
        "export_seconds": {k: round(v, 3) for k, v in export.items()},
        "read_seconds": {k: round(v, 3) for k, v in read.items()},
        "read_vs_hdf5": {k: round(v / hdf5, 2) for k, v in read.items()},
    }


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("cache")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-o", "--out", help="Folder for the exported files (default: a temp).")
    args = parser.parse_args()
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        result = bench_tables(args.cache, args.out, args.repeats)
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = bench_tables(args.cache, folder, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
