"""Text sources (kind ``text``): a CSV, JSON-lines or Parquet/Arrow table with a text column
and a label column (``--text-column``, default ``text``; ``--label-column``, default
``label``), or a folder of ``.txt`` files, one subfolder per class (or flat: unlabeled).

Items have modality ``text``. A table's rows are read once: each item indexes its text's
UTF-8 bytes in :attr:`Source.arrays` (so the cache's identity is the texts' hash, as an array
source's is the pixels'); its id is the ``id`` column's value when every row has a distinct
one, else ``{file}#{row}`` (a table's ids). A folder's items are its files (ids: paths
relative to it, as an image folder's). Text is decoded at extraction
(:func:`bottleneck_transfer.features.text_batches.read_text`): a row that is not UTF-8 or is
empty is a failed item, recorded with one line, never the end of the run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.folder import folder_items
from bottleneck_transfer.features.sources.items import (
    Columns,
    Item,
    Listing,
    is_regular_file,
    local_path,
)
from bottleneck_transfer.features.sources.table import TABLE_SUFFIXES, _class_index, _Rows

KIND = "text"
#: The columns a text source reads (option names of :class:`Columns`).
COLUMNS = ("text", "label")
TEXT_SUFFIX = ".txt"
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: Files that may be text tables.
SUFFIXES = (*CSV_SUFFIXES, *JSONL_SUFFIXES, *TABLE_SUFFIXES)
#: Columns that make a table an image source, not a text one.
IMAGE_COLUMNS = ("path", "image")


def detect(spec: str) -> bool:
    """A local table whose columns hold ``text`` (and no ``path``/``image``), or a folder of
    ``.txt`` files only (flat or one subfolder per class)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _text_folder(path)
    if not is_regular_file(spec, SUFFIXES):
        return False
    try:
        names = _column_names(path)
    except (SourceError, OSError, ValueError):
        return False
    return "text" in names and not any(name in names for name in IMAGE_COLUMNS)


def _text_folder(path: Path) -> bool:
    """Whether every file in ``path`` and its subfolders (one level down) is a ``.txt`` file,
    and there is one (anything else there: name the kind with ``--source text``)."""
    try:
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        entries += [q for p in entries if p.is_dir() for q in p.iterdir()]
    except OSError:
        return False
    files = [p.name.lower() for p in entries if not p.name.startswith(".") and not p.is_dir()]
    return bool(files) and all(name.endswith(TEXT_SUFFIX) for name in files)


def _column_names(path: Path) -> list[str]:
    """The columns of a table file: a CSV's header, a JSON-lines file's first object's keys,
    a Parquet/Arrow file's schema."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    if suffix in JSONL_SUFFIXES:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line.decode("utf-8", "surrogateescape"))
                    return list(row) if isinstance(row, dict) else []
        return []
    from bottleneck_transfer.features.sources.table import _Table

    table = _Table(None, str(path))
    try:
        return list(table.schema.names)
    finally:
        table.close()


def open_listing(spec: str, columns: Columns) -> Listing:
    """The texts at ``spec`` (a table file or a folder of ``.txt`` files), kind ``text``.

    Raises
    ------
    SourceError
        No text column (naming the columns there and ``--text-column``), a named label
        column that is missing, a file that cannot be read.
    """
    path, root = local_path(spec)
    if path.is_dir():
        _, items, names = folder_items(path, (TEXT_SUFFIX,))
        texts = [Item(i.id, i.label, i.path, error=i.error, modality="text") for i in items]
        return Listing(KIND, root, root, texts, names)
    header, rows = _read_table(path, columns)
    text_column = _named(path, header, columns.text, "text", "--text-column")
    label_column = _named(path, header, columns.label, "label", "--label-column", optional=True)
    texts = [_encoded(row.get(text_column)) for row in rows]
    labels = [None if label_column is None else _stripped(row.get(label_column)) for row in rows]
    indices, names = _class_index(
        _Rows(labels=labels, names=_class_label(path, label_column)), root
    )
    ids = _ids(path, [row.get("id") for row in rows])
    items = [
        Item(item_id, label, index=k, modality="text")
        for k, (item_id, label) in enumerate(zip(ids, indices, strict=True))
    ]
    arrays = np.empty(len(texts), dtype=object)
    arrays[:] = texts
    return Listing(KIND, root, root, items, names, arrays, {"texts_sha256": texts_sha256(texts)})


def _named(
    path: Path,
    header: list[str],
    given: str | None,
    default: str,
    flag: str,
    optional: bool = False,
) -> str | None:
    """The column ``given`` (else ``default``); None for a missing optional default."""
    name = given or default
    if name in header:
        return name
    if optional and given is None:
        return None
    raise SourceError(
        f"{path} has no {name!r} column (columns: {', '.join(header) or 'none'}); name the "
        f"column with {flag}"
    )


def _encoded(value: Any) -> bytes:
    """A cell as the bytes of its text (as read: text a CSV held in another encoding keeps
    its bytes, so it fails to decode as that row's failure, not the file's)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _stripped(value: Any) -> Any:
    """A label as read, text stripped of surrounding blanks."""
    return value.strip() if isinstance(value, str) else value


