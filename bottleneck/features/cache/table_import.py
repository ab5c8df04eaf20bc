"""``bottleneck cache import``: a table of ids, labels and feature vectors as a verified cache.

The table is a Parquet or Arrow IPC/Feather file (told apart by its first bytes): what
``cache export`` writes, or another tool's embeddings. Features are one list column
(``list<float>``, ``large_list`` or ``fixed_size_list``) or many numeric columns, chosen by a
name or a glob (``emb_*``); labels are integers (names from the table's metadata, a
``class_name`` column, or ``0..K-1``) or strings (classes sorted by name). Rows stream one
record batch (a Parquet row group) at a time through :class:`~.writer.CacheWriter`, so the
cache appears by one atomic rename, complete and checked, or not at all. The provenance
names the table, its sha256 and what wrote it; the base is ``imported``.

Example
-------
>>> from bottleneck_transfer.features.cache.table_import import import_table
>>> import_table("embeddings.parquet", "caches/emb.h5", features="emb_*")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.cache import tables
from bottleneck_transfer.features.cache.format import describe_unusable, unusable_rows
from bottleneck_transfer.features.cache.partial import discard_partial, partial_path, writer_lock
from bottleneck_transfer.features.cache.writer import CacheWriter
from bottleneck_transfer.fingerprint import fingerprint, sha256_file
from bottleneck_transfer.versions import software_versions

if TYPE_CHECKING:
    import pyarrow

#: A file's first bytes -> its table format.
_MAGIC = {b"PAR1": "parquet", b"ARROW1": "arrow"}
#: Where Hugging Face ``datasets`` keeps a table's features (a ClassLabel's names among them).
_HF_METADATA_KEY = b"huggingface"


@dataclasses.dataclass(frozen=True)
class TableColumns:
    """Which columns of a table hold what.

    Parameters
    ----------
    features : list of str
        One list column, or the numeric columns in table order (one per feature).
    ids : str or None
        The id column; None numbers the rows (``row:<i>``).
    labels : str or None
        The label column; None leaves every row unlabeled (-1).
    class_names : list of str
        Label ``i`` is ``class_names[i]``.
    label_index : dict or None
        For a string label column: class name -> label.
    """

    features: list[str]
    ids: str | None
    labels: str | None
    class_names: list[str]
    label_index: dict[str, int] | None = None


def table_format(path: Path) -> str:
    """``parquet`` or ``arrow`` (Arrow IPC file; Feather version 2), from the file's first bytes.

    Raises
    ------
    CacheError
        If ``path`` is missing or is neither.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise CacheError(f"cannot read the table {path}: {exc.strerror or exc}") from exc
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    raise CacheError(
        f"{path} is neither a Parquet nor an Arrow IPC/Feather file: import a table written by "
        "`bottleneck cache export`, pyarrow, pandas, polars or DuckDB"
    )


def read_batches(
    path: Path, kind: str, columns: list[str], batch_rows: int
) -> Iterator[pyarrow.RecordBatch]:
    """The table's ``columns``, a record batch (at most a Parquet row group) at a time."""
    pa = tables.require("pyarrow")
    if kind == "parquet":
        parquet = tables.require("pyarrow.parquet").ParquetFile(path)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns)
            yield from table.to_batches(max_chunksize=batch_rows)
        return
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for k in range(reader.num_record_batches):
            batch = reader.get_batch(k).select(columns)
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)


def read_schema(path: Path, kind: str) -> tuple[pyarrow.Schema, str | None]:
    """The table's schema and the software that wrote it, where the file records it."""
    pa = tables.require("pyarrow")
    if kind == "parquet":
        metadata = tables.require("pyarrow.parquet").ParquetFile(path).metadata
        return metadata.schema.to_arrow_schema(), metadata.created_by
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).schema, None


def _missing(path: Path, schema: pyarrow.Schema, name: str, option: str, also: str = "") -> str:
    return (
        f"{path} has no column {name!r} (its columns: {', '.join(schema.names)}): name the "
        f"right one with {option}{also}"
    )


