"""JSON-lines manifest sources: one JSON object a line, with a ``path`` (relative to the
file), an optional ``label`` (a name or a number) and a ``--groups`` key; local, or behind an
fsspec URL. Rows become items as a CSV manifest's do (:func:`.manifest.manifest_listing`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.items import Columns, Listing
from bottleneck_transfer.features.sources.manifest import Rows, is_manifest, manifest_listing
from bottleneck_transfer.features.sources.reading import open_binary
from bottleneck_transfer.features.targets import TAG_SEPARATOR

#: The columns a JSON-lines source reads (option names of :class:`Columns`).
COLUMNS = ("groups", "target")
SUFFIXES = (".jsonl", ".ndjson")


def _read_jsonl(path: Path, fs: Any | None) -> tuple[Rows, list[str]]:
    """The file's numbered rows (values as text) and every key any row has."""
    rows: Rows = []
    keys: dict[str, None] = {}
    try:
        with open_binary(fs, path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig") as text:
            for line, record in enumerate(text, start=1):
                if not record.strip():
                    continue
                row = json.loads(record)
                if not isinstance(row, dict):
                    raise SourceError(
                        f"manifest {path}, line {line}: not a JSON object; write one object "
                        'a line, e.g. {"path": "a.jpg", "label": "cat"}'
                    )
                keys.update(dict.fromkeys(row))
                text_row = {k: _text(v) for k, v in row.items()}
                rows.append((line, text_row))
    except json.JSONDecodeError as exc:
        raise SourceError(f"manifest {path}, line {line}: not valid JSON ({exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read manifest {path}: {exc}") from exc
    return rows, list(keys)


def _text(value: Any) -> str:
    """A value as manifest text: a list (multi-label tags) joined by ``|``."""
    if isinstance(value, list):
        return TAG_SEPARATOR.join(str(v).strip() for v in value)
    return "" if value is None else str(value).strip()


def detect(spec: str) -> bool:
    """A ``.jsonl`` or ``.ndjson`` file (local or a URL)."""
    return is_manifest(spec, SUFFIXES)


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images the JSON-lines manifest ``spec`` lists (kind ``jsonl``)."""
    return manifest_listing("jsonl", spec, columns, _read_jsonl)
