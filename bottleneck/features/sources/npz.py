"""NumPy ``.npz`` sources: an ``images`` (or ``x``) array, optional ``labels`` (or ``y``) and
``class_names``, read without pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.arrays import array_items
from bottleneck_transfer.features.sources.items import (
    Columns,
    Item,
    Listing,
    is_regular_file,
    local_path,
)
from bottleneck_transfer.fingerprint import sha256_file


def detect(spec: str) -> bool:
    """A ``.npz`` file."""
    return is_regular_file(spec, (".npz",))


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images of the ``.npz`` file ``spec`` (kind ``npz``)."""
    path, root = local_path(spec)
    items, names, arrays, hashes = _npz_source(path)
    return Listing("npz", root, root, items, names, arrays, hashes)


def _npz_source(path: Path) -> tuple[list[Item], list[str], np.ndarray, dict[str, str]]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with loaded as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(f"cannot read {path} as a NumPy .npz without pickle: {exc}") from exc
    images = next((contents[k] for k in ("images", "x", "X") if k in contents), None)
    if images is None:
        raise SourceError(
            f"{path} has no 'images' (or 'x') array; found: {', '.join(contents) or 'nothing'}"
        )
    labels = next((contents[k] for k in ("labels", "y") if k in contents), None)
    names = [str(n) for n in contents.get("class_names", [])]
    hashes = {"npz_sha256": sha256_file(path)}
    items, names, arrays = array_items("npz", str(path), images, labels, names, hashes)
    return items, names, arrays, hashes
