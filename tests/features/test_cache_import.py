"""Tables in: `cache import` reads what `cache export` writes, or another tool's embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.export import export_cache
from bottleneck_transfer.features.cache.table_import import import_table
from bottleneck_transfer.fingerprint import sha256_file
from click.testing import CliRunner
from heads_fixtures import write_cache

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CLASS_NAMES = ["boot", "shirt", "bag"]
N, DIM = 23, 5


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, DIM)).astype(np.float32)
    y = rng.integers(0, 3, N)
    y[[2, 9]] = -1
    return write_cache(
        tmp_path_factory.mktemp("import") / "c.h5", X, y, class_names=CLASS_NAMES, source="s"
    )


def _same_rows(a, b):
    with FeatureCache.open(a) as first, FeatureCache.open(b) as second:
        np.testing.assert_array_equal(second.features, first.features)  # bit for bit
        np.testing.assert_array_equal(second.labels, first.labels)
        assert second.ids == first.ids
        assert second.class_names == first.class_names


@pytest.mark.parametrize(
    ("suffix", "wide"), [(".parquet", False), (".feather", True), (".arrow", False)]
)
def test_an_exported_cache_imports_back_equal(original, tmp_path, suffix, wide):
    table = export_cache(original, tmp_path / f"t{suffix}", wide=wide, batch_rows=7)
    out = import_table(table, tmp_path / "back.h5", batch_rows_max=4)
    _same_rows(original, out)
    with FeatureCache.open(original) as first, FeatureCache.open(out) as cache:
        provenance, fingerprint = cache.provenance, first.fingerprint
        assert cache.identity["base"]["kind"] == "imported"
    imported = provenance["imported"]
    assert provenance["source"]["root"] == str(table.resolve())
    assert provenance["source"]["sha256"] == sha256_file(table)
    assert imported["from"]["fingerprint"] == fingerprint  # the cache it was exported from
    if suffix == ".parquet":
        assert imported["written_by"].startswith("parquet-cpp-arrow")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([table.name, "back.h5"])


def test_foreign_embeddings_wide_columns_string_labels_no_ids(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    table = pa.table(
        {
            "emb_0": X[:, 0],
            "emb_1": X[:, 1],
            "emb_2": X[:, 2],
            "category": ["dog", "cat", None, "dog"],
            "note": ["a", "b", "c", "d"],
        }
    )
    pq.write_table(table, tmp_path / "e.parquet", row_group_size=3)
    out = import_table(
        tmp_path / "e.parquet",
        tmp_path / "e.h5",
        features="emb_*",
        id_column=None,
        label_column="category",
    )
    with FeatureCache.open(out) as cache:
        np.testing.assert_array_equal(cache.features, X.astype(np.float32))
        assert cache.class_names == ["cat", "dog"]
        np.testing.assert_array_equal(cache.labels, [1, 0, -1, 1])
        assert cache.ids == ["row:0", "row:1", "row:2", "row:3"]


def test_list_column_with_hugging_face_class_label_names(tmp_path):
    features = pa.array([[0.5, 1.0], [2.0, -1.0], [0.0, 3.0]], pa.list_(pa.float32()))
    metadata = {
        "huggingface": json.dumps(
            {
                "info": {
                    "features": {"label": {"_type": "ClassLabel", "names": ["neg", "pos", "mid"]}}
                }
            }
        )
    }
    table = pa.table(
        {"id": ["x", "y", "z"], "embedding": features, "label": pa.array([1, 0, 1], pa.int64())}
    ).replace_schema_metadata(metadata)
    pq.write_table(table, tmp_path / "hf.parquet")
    out = import_table(tmp_path / "hf.parquet", tmp_path / "hf.h5", features="embedding")
    with FeatureCache.open(out) as cache:
        assert cache.class_names == ["neg", "pos", "mid"]
        np.testing.assert_array_equal(cache.labels, [1, 0, 1])
        np.testing.assert_array_equal(cache.features, [[0.5, 1.0], [2.0, -1.0], [0.0, 3.0]])


def test_integer_labels_named_by_a_class_name_column(tmp_path):
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "label": [2, 0, 2],
            "class_name": ["z", "x", "z"],
            "f0": [1.0, 2.0, 3.0],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    with FeatureCache.open(import_table(tmp_path / "t.parquet", tmp_path / "t.h5")) as cache:
        assert cache.class_names == ["x", "1", "z"]
        np.testing.assert_array_equal(cache.features[:, 0], [1, 2, 3])


def _table(tmp_path, **columns):
    base = {"id": ["a", "b", "c"], "label": [0, 1, 0]}
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({**base, **columns}), path)
    return path


@pytest.mark.parametrize(
    ("columns", "options", "message"),
    [
        (
            {"features": pa.array([[1.0, 2.0], [1.0], [3.0, 4.0]], pa.list_(pa.float32()))},
            {},
            r"bad.parquet: column 'features' is ragged: row 1 holds 1 values, row 0 2; every "
            "vector must have the same length",
        ),
        (
            {"features": pa.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]], pa.list_(pa.float32()))},
            {},
            r"bad.parquet: column 'features': 1 rows hold NaN, Inf .* ids b\); fix or drop them",
        ),
        (
            {"vec": pa.array([[1.0], [2.0], [3.0]], pa.list_(pa.float32()))},
            {},
            r"bad.parquet has no column 'features' \(its columns: id, label, vec\): name the "
            "right one with --features",
        ),
        (
            {"features": pa.array([[1.0], [2.0], [3.0]], pa.list_(pa.float32()))},
            {"label_column": "target"},
            r"has no column 'target' .*--label-column, or pass --no-labels",
        ),
        (
            {"features": pa.array([[1.0], None, [3.0]], pa.list_(pa.float32()))},
            {},
            r"column 'features' holds no vector in row 1: fill it",
        ),
        (
            {"features": pa.array(["a", "b", "c"])},
            {},
            r"matches columns that are not numbers .*features \(string\)",
        ),
        (
            {"f0": [1.0, 2.0, 3.0], "label": [0, 1, -3]},
            {},
            r"label column 'label' holds -3 in row 2, outside -1 .. 1",
        ),
        (
            {"f0": [1.0, 2.0, 3.0], "id": ["a", "b", "a"]},
            {},
            r"id 'a' appears twice",
        ),
    ],
    ids=[
        "ragged",
        "nan",
        "no-features",
        "no-label-column",
        "null-vector",
        "strings",
        "label",
        "dup",
    ],
)
def test_a_bad_table_is_one_line_naming_file_column_and_fix(tmp_path, columns, options, message):
    table = _table(tmp_path, **columns)
    with pytest.raises(CacheError, match=message):
        import_table(table, tmp_path / "c.h5", **options)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.parquet"], "nothing else is left"


def test_a_file_that_is_no_table_is_refused(tmp_path):
    (tmp_path / "t.parquet").write_text("id,label\n")
    with pytest.raises(CacheError, match="neither a Parquet nor an Arrow IPC/Feather file"):
        import_table(tmp_path / "t.parquet", tmp_path / "c.h5")


def test_cli_import_writes_the_cache_and_errors_are_one_line(original, tmp_path):
    table = export_cache(original, tmp_path / "t.parquet")
    out = tmp_path / "c.h5"
    result = CliRunner().invoke(cli, ["cache", "import", str(table), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out} ({N} rows x {DIM} features, 3 classes)" in result.output
    _same_rows(original, out)
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert "base         t.parquet" in info.output and f"source       table  {table}" in info.output
    again = CliRunner().invoke(cli, ["cache", "import", str(table), "-o", str(out)])
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    bad = CliRunner().invoke(
        cli, ["cache", "import", str(table), "-o", str(tmp_path / "d.h5"), "--features", "x*"]
    )
    assert bad.exit_code == 1
    assert bad.output.count("\n") == 1 and "has no column 'x*'" in bad.output
    with open(table, "ab") as handle:
        handle.write(b"edited")
    changed = CliRunner().invoke(cli, ["verify", str(out)])
    assert changed.exit_code == 1
    assert f"{table} changed since it was imported (sha256 differs)" in changed.output


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_exported_features_are_fixed_size_arrays_for_polars_and_duckdb(original, tmp_path, suffix):
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    out = export_cache(original, tmp_path / f"t{suffix}")
    frame = pl.read_parquet(out) if suffix == ".parquet" else pl.read_ipc(out)
    assert frame.schema["features"] == pl.Array(pl.Float32, DIM)  # no cast
    assert frame["features"].to_numpy().shape == (N, DIM)
    connection = duckdb.connect()
    if suffix == ".parquet":
        # Parquet has no fixed-size list type: DuckDB reads FLOAT[] and its list functions work
        query = f"select list_cosine_similarity(features, features) from '{out}'"
    else:
        connection.register("t", pa.ipc.open_file(out).read_all())
        assert connection.sql("select features from t").types == [f"FLOAT[{DIM}]"]
        query = "select array_cosine_similarity(features, features) from t"
    similarity = np.asarray(connection.sql(query).fetchall(), float)
    np.testing.assert_allclose(similarity, 1.0, rtol=1e-6)
