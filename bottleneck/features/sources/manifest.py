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
from bottleneck_transfer.features.targets import (
    TARGET_CLASS_NAME,
    VALUE_KINDS,
    Target,
    parse_target_spec,
    read_target,
)

#: The columns a manifest source reads (option names of :class:`Columns`).
COLUMNS = ("groups", "target")


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
    path: Path,
    numbered: Rows,
    columns: list[str],
    groups: str | None,
    fs: Any | None,
    target: str | None = None,
) -> tuple[list[Item], list[str], Target | None]:
    """The items, class names and target (None: a class target, as before targets) of a
    manifest's rows (``path``, the target column, ``groups``)."""
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
    spec = parse_target_spec(target)
    if target and spec.column not in columns:
        raise SourceError(
            f"manifest {path} has no {spec.column!r} column for --target (columns: "
            f"{', '.join(columns)}); name it with --target KIND:column=NAME"
        )
    listed = [(line, r) for line, r in numbered if r.get("path")]
    _refuse_duplicates(
        path, [(line, os.path.normpath(path.parent / r["path"])) for line, r in listed]
    )
    kind, texts = read_target(
        [(line, r.get(spec.column, "")) for line, r in listed], spec, str(path)
    )
    # Multi-label and regression rows are all labelled (label 0, one "class": the target).
    labelled = kind.kind not in VALUE_KINDS
    values = list(kind.names) if labelled else [TARGET_CLASS_NAME[kind.kind]]
    index = {name: i for i, name in enumerate(values)}
    items = [
        (file_item if fs is None else _remote_item)(
            r["path"],
            index.get(text, -1) if labelled else 0,
            path.parent / r["path"],
            group=(r.get(groups) or None) if groups else None,
            target=None if labelled else text,
        )
        for (_, r), text in zip(listed, texts, strict=True)
    ]
    return items, values, None if kind.kind == "class" else kind


def manifest_listing(
    kind: str, spec: str, columns: Columns, read: Callable[[Path, Any], tuple[Rows, list[str]]]
) -> Listing:
    """The listing of the manifest ``spec`` (local or a URL), its rows read by ``read``."""
    remote = url_filesystem(spec)
    if remote is not None:
        fs, where = remote
        items, names, target = manifest_items(
            Path(where), *read(Path(where), fs), columns.groups, fs, columns.target
        )
        return Listing(
            kind, url_of(fs, where), spec, items, names, reader=FileBytes(fs), target=target
        )
    path, root = local_path(spec)
    items, names, target = manifest_items(
        path, *read(path, None), columns.groups, None, columns.target
    )
    return Listing(kind, root, root, items, names, target=target)


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


def _remote_item(
    item_id: str, label: int, path: Path, *, group: str | None = None, target: str | None = None
) -> Item:
    """A file on an fsspec file system (read through it: nothing local is opened)."""
    return Item(item_id, label, path, group=group, target=target)


def detect(spec: str) -> bool:
    """A ``.csv`` file (local or a URL)."""
    return is_manifest(spec, (".csv",))


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images the manifest ``spec`` lists (kind ``csv``)."""
    return manifest_listing("csv", spec, columns, _read_csv)
