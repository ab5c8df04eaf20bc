"""Parquet and Arrow tables of image bytes: the Hugging Face ``datasets`` layout and others.

A table (``.parquet``, ``.arrow``/``.feather`` in the Arrow IPC file or stream format, or a
folder of them, local or behind an fsspec URL) holds one image per row: an ``image`` column
that is a struct of ``bytes`` and ``path`` (``datasets``' ``Image`` feature) or plain binary,
and an optional ``label`` column of class indices (a ``ClassLabel`` whose names are in the
schema's ``huggingface`` metadata) or of class names. Other column names are options
(:class:`~bottleneck_transfer.features.sources.items.Columns`).

Listing reads only the path and label columns. An item's id is the row's ``path`` when every
row has one and no two share it, else ``{file}#{row}``; its pixels are read at decode time one
row group (Parquet) or record batch (Arrow) at a time, a few kept (:class:`TableRows`), so
memory stays flat in the number of rows. A row whose bytes are missing or do not decode is
recorded in ``/failed`` under its id like any bad image.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features.decode import IMAGE_EXTENSIONS
from bottleneck_transfer.features.sources.items import Columns, Item, Listing, is_regular_file
from bottleneck_transfer.features.sources.reading import (
    file_stat,
    open_binary,
    url_filesystem,
    url_of,
)

#: File suffixes of tables.
TABLE_SUFFIXES = (".parquet", ".arrow", ".feather")
#: The columns a table source reads (option names of :class:`Columns`).
COLUMNS = ("image", "label")
MISSING_PYARROW = "table sources need pyarrow, which is not installed; pip install pyarrow"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as exc:
        raise SourceError(MISSING_PYARROW) from exc
    return pyarrow


def _table_files(fs: Any | None, path: str) -> list[str]:
    """The table files of ``path``: itself, or a folder's table files (sorted); [] if none,
    or if the folder also holds images or subfolders (then it is an image folder)."""
    is_dir = Path(path).is_dir() if fs is None else fs.isdir(path)
    if not is_dir:
        return [path] if path.lower().endswith(TABLE_SUFFIXES) else []
    if fs is None:
        entries = [(str(p), p.is_dir()) for p in Path(path).iterdir()]
    else:
        entries = [(e["name"], e["type"] == "directory") for e in fs.ls(path, detail=True)]
    entries = [(name, folder) for name, folder in entries if Path(name).name[:1] != "."]
    if any(folder or name.lower().endswith(IMAGE_EXTENSIONS) for name, folder in entries):
        return []
    return sorted(name for name, _ in entries if name.lower().endswith(TABLE_SUFFIXES))


def detect(spec: str) -> bool:
    """A table file, or a folder of table files without images or subfolders (local or a
    URL)."""
    remote = url_filesystem(spec)
    if remote is not None:
        return spec.lower().endswith(TABLE_SUFFIXES) or bool(_table_files(*remote))
    path = Path(spec).expanduser()
    if path.is_dir():
        return bool(_table_files(None, str(path)))
    return is_regular_file(spec, TABLE_SUFFIXES)


class _Table:
    """One open table file: its schema and its row groups (Parquet) or record batches."""

    def __init__(self, fs: Any | None, path: str) -> None:
        pa = _pyarrow()
        self.path = path
        self.parquet = path.lower().endswith(".parquet")
        self._handle = (
            pa.memory_map(path) if fs is None and not self.parquet else open_binary(fs, path)
        )
        try:
            if self.parquet:
                self._file = pa.parquet.ParquetFile(self._handle)
                self.schema = self._file.schema_arrow
                self.n_parts = self._file.num_row_groups
            else:
                self._file = _open_ipc(pa, self._handle)
                self.schema = self._file.schema
                self.n_parts = getattr(self._file, "num_record_batches", None)
        except (OSError, pa.ArrowException) as exc:
            self.close()
            raise SourceError(f"cannot read table {path}: {exc}") from exc
        self._next = 0  # an IPC stream's next batch

    def part(self, k: int, columns: list[str]) -> Any:
        """Row group ``k``'s ``columns`` as a pyarrow Table, or record batch ``k``."""
        if self.parquet:
            return self._file.read_row_group(k, columns=columns)
        if self.n_parts is not None:
            batch = self._file.get_batch(k)
        else:  # an IPC stream: read forward (items are read in order)
            if k < self._next:
                raise _Rewind
            while self._next <= k:
                batch = self._file.read_next_batch()
                self._next += 1
        return batch  # memory-mapped locally: columns not asked for are never read

    def parts(self, columns: list[str]) -> Iterator[Any]:
        """Every row group (or record batch) in order, ``columns`` only."""
        if self.parquet or self.n_parts is not None:
            for k in range(self.n_parts):
                yield self.part(k, columns)
            return
        while True:
            try:
                yield self.part(self._next, columns)
            except StopIteration:
                return

    def close(self) -> None:
        self._handle.close()


