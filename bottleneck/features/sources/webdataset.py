"""WebDataset tar shards: ``{key}.{jpg,png,...}`` members with ``{key}.cls`` (a class index or
name) or ``{key}.json`` (``{"label": ...}``) labels, in one ``.tar`` file, a brace pattern
(``shards-{000..009}.tar``) or a folder of ``.tar`` files.

Each sample is an item whose id is its key (unique across the shards) and whose pixels are
its image member's bytes inside the shard, read at decode time (the listing holds offsets,
never the images: memory stays flat). Class names are the sorted labels (numeric labels in
numeric order), as a CSV manifest's. An image member that does not decode is recorded in
``/failed`` under its key like any bad image; a shard that cannot be listed (truncated,
not a tar) is one failed item named after it. Shards behind an fsspec URL are listed and
read through it (members by byte range).
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.decode import IMAGE_EXTENSIONS
from bottleneck_transfer.features.sources.items import Columns, Item, Listing, is_regular_file
from bottleneck_transfer.features.sources.reading import (
    FileBytes,
    open_binary,
    url_filesystem,
    url_of,
)

#: ``{000..009}`` in a shard pattern: numbered shards, zero-padded like the bounds.
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_LABEL_SUFFIXES = (".cls", ".json")


def shard_paths(spec: str, fs: Any | None = None) -> list[Path]:
    """The shard files of ``spec`` (a path on ``fs`` when given): one ``.tar``, a brace
    pattern, or a folder's ``.tar`` files (sorted)."""
    match = _RANGE.search(spec)
    if match:
        low, high = match.group(1), match.group(2)
        width = len(low)
        numbers = range(int(low), int(high) + 1)
        return [
            Path(spec[: match.start()] + f"{n:0{width}d}" + spec[match.end() :]) for n in numbers
        ]
    if fs is not None:
        if not fs.isdir(spec):
            return [Path(spec)]
        names = sorted(str(p) for p in fs.ls(spec, detail=False))
        return [Path(p) for p in names if p.endswith(".tar") and not Path(p).name.startswith(".")]
    path = Path(spec).expanduser()
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.suffix == ".tar" and not p.name.startswith(".")
        )
    return [path]


def detect(spec: str) -> bool:
    """A ``.tar`` file (local or a URL), or a brace pattern of them."""
    if _RANGE.search(spec) or url_filesystem(spec) is not None:
        return spec.endswith(".tar")
    return is_regular_file(spec, (".tar",))


def _split(name: str) -> tuple[str, str]:
    """A member name's sample key and extension (``a/b.c.jpg`` -> ``a/b``, ``.c.jpg``)."""
    folder, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + rest).lower()


def _label(raw: bytes, suffix: str) -> str | None:
    """The label text of a ``.cls`` or ``.json`` member (None when it has none)."""
    text = raw.decode("utf-8", "replace").strip()
    if suffix == ".cls":
        return text or None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    label = value.get("label") if isinstance(value, dict) else None
    return None if label is None else str(label)


def _samples(
    shard: Path, fs: Any | None = None
) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Each key's image member ``(offset, size)`` and label text in one shard."""
    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, str] = {}
    with open_binary(fs, shard) as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, suffix = _split(member.name)
            if suffix.endswith(IMAGE_EXTENSIONS) and "." not in suffix[1:]:
                images[key] = (member.offset_data, member.size)
            elif suffix in _LABEL_SUFFIXES:
                handle = tar.extractfile(member)
                label = _label(handle.read(), suffix) if handle is not None else None
                if label is not None:
                    labels[key] = label
    return images, labels


def open_listing(spec: str, columns: Columns) -> Listing:
    """The samples of the shards of ``spec`` (kind ``webdataset``), in shard then member
    order.

    Raises
    ------
    SourceError
        No shard found, or one key in two shards.
    """
    remote = url_filesystem(spec)
    fs, where = remote if remote is not None else (None, spec)
    paths = shard_paths(where, fs)
    paths = [p.absolute() for p in paths] if fs is None else paths
    is_file = (lambda p: p.is_file()) if fs is None else (lambda p: fs.isfile(str(p)))
    if not paths or not all(is_file(p) for p in paths):
        missing = [str(p) for p in paths if not is_file(p)][:3]
        raise SourceError(f"no tar shards at {spec} (missing: {', '.join(missing) or 'all'})")
    found: list[tuple[str, Path, tuple[int, int] | None, str | None, str | None]] = []
    seen: dict[str, Path] = {}
    for shard in paths:
        try:
            images, labels = _samples(shard, fs)
        except (OSError, tarfile.TarError, EOFError) as exc:
            found.append((shard.name, shard, None, None, f"cannot list this shard: {exc}"))
            continue
        for key, member in images.items():
            if key in seen:
                raise SourceError(
                    f"sample {key!r} is in two shards ({seen[key].name}, {shard.name}): keys "
                    "must be unique across the shards"
                )
            seen[key] = shard
            found.append((key, shard, member, labels.get(key), None))
    values = sorted({label for *_, label, _ in found if label is not None and label != "-1"})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {name: i for i, name in enumerate(values)}
    items = [
        Item(key, index.get(label, -1) if label else -1, shard, member=member, error=error)
        for key, shard, member, label, error in found
    ]
    if fs is not None:
        root = url_of(fs, paths[0].parent if len(paths) > 1 else paths[0])
        return Listing("webdataset", root, spec, items, values, reader=FileBytes(fs))
    root = str(paths[0].parent.resolve()) if len(paths) > 1 else str(paths[0].resolve())
    spec_text = spec if _RANGE.search(spec) else str(Path(spec).expanduser().resolve())
    return Listing("webdataset", root, spec_text, items, values, reader=FileBytes())