def _ids(path: Path, given: list[Any]) -> list[str]:
    """The ``id`` column's values when every row has a distinct one, else ``{file}#{row}``."""
    text = [None if value in (None, "") else str(value) for value in given]
    if text and None not in text and len(set(text)) == len(text):
        return [str(value) for value in text]
    return [f"{path.name}#{row}" for row in range(len(given))]


def _class_label(path: Path, label: str | None) -> list[str] | None:
    """A Parquet/Arrow label column's ClassLabel names (the ``datasets`` layout), if any."""
    if label is None or path.suffix.lower() not in TABLE_SUFFIXES:
        return None
    from bottleneck_transfer.features.sources.table import _Table, class_label_names

    table = _Table(None, str(path))
    try:
        return class_label_names(table.schema, label)
    finally:
        table.close()


def _read_table(path: Path, columns: Columns) -> tuple[list[str], list[dict[str, Any]]]:
    """A text table's column names and its rows (column -> value)."""
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
                reader = csv.DictReader(handle)
                rows = [{k.strip(): v for k, v in row.items() if k} for row in reader]
                return [c.strip() for c in reader.fieldnames or []], rows
        if suffix in JSONL_SUFFIXES:
            return _read_jsonl(path)
    except (OSError, csv.Error) as exc:
        raise SourceError(f"cannot read the text table {path}: {exc}") from exc
    return _read_arrow(path, columns)


def _read_jsonl(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A JSON-lines file's keys and rows (one object a line; a line that is no JSON object
    is refused, naming it)."""
    rows: list[dict[str, Any]] = []
    keys: dict[str, None] = {}
    with open(path, "rb") as handle:
        for line, record in enumerate(handle, start=1):
            if not record.strip():
                continue
            try:
                row = json.loads(record.decode("utf-8-sig", "surrogateescape"))
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}, line {line}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise SourceError(
                    f"{path}, line {line}: not a JSON object; write one object a line, e.g. "
                    '{"text": "a cat sat", "label": "animal"}'
                )
            keys.update(dict.fromkeys(row))
            rows.append(row)
    return list(keys), rows


def _read_arrow(path: Path, columns: Columns) -> tuple[list[str], list[dict[str, Any]]]:
    """A Parquet/Arrow table's column names and its text, label and ``id`` columns' rows."""
    from bottleneck_transfer.features.sources.table import _Table

    table = _Table(None, str(path))
    try:
        header = list(table.schema.names)
        wanted = [
            c for c in (columns.text or "text", columns.label or "label", "id") if c in header
        ]
        rows: list[dict[str, Any]] = []
        for part in table.parts(wanted):
            values = {name: part.column(name).to_pylist() for name in wanted}
            columns_read = zip(*values.values(), strict=True)
            rows += [dict(zip(wanted, row, strict=True)) for row in columns_read]
    finally:
        table.close()
    return header, rows


def texts_sha256(texts: list[bytes]) -> str:
    """``sha256:<hex>`` of texts (each one's length, then its bytes, in order)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(len(text).to_bytes(8, "big"))
        digest.update(text)
    return f"sha256:{digest.hexdigest()}"