class _Rewind(Exception):
    """An IPC stream asked for a batch behind its position: reopen it."""


def _open_ipc(pa: Any, handle: Any) -> Any:
    """An Arrow IPC file reader (random access), or a stream reader (forward only)."""
    try:
        return pa.ipc.open_file(handle)
    except pa.ArrowInvalid:
        handle.seek(0)
        return pa.ipc.open_stream(handle)


def class_label_names(schema: Any, column: str) -> list[str] | None:
    """The names of ``column``'s ``ClassLabel`` in the schema's ``huggingface`` metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        info = json.loads(raw)
        feature = info.get("info", info)["features"][column]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        return [str(name) for name in feature["names"]]
    return None


@dataclass
class _Rows:
    """What the listing collects, file by file."""

    ids: list[str | None] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    places: list[tuple[str, int, int]] = field(default_factory=list)
    names: list[str] | None = None


def _columns_of(schema: Any, columns: Columns, path: str) -> tuple[str, str | None, bool]:
    """The image column, the label column (None when absent) and whether the image is a
    struct with a ``path``; SourceError naming the columns when one is missing."""
    image = columns.image or "image"
    have = schema.names
    if image not in have:
        raise SourceError(
            f"table {path} has no {image!r} image column (columns: {', '.join(have)}); "
            "name it with --image-column"
        )
    label = columns.label or "label"
    if label not in have:
        if columns.label is not None:
            raise SourceError(
                f"table {path} has no {label!r} label column (columns: {', '.join(have)}); "
                "name it with --label-column"
            )
        label = None
    kind = schema.field(image).type
    is_struct = hasattr(kind, "get_field_index")
    if (is_struct and kind.get_field_index("bytes") < 0) or (
        not is_struct and "binary" not in str(kind)
    ):
        raise SourceError(
            f"table {path}'s column {image!r} is {kind}, not image bytes (binary, or a struct "
            "of bytes and path); name the image column with --image-column"
        )
    return image, label, is_struct and kind.get_field_index("path") >= 0


def _list_file(fs: Any | None, path: str, columns: Columns, rows: _Rows) -> None:
    """Add the rows of one table file to ``rows`` (ids from paths, labels, places)."""
    table = _Table(fs, path)
    try:
        image, label, with_path = _columns_of(table.schema, columns, path)
        if label is not None:
            names = class_label_names(table.schema, label)
            if rows.places and names != rows.names:
                raise SourceError(f"table {path}'s class names differ from the first table's")
            rows.names = names
        wanted = ([f"{image}.path"] if with_path else []) + ([label] if label else [])
        for k, part in enumerate(table.parts(wanted or [image])):
            n = part.num_rows
            ids = _array(part, image).field("path").to_pylist() if with_path else [None] * n
            rows.ids += ids
            rows.labels += _array(part, label).to_pylist() if label else [None] * n
            rows.places += [(path, k, r) for r in range(n)]
    finally:
        table.close()


def _class_index(rows: _Rows, path: str) -> tuple[list[int], list[str]]:
    """Each row's class index (-1 unlabeled) and the class names."""
    if rows.names is not None:
        bad = sorted({v for v in rows.labels if v is not None and not -1 <= v < len(rows.names)})
        if bad:
            raise SourceError(
                f"table {path} has labels {bad[:5]} outside its {len(rows.names)} ClassLabel names"
            )
        return [-1 if v is None else int(v) for v in rows.labels], rows.names
    text = [None if v is None or str(v) in ("", "-1") else str(v) for v in rows.labels]
    values = sorted({v for v in text if v is not None})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {name: i for i, name in enumerate(values)}
    return [-1 if v is None else index[v] for v in text], values


