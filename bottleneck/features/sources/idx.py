"""IDX sources (the MNIST format): an images file, gzipped or not, with its labels file found
beside it (``...images-idx3...`` -> ``...labels-idx1...``)."""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.features.sources.arrays import array_items, read_idx
from bottleneck_transfer.features.sources.items import Columns, Listing, is_regular_file, local_path
from bottleneck_transfer.fingerprint import sha256_file


def detect(spec: str) -> bool:
    """An ``.idx``, ``.gz`` or ``.ubyte`` file, or one with ``idx`` in its name."""
    path = Path(spec)
    named = "idx" in path.name or path.suffix.lower() in (".idx", ".gz", ".ubyte")
    return named and is_regular_file(spec)


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images of the IDX file ``spec`` (kind ``idx``)."""
    path, root = local_path(spec)
    labels_path = _idx_labels_path(path)
    labels = read_idx(labels_path) if labels_path else None
    hashes = {"images_sha256": sha256_file(path)}
    if labels_path:
        hashes["labels_sha256"] = sha256_file(labels_path)
    items, names, arrays = array_items("idx", spec, read_idx(path), labels, [], hashes)
    return Listing("idx", root, root, items, names, arrays, hashes)


def _idx_labels_path(images: Path) -> Path | None:
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    candidate = images.with_name(name)
    return candidate if name != images.name and candidate.exists() else None
