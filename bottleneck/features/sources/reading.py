"""Where an item's bytes come from: local paths (the fast path: decoded straight from the
file), members of files (a tar shard's, by offset), and any fsspec URL (``s3://``, ``gs://``,
``http://``, ``memory://``).

A source whose items are not plain local files carries a :class:`Reader`; decoding its bytes
is the same code path as decoding a file (:func:`features.decode.decode_file`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bottleneck_transfer.errors import ImageError, SourceError

if TYPE_CHECKING:
    from bottleneck_transfer.features.sources.items import Item

#: ``scheme://`` at the start of a spec: a URL, opened through fsspec.
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
MISSING_FSSPEC = "URL sources need fsspec, which is not installed; pip install fsspec"


class Reader(Protocol):
    """What a source's items are read through (see :attr:`Source.reader`)."""

    def read(self, item: Item) -> bytes:
        """The item's image bytes; raises ImageError."""

    def stat(self, path: Path) -> tuple[int, int]:
        """``(size, mtime_ns)`` of the file at ``path``; ``(-1, -1)`` when unknown."""


def local_spec(spec: str) -> str:
    """``spec`` with a ``file://`` scheme removed: local files stay on the fast path."""
    return spec[len("file://") :] if spec.lower().startswith("file://") else spec


def url_filesystem(spec: str) -> tuple[Any, str] | None:
    """The fsspec file system and path of a URL ``spec``; None for a local path.

    Raises
    ------
    SourceError
        fsspec is not installed, or knows no file system for the scheme.
    """
    match = _SCHEME.match(spec)
    if match is None or match.group(1).lower() == "file":
        return None
    try:
        import fsspec
    except ImportError as exc:
        raise SourceError(MISSING_FSSPEC) from exc
    try:
        return fsspec.core.url_to_fs(spec)
    except (ImportError, ValueError) as exc:
        raise SourceError(f"cannot open {spec} through fsspec: {exc}") from exc


def url_of(fs: Any, path: str | Path) -> str:
    """The URL of ``path`` on ``fs`` (what reopens it)."""
    return fs.unstrip_protocol(str(path))


def open_binary(fs: Any | None, path: str | Path) -> Any:
    """``path`` opened for reading bytes, locally (``fs`` None) or on ``fs``."""
    return open(path, "rb") if fs is None else fs.open(str(path), "rb")


@dataclass
class FileBytes:
    """Reads items whole or by ``member`` ``(offset, size)``, locally (``fs`` None) or through
    an fsspec file system."""

    fs: Any | None = None

    def read(self, item: Item) -> bytes:
        """The item's bytes (its member's, for a tar member).

        Raises
        ------
        ImageError
            The file cannot be read, or ends before the member does.
        """
        assert item.path is not None
        offset, size = item.member if item.member is not None else (0, -1)
        try:
            if self.fs is not None:
                end = None if size < 0 else offset + size
                data = self.fs.cat_file(str(item.path), start=offset, end=end)
            else:
                with open(item.path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(size)
        except FileNotFoundError as exc:
            raise ImageError("file not found") from exc
        except OSError as exc:
            raise ImageError(f"cannot read {item.path}: {exc.strerror or exc}") from exc
        if 0 <= size != len(data):
            raise ImageError(f"truncated: {len(data)} of {size} bytes in {item.path}")
        return data

    def stat(self, path: Path) -> tuple[int, int]:
        """``(size, mtime_ns)`` of ``path``; ``(-1, -1)`` when it cannot be read."""
        return file_stat(self.fs, path)


def file_stat(fs: Any | None, path: str | Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a local file (``fs`` None) or one on ``fs`` (mtime 0 where the
    file system keeps none); ``(-1, -1)`` when it cannot be read."""
    try:
        if fs is None:
            stat = os.stat(path)
            return stat.st_size, stat.st_mtime_ns
        size = int(fs.size(str(path)))
    except (OSError, ValueError):
        return -1, -1
    try:
        return size, int(fs.modified(str(path)).timestamp() * 1e9)
    except (NotImplementedError, OSError, AttributeError, ValueError):
        return size, 0