def _ids(rows: _Rows) -> list[str]:
    """The rows' paths when all are present and unique, else ``{file}#{row}``."""
    paths = rows.ids
    if paths and None not in paths and "" not in paths and len(set(paths)) == len(paths):
        return [str(p) for p in paths]
    ids, row, last = [], 0, None
    for path, _, _ in rows.places:
        row = row + 1 if path == last else 0
        last = path
        ids.append(f"{Path(path).name}#{row}")
    return ids


def _array(part: Any, name: str) -> Any:
    """Column ``name`` of a Table or RecordBatch as one Arrow array."""
    column = part.column(name)
    return column.combine_chunks() if hasattr(column, "combine_chunks") else column


def open_listing(spec: str, columns: Columns) -> Listing:
    """The rows of the table(s) at ``spec`` (kind ``table``).

    Raises
    ------
    SourceError
        No table there, a missing column, labels outside the ClassLabel names, or tables
        with different class names.
    """
    remote = url_filesystem(spec)
    fs, where = remote if remote is not None else (None, str(Path(spec).expanduser().absolute()))
    files = _table_files(fs, where)
    if not files:
        raise SourceError(f"no Parquet or Arrow table at {spec} (suffixes: .parquet .arrow)")
    rows = _Rows()
    for path in files:
        _list_file(fs, path, columns, rows)
    labels, names = _class_index(rows, where)
    items = [
        Item(item_id, label, Path(path), member=(part, row))
        for item_id, label, (path, part, row) in zip(_ids(rows), labels, rows.places, strict=True)
    ]
    reader = TableRows(columns.image or "image", fs)
    if fs is not None:
        return Listing("table", url_of(fs, where), spec, items, names, reader=reader)
    root = str(Path(where).resolve())
    return Listing("table", root, root, items, names, reader=reader)


class TableRows:
    """Reads a table item's image bytes: its row group (or record batch) is read once and
    the last few kept, so decoding threads working through neighbouring rows share them."""

    def __init__(self, column: str, fs: Any | None = None, keep: int = 8) -> None:
        self.column = column
        self.fs = fs
        self.keep = keep
        self._parts: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"column": self.column, "fs": self.fs, "keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def read(self, item: Item) -> bytes:
        """The image bytes of ``item``'s row; ImageError when it has none."""
        assert item.path is not None and item.member is not None
        part, row = item.member
        data = self._part(str(item.path), part)[row].as_py()
        if not data:
            raise ImageError(f"no image bytes in column {self.column!r} of this row")
        return bytes(data)

    def stat(self, path: Path) -> tuple[int, int]:
        """``(size, mtime_ns)`` of the table file."""
        return file_stat(self.fs, path)

    def _part(self, path: str, k: int) -> Any:
        """The image bytes of row group ``k`` of ``path`` (kept among the last few read)."""
        with self._lock:
            key = (path, k)
            if key in self._parts:
                self._parts.move_to_end(key)
                return self._parts[key]
            try:
                column = self._read(path, k)
            except (OSError, ValueError) as exc:  # pyarrow's errors subclass these
                raise ImageError(f"cannot read {Path(path).name} part {k}: {exc}") from exc
            self._parts[key] = column
            while len(self._parts) > self.keep:
                self._parts.popitem(last=False)
            return column

    def _read(self, path: str, k: int) -> Any:
        table = self._tables.get(path)
        if table is None:
            table = self._tables[path] = _Table(self.fs, path)
        try:
            part = table.part(k, [self.column])
        except _Rewind:
            table.close()
            table = self._tables[path] = _Table(self.fs, path)
            part = table.part(k, [self.column])
        column = _array(part, self.column)
        is_struct = hasattr(column.type, "get_field_index")
        return column.field("bytes") if is_struct else column
