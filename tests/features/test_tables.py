"""Caches out as tables: Parquet/Arrow/Feather read back by pyarrow, pandas, polars, DuckDB."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import CacheError, MissingDependencyError
from bottleneck_transfer.features.cache import FeatureCache, tables
from bottleneck_transfer.features.cache.export import export_cache
from bottleneck_transfer.features.cache.tables import read_metadata
from click.testing import CliRunner
from heads_fixtures import write_cache

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CLASS_NAMES = ["boot", "shirt", "bag"]
N, DIM = 23, 5


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, DIM)).astype(np.float32)
    y = rng.integers(0, 3, N)
    y[[3, 11]] = -1  # unlabeled rows: class_name is null
    return write_cache(
        tmp_path_factory.mktemp("tables") / "c.h5", X, y, class_names=CLASS_NAMES, source="s"
    )


@pytest.fixture(scope="module")
def expected(cache_path):
    with FeatureCache.open(cache_path) as cache:
        X, y = cache.arrays()
        return {
            "ids": cache.ids,
            "X": X.copy(),
            "y": y.copy(),
            "classes": [CLASS_NAMES[i] if i >= 0 else None for i in y],
            "fingerprint": cache.fingerprint,
        }


def _check(ids, labels, classes, features, expected):
    assert list(ids) == expected["ids"]
    np.testing.assert_array_equal(np.asarray(labels), expected["y"])
    classes = [c if isinstance(c, str) else None for c in classes]  # pandas: NaN for null
    assert classes == expected["classes"]
    features = np.asarray(features, dtype=np.float32)
    assert features.shape == (N, DIM)
    np.testing.assert_array_equal(features, expected["X"])  # float32 bit for bit


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".feather"])
def test_pyarrow_reads_every_format_with_provenance(cache_path, expected, tmp_path, suffix):
    out = export_cache(cache_path, tmp_path / f"t{suffix}", batch_rows=7)  # 4 batches
    table = pq.read_table(out) if suffix == ".parquet" else pa.ipc.open_file(out).read_all()
    assert table.column_names == ["id", "label", "class_name", "features"]
    assert table.schema.field("features").type == pa.list_(pa.float32(), DIM)
    assert table.schema.field("label").type == pa.int32()
    _check(
        table["id"].to_pylist(),
        table["label"].to_numpy(),
        table["class_name"].to_pylist(),
        np.stack(table["features"].to_numpy(zero_copy_only=False)),
        expected,
    )
    meta = read_metadata(table.schema)
    assert meta["fingerprint"] == expected["fingerprint"]
    assert meta["class_names"] == CLASS_NAMES and meta["format"] == "bottleneck-cache"
    assert meta["provenance"]["source"]["name"] == "s"
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "no temporary file left"


def test_pandas_polars_and_duckdb_read_the_parquet_file(cache_path, expected, tmp_path):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    out = export_cache(cache_path, tmp_path / "t.parquet")

    frame = pd.read_parquet(out)
    _check(frame["id"], frame["label"], frame["class_name"], np.stack(frame["features"]), expected)

    polars = pl.read_parquet(out)
    _check(
        polars["id"].to_list(),
        polars["label"].to_numpy(),
        polars["class_name"].to_list(),
        np.stack([np.asarray(v) for v in polars["features"].to_list()]),
        expected,
    )

    rows = duckdb.sql(f"select id, label, class_name, features from '{out}'").fetchall()
    ids, labels, classes, features = zip(*rows, strict=True)
    _check(ids, labels, classes, [list(f) for f in features], expected)
    counts = dict(duckdb.sql(f"select label, count(*) from '{out}' group by 1").fetchall())
    assert counts == dict(zip(*np.unique(expected["y"], return_counts=True), strict=True))


def test_polars_reads_the_arrow_file_and_duckdb_the_feather_file(cache_path, expected, tmp_path):
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    arrow = pl.read_ipc(export_cache(cache_path, tmp_path / "t.arrow"))
    _check(
        arrow["id"].to_list(),
        arrow["label"].to_numpy(),
        arrow["class_name"].to_list(),
        arrow["features"].to_numpy(),
        expected,
    )
    feather = pa.ipc.open_file(export_cache(cache_path, tmp_path / "t.feather")).read_all()
    connection = duckdb.connect()
    connection.register("feather", feather)
    rows = connection.sql("select id, label, class_name, features from feather").fetchall()
    ids, labels, classes, features = zip(*rows, strict=True)
    _check(ids, labels, classes, [list(f) for f in features], expected)


def test_wide_export_has_one_float32_column_per_feature(cache_path, expected, tmp_path):
    pd = pytest.importorskip("pandas")
    out = export_cache(cache_path, tmp_path / "wide.parquet", wide=True, batch_rows=10)
    frame = pd.read_parquet(out)
    names = [f"f{j}" for j in range(DIM)]
    assert list(frame.columns) == ["id", "label", "class_name", *names]
    assert all(frame[name].dtype == np.float32 for name in names)
    _check(frame["id"], frame["label"], frame["class_name"], frame[names].to_numpy(), expected)


def test_feature_cache_to_arrow_to_pandas_and_arrays(cache_path, expected):
    pytest.importorskip("pandas")
    with FeatureCache.open(cache_path) as cache:
        X, y = cache.arrays()
        table = cache.to_arrow()
        frame = cache.to_pandas(wide=True)
    assert X.dtype == np.float32 and X.shape == (N, DIM) and y.shape == (N,)
    assert table.num_rows == N and read_metadata(table.schema)["class_names"] == CLASS_NAMES
    assert frame.shape == (N, 3 + DIM)
    np.testing.assert_array_equal(frame[[f"f{j}" for j in range(DIM)]].to_numpy(), expected["X"])


def test_unknown_suffix_is_refused_and_nothing_is_written(cache_path, tmp_path):
    with pytest.raises(CacheError, match=r"-o must end in .parquet, .arrow, .feather"):
        export_cache(cache_path, tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_neither_the_file_nor_a_temporary(cache_path, tmp_path, monkeypatch):
    original = tables.record_batches

    def fail_after_one_batch(cache, **kwargs):
        yield next(original(cache, **kwargs))
        raise OSError("disk full")

    monkeypatch.setattr(tables, "record_batches", fail_after_one_batch)
    with pytest.raises(OSError, match="disk full"):
        export_cache(cache_path, tmp_path / "t.parquet", batch_rows=5)
    assert list(tmp_path.iterdir()) == []


def test_missing_pyarrow_gives_one_line_saying_how_to_install(cache_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with (
        FeatureCache.open(cache_path) as cache,
        pytest.raises(MissingDependencyError, match=r"pip install 'bottleneck-transfer\[arrow\]'"),
    ):
        cache.to_arrow()


def test_cli_export_writes_the_file(cache_path, expected, tmp_path):
    out = tmp_path / "cli.feather"
    result = CliRunner().invoke(cli, ["cache", "export", str(cache_path), "-o", str(out), "--wide"])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output
    table = pa.ipc.open_file(out).read_all()
    assert table.num_rows == N and table.column_names[3:] == [f"f{j}" for j in range(DIM)]
    bad = CliRunner().invoke(cli, ["cache", "export", str(cache_path), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1
    assert bad.output.strip().startswith("Error: cannot tell the export format")
    assert read_metadata(table.schema)["fingerprint"] == expected["fingerprint"]
