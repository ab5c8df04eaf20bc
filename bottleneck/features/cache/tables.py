"""Caches as Arrow tables, for pandas, polars, DuckDB and Parquet (written by :mod:`.export`).

One row per cache row: ``id`` (string), ``label`` (int32, -1 unlabeled), ``class_name``
(string, null when unlabeled) and the features, either one ``features`` column of
fixed-size lists of float32 or, with ``wide=True``, one float32 column per feature
(``f0``, ``f1``, ...). The schema's metadata key ``bottleneck`` holds the cache's format,
fingerprint, identity, provenance and class names as JSON.

pyarrow is an optional dependency (``pip install 'bottleneck-transfer[arrow]'``), imported
only when a table is made.

Example
-------
>>> from bottleneck_transfer.features.cache.export import export_cache
>>> export_cache("caches/train.h5", "train.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import MissingDependencyError
from bottleneck_transfer.features.cache.format import FORMAT, FORMAT_VERSION

if TYPE_CHECKING:
    import pyarrow
    from bottleneck_transfer.features.cache.reader import FeatureCache

METADATA_KEY = b"bottleneck"
#: Dictionary-encode only the repetitive columns: on 60k x 128 Fashion-MNIST features, float
#: dictionaries made the file larger (22.2 vs 18.3 MB with zstd) and reading 1.6x slower.
PARQUET_OPTIONS = {"use_dictionary": ["label", "class_name"], "compression": "zstd"}
#: Rows per record batch (and Parquet row group when streaming to a file).
BATCH_ROWS = 65_536


def require(module: str, extra: str | None = "arrow") -> Any:
    """Import an optional dependency, or raise one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        how = f"pip install 'bottleneck-transfer[{extra}]'" if extra else f"pip install {package}"
        message = f"this needs {package}, which is not installed: {how}"
        raise MissingDependencyError(message) from exc


def feature_names(dim: int) -> list[str]:
    """Column names of the features in a wide table: ``f0`` .. ``f{dim-1}``."""
    return [f"f{j}" for j in range(dim)]


def table_schema(cache: FeatureCache, *, wide: bool = False) -> pyarrow.Schema:
    """The Arrow schema of a cache's table, with its provenance in the metadata."""
    pa = require("pyarrow")
    if wide:
        features = [pa.field(name, pa.float32()) for name in feature_names(cache.dim)]
    else:
        features = [pa.field("features", pa.list_(pa.float32(), cache.dim))]
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cache": str(cache.path),
        "fingerprint": cache.fingerprint,
        "class_names": cache.class_names,
        "identity": cache.identity,
        "provenance": cache.provenance,
    }
    fields = [
        pa.field("id", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("class_name", pa.string()),
        *features,
    ]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def record_batches(
    cache: FeatureCache, *, wide: bool = False, batch_rows: int = BATCH_ROWS
) -> Iterator[pyarrow.RecordBatch]:
    """The cache's rows as Arrow record batches, reading ``batch_rows`` feature rows at a time."""
    pa = require("pyarrow")
    schema = table_schema(cache, wide=wide)
    names = np.asarray([*cache.class_names, None], dtype=object)  # label -1 -> None
    start = 0
    for X, labels in cache.iter_rows(batch_rows):
        stop = start + len(labels)
        X = np.ascontiguousarray(X, dtype=np.float32)
        if wide:
            features = [pa.array(X[:, j]) for j in range(X.shape[1])]
        else:
            features = [pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])]
        columns = [
            pa.array(cache.read_ids(start, stop), pa.string()),
            pa.array(labels, pa.int32()),
            pa.array(names[labels], pa.string()),
            *features,
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=schema)
        start = stop


def cache_table(cache: FeatureCache, *, wide: bool = False) -> pyarrow.Table:
    """A whole open cache as one Arrow table (see the module docstring for the columns)."""
    pa = require("pyarrow")
    return pa.Table.from_batches(
        list(record_batches(cache, wide=wide)), table_schema(cache, wide=wide)
    )


def read_metadata(schema: pyarrow.Schema) -> dict:
    """The cache metadata stored in an exported table's schema (empty when there is none)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return {} if raw is None else json.loads(raw)
