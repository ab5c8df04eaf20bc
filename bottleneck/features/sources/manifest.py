"""CSV manifest sources: a ``path`` column (relative to the CSV), an optional ``label`` and
a ``--groups`` column; local, or behind an fsspec URL (its paths then on the same file system).
"""

from __future__ import annotations

import csv
import io
import os
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


def _csv_source(
    path: Path, groups: str | None = None, fs: Any | None = None
) -> tuple[list[Item], list[str]]:
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
    if columns and "path" not in columns:
        raise SourceError(
            f"manifest {path} has no 'path' column (columns: {', '.join(columns)}); "
            "the header must be 'path,label' (label optional)"
        )
    if groups is not None and groups not in columns:
        raise SourceError(
            f"manifest {path} has no {groups!r} column for --groups (columns: "
            f"{', '.join(columns)}); name the column that holds each image's group"
        )
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for _, row in numbered]
    # An empty label and -1 (the cache's own mark) both mean unlabeled.
    values = sorted({r["label"] for r in rows if r.get("label") not in (None, "", "-1")})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {name: i for i, name in enumerate(values)}
    listed = [(line, r) for (line, _), r in zip(numbered, rows, strict=True) if r["path"]]
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
    if url_filesystem(spec) is not None:
        return spec.lower().endswith(".csv")
    return is_regular_file(spec, (".csv",))


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images the manifest ``spec`` lists (kind ``csv``)."""
    remote = url_filesystem(spec)
    if remote is not None:
        fs, where = remote
        items, names = _csv_source(Path(where), columns.groups, fs)
        return Listing("csv", url_of(fs, where), spec, items, names, reader=FileBytes(fs))
    path, root = local_path(spec)
    items, names = _csv_source(path, columns.groups)
    return Listing("csv", root, root, items, names)