def feature_columns(path: Path, schema: pyarrow.Schema, features: str | None) -> list[str]:
    """The feature column(s): ``features`` (a name or a glob of numeric columns), else
    ``features``, else the wide columns ``f0, f1, ...`` that ``cache export --wide`` writes."""
    pa = tables.require("pyarrow")
    if features is None:
        if "features" in schema.names:
            features = "features"
        elif "f0" in schema.names:
            features = "f[0-9]*"
        else:
            raise CacheError(_missing(path, schema, "features", "--features NAME or 'GLOB*'"))
    names = [n for n in schema.names if fnmatch.fnmatchcase(n, features)]
    if not names:
        raise CacheError(_missing(path, schema, features, "--features NAME or 'GLOB*'"))
    types = [schema.field(n).type for n in names]
    if len(names) == 1 and _is_list(types[0]):
        if not _is_number(types[0].value_type):
            raise CacheError(
                f"{path}: column {names[0]!r} holds lists of {types[0].value_type}, not "
                "numbers: name the feature vectors with --features"
            )
        return names
    bad = [f"{n} ({t})" for n, t in zip(names, types, strict=True) if not _is_number(t)]
    if bad or any(pa.types.is_boolean(t) for t in types):
        raise CacheError(
            f"{path}: --features {features!r} matches columns that are not numbers or one list "
            f"of numbers: {', '.join(bad)}; name the feature column(s) with --features"
        )
    return names


def _is_list(kind: Any) -> bool:
    pa = tables.require("pyarrow")
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_number(kind: Any) -> bool:
    pa = tables.require("pyarrow")
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def label_columns(
    path: Path, kind: str, schema: pyarrow.Schema, ids: str | None, labels: str | None
) -> TableColumns:
    """Check the id and label columns and find the class names (:class:`TableColumns`, its
    ``features`` left empty); a string label column is read once, alone, for its classes."""
    pa = tables.require("pyarrow")
    for name, option, instead in (
        (ids, "--id-column", "--no-ids"),
        (labels, "--label-column", "--no-labels"),
    ):
        if name is not None and name not in schema.names:
            raise CacheError(_missing(path, schema, name, option, f", or pass {instead}"))
    if labels is None:
        return TableColumns([], ids, None, [])
    label_type = schema.field(labels).type
    if pa.types.is_dictionary(label_type):
        label_type = label_type.value_type
    if pa.types.is_string(label_type) or pa.types.is_large_string(label_type):
        seen: set[str] = set()
        for batch in read_batches(path, kind, [labels], tables.BATCH_ROWS):
            seen |= {v for v in batch.column(0).to_pylist() if v is not None}
        names = sorted(seen)
        return TableColumns([], ids, labels, names, {n: i for i, n in enumerate(names)})
    if not pa.types.is_integer(label_type):
        raise CacheError(
            f"{path}: label column {labels!r} holds {label_type}: labels must be integers or "
            "class names (strings); name another with --label-column, or pass --no-labels"
        )
    return TableColumns([], ids, labels, _class_names(path, kind, schema, labels))


def _class_names(path: Path, kind: str, schema: pyarrow.Schema, labels: str) -> list[str]:
    """Integer labels' names: from an exported cache's metadata, a Hugging Face ClassLabel, a
    ``class_name`` column (read once, with the labels), or ``"0" .. "K-1"``."""
    exported = tables.read_metadata(schema).get("class_names")
    if isinstance(exported, list):
        return [str(n) for n in exported]
    hf = json.loads((schema.metadata or {}).get(_HF_METADATA_KEY, b"{}"))
    names = hf.get("info", {}).get("features", {}).get(labels, {}).get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    compute = tables.require("pyarrow.compute")
    pairs: dict[int, str] = {}
    top = -1
    columns = [labels, "class_name"] if "class_name" in schema.names else [labels]
    for batch in read_batches(path, kind, columns, tables.BATCH_ROWS):
        largest = compute.max(batch.column(0)).as_py()
        top = top if largest is None else max(top, int(largest))
        if len(columns) == 2:
            rows = zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)
            for label, name in rows:
                if label is not None and label >= 0 and name is not None:
                    pairs.setdefault(int(label), str(name))
    return [pairs.get(i, str(i)) for i in range(top + 1)]


