"""CSV manifest sources: a ``path`` column (relative to the CSV), an optional ``label`` and
a ``--groups`` column; local, or behind an fsspec URL (its paths then on the same file system).

:func:`manifest_listing` turns the numbered rows of any manifest format into a listing (the
JSON-lines kind, :mod:`.jsonl`, reads its rows and hands them here).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.items import (
    Columns,
    Item,
    Listing,
    file_item,
    is_regular_file,
    local_path,
)
from bottleneck_transfer.features.sources.reading import (
    FileBytes,
    open_binary,
    url_filesystem,
    url_of,
)

#: The columns a manifest source reads (option names of :class:`Columns`).
COLUMNS = ("groups",)


#: A manifest's rows: each row's line number and its fields (name -> text).
Rows = list[tuple[int, dict[str, str]]]


def _read_csv(path: Path, fs: Any | None) -> tuple[Rows, list[str]]:
    """The CSV's numbered rows and its header's column names."""
    try:
        with (
            open_binary(fs, path) as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        ):
            reader = csv.DictReader(handle)
            numbered = [(reader.line_num, row) for row in reader]  # line of each row's end
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"cannot read manifest {path}: {exc}") from exc
    return [(line, _stripped(row)) for line, row in numbered], columns


def _stripped(row: dict[str | None, str | None]) -> dict[str, str]:
    """A CSV row's fields, names and values stripped (a short row's missing values empty)."""
    return {k.strip(): (v or "").strip() for k, v in row.items() if k}


def manifest_items(
    path: Path, numbered: Rows, columns: list[str], groups: str | None, fs: Any | None
) -> tuple[list[Item], list[str]]:
    """The items and class names of a manifest's rows (``path``, ``label``, ``groups``)."""
    if columns and "path" not in columns:
        raise SourceError(
            f"manifest {path} has no 'path' column (columns: {', '.join(columns)}); "
            "give each row a 'path' and optionally a 'label'"
        )
    if groups is not None and groups not in columns:
        raise SourceError(
            f"manifest {path} has no {groups!r} column for --groups (columns: "
            f"{', '.join(columns)}); name the column that holds each image's group"
        )
    rows = [r for _, r in numbered]
    # An empty label and -1 (the cache's own mark) both mean unlabeled.
    values = sorted({r["label"] for r in rows if r.get("label") not in (None, "", "-1")})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {name: i for i, name in enumerate(values)}
    listed = [(line, r) for line, r in numbered if r.get("path")]
    _refuse_duplicates(
        path, [(line, os.path.normpath(path.parent / r["path"])) for line, r in listed]
    )
    items = [
        (file_item if fs is None else _remote_item)(
            r["path"],
            index.get(r.get("label", ""), -1),
            path.parent / r["path"],
            group=(r.get(groups) or None) if groups else None,
        )
        for _, r in listed
    ]
    return items, values


def manifest_listing(
    kind: str, spec: str, columns: Columns, read: Callable[[Path, Any], tuple[Rows, list[str]]]
) -> Listing:
    """The listing of the manifest ``spec`` (local or a URL), its rows read by ``read``."""
    remote = url_filesystem(spec)
    if remote is not None:
        fs, where = remote
        items, names = manifest_items(Path(where), *read(Path(where), fs), columns.groups, fs)
        return Listing(kind, url_of(fs, where), spec, items, names, reader=FileBytes(fs))
    path, root = local_path(spec)
    items, names = manifest_items(path, *read(path, None), columns.groups, None)
    return Listing(kind, root, root, items, names)


def is_manifest(spec: str, suffixes: tuple[str, ...]) -> bool:
    """A file (local or a URL) whose name ends with one of ``suffixes``."""
    if url_filesystem(spec) is not None:
        return spec.lower().endswith(suffixes)
    return is_regular_file(spec, suffixes)


def _refuse_duplicates(manifest: Path, paths: list[tuple[int, str]]) -> None:
    """Refuse a manifest listing one file twice (it would be two rows of one image)."""
    lines: dict[str, list[int]] = {}
    for line, where in paths:
        lines.setdefault(where, []).append(line)
    twice = {where: found for where, found in lines.items() if len(found) > 1}
    if twice:
        shown = "; ".join(
            f"{Path(where).name} on lines {', '.join(map(str, found))}"
            for where, found in list(twice.items())[:3]
        )
        more = f" (+{len(twice) - 3} more)" if len(twice) > 3 else ""
        raise SourceError(
            f"manifest {manifest} lists {len(twice)} file(s) more than once: {shown}{more}; "
            "keep one line per image"
        )


def _remote_item(item_id: str, label: int, path: Path, *, group: str | None = None) -> Item:
    """A file on an fsspec file system (read through it: nothing local is opened)."""
    return Item(item_id, label, path, group=group)


def detect(spec: str) -> bool:
    """A ``.csv`` file (local or a URL)."""
    return is_manifest(spec, (".csv",))


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images the manifest ``spec`` lists (kind ``csv``)."""
    return manifest_listing("csv", spec, columns, _read_csv)