def batch_rows(
    path: Path, batch: pyarrow.RecordBatch, columns: TableColumns, first: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One record batch as float32 features, int32 labels and ids, or a :class:`CacheError`
    naming the column, the row and what to do."""
    n = batch.num_rows
    features = _features(path, batch, columns.features, first)
    if columns.ids is None:
        ids = [f"row:{first + i}" for i in range(n)]
    else:
        ids = [None if v is None else str(v) for v in batch.column(columns.ids).to_pylist()]
        if None in ids:
            row = first + ids.index(None)
            raise CacheError(f"{path}: id column {columns.ids!r} is empty in row {row}: fill it")
    return features, _labels(path, batch, columns, first), ids


def _features(path: Path, batch: pyarrow.RecordBatch, names: list[str], first: int) -> np.ndarray:
    pa = tables.require("pyarrow")
    compute = tables.require("pyarrow.compute")
    if len(names) > 1 or not _is_list(batch.schema.field(names[0]).type):
        columns = [batch.column(n) for n in names]
        empty = next((k for k, c in enumerate(columns) if c.null_count), None)
        if empty is not None:
            row = first + columns[empty].is_null().to_pylist().index(True)
            raise CacheError(f"{path}: column {names[empty]!r} is empty in row {row}: fill it")
        return np.column_stack([c.to_numpy(zero_copy_only=False) for c in columns]).astype(
            np.float32
        )
    column = batch.column(names[0])
    if column.null_count:
        row = first + column.is_null().to_pylist().index(True)
        raise CacheError(f"{path}: column {names[0]!r} holds no vector in row {row}: fill it")
    lengths = compute.list_value_length(column).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise CacheError(
            f"{path}: column {names[0]!r} is ragged: row {first + row} holds {lengths[row]} "
            f"values, row {first} {lengths[0]}; every vector must have the same length"
        )
    values = column.flatten()
    if values.null_count:
        raise CacheError(f"{path}: column {names[0]!r} holds null values inside vectors: fill them")
    dim = int(lengths[0]) if lengths.size else 0
    flat = values.cast(pa.float32()).to_numpy(zero_copy_only=False)
    return flat.reshape(len(lengths), dim)


def _labels(
    path: Path, batch: pyarrow.RecordBatch, columns: TableColumns, first: int
) -> np.ndarray:
    if columns.labels is None:
        return np.full(batch.num_rows, -1, np.int32)
    values = batch.column(columns.labels).to_pylist()
    if columns.label_index is not None:
        return np.asarray([columns.label_index.get(v, -1) for v in values], np.int32)
    labels = np.asarray([-1 if v is None else v for v in values], np.int64)
    bad = np.flatnonzero((labels < -1) | (labels >= len(columns.class_names)))
    if bad.size:
        raise CacheError(
            f"{path}: label column {columns.labels!r} holds {labels[bad[0]]} in row "
            f"{first + int(bad[0])}, outside -1 .. {len(columns.class_names) - 1} (the "
            f"{len(columns.class_names)} class names): fix the labels"
        )
    return labels.astype(np.int32)


def _check_rows(path: Path, name: str, features: np.ndarray, ids: list[str], seen: set) -> None:
    """Refuse NaN, Inf or overflowing features and repeated ids, naming the rows."""
    bad = unusable_rows(features)
    if bad.size:
        raise CacheError(
            f"{path}: column {name!r}: {describe_unusable(bad, ids)}; fix or drop them"
        )
    for item in ids:
        if item in seen:
            raise CacheError(f"{path}: id {item!r} appears twice: ids must be unique")
        seen.add(item)


def import_table(
    table: str | Path,
    out: str | Path,
    *,
    features: str | None = None,
    id_column: str | None = "id",
    label_column: str | None = "label",
    batch_rows_max: int = tables.BATCH_ROWS,
) -> Path:
    """Write a Parquet or Arrow/Feather table of feature vectors as a verified cache.

    Parameters
    ----------
    table : str or Path
        The table (``cache export``'s, or another tool's embeddings).
    out : str or Path
        The cache (``.h5``); it appears only when complete (one atomic rename).
    features : str, optional
        The feature column (a list of numbers) or a glob of numeric columns (``emb_*``).
        Default: ``features``, else ``f0, f1, ...``.
    id_column : str or None, default="id"
        The ids; None numbers the rows ``row:<i>``.
    label_column : str or None, default="label"
        Integer labels or class names; None: every row unlabeled.
    batch_rows_max : int, default=65536
        Rows read and written at a time (memory is flat in the rows).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    CacheError
        One line naming the file, the column and what to do: a missing column, ragged or
        empty vectors, NaN or Inf, labels out of range, repeated ids, no rows.
    """
    path, out = Path(table), Path(out)
    kind = table_format(path)
    schema, writer_name = read_schema(path, kind)
    names = feature_columns(path, schema, features)
    columns = label_columns(path, kind, schema, id_column, label_column)
    columns = dataclasses.replace(columns, features=names)
    digest = sha256_file(path)
    identity = {
        "base": {"kind": "imported", "table": path.name, "table_sha256": digest},
        "source": {
            "kind": "table",
            "sha256": digest,
            "features": names if len(names) > 1 else names[0],
            "ids": id_column,
            "labels": label_column,
        },
    }
    exported = tables.read_metadata(schema)
    provenance = {
        "base": identity["base"],
        "source": {**identity["source"], "root": str(path.resolve())},
        "imported": {
            "format": kind,
            "written_by": writer_name,
            "from": {
                k: exported[k] for k in ("fingerprint", "identity", "provenance") if k in exported
            },
        },
        "software": software_versions(),
    }
    wanted = list(dict.fromkeys([*names, *(c for c in (id_column, label_column) if c)]))
    with writer_lock(out):
        return _write(path, out, kind, columns, wanted, identity, provenance, batch_rows_max)


def _write(
    path: Path,
    out: Path,
    kind: str,
    columns: TableColumns,
    wanted: list[str],
    identity: dict,
    provenance: dict,
    rows_at_a_time: int,
) -> Path:
    """Stream the table into a new partial folder and assemble the cache; on any error the
    partial folder goes (an import is redone whole, never resumed)."""
    writer, first, dim, seen = None, 0, 0, set()
    try:
        for batch in read_batches(path, kind, wanted, rows_at_a_time):
            X, y, ids = batch_rows(path, batch, columns, first)
            _check_rows(path, columns.features[0], X, ids, seen)
            if writer is None:
                dim = X.shape[1]
                writer = CacheWriter.create(
                    partial_path(out),
                    dim=X.shape[1],
                    fingerprint=fingerprint(identity),
                    identity=identity,
                    provenance=provenance,
                    class_names=columns.class_names,
                )
            elif X.shape[1] != dim:
                raise CacheError(
                    f"{path}: column {columns.features[0]!r} is ragged: row {first} holds "
                    f"{X.shape[1]} values, the rows before {dim}; every vector must have the "
                    "same length"
                )
            first += len(ids)
            writer.write_batch(X, y, ids, [], items_done=first)
            writer.commit()
        if writer is None:
            raise CacheError(f"{path} holds no rows: nothing to import")
        return writer.finalize(out, {"rows": first, "imported": True})
    except BaseException:
        if writer is not None:
            writer.close()
            with contextlib.suppress(CacheError):
                discard_partial(partial_path(out))
        raise
