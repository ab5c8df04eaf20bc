"""``fashion-mnist:train`` / ``fashion-mnist:test``: the IDX files that
``apt-get install dataset-fashion-mnist`` puts in ``/usr/share/datasets/fashion-mnist`` (or
``$BOTTLENECK_FASHION_MNIST_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.arrays import array_items, read_idx
from bottleneck_transfer.features.sources.items import Columns, Listing
from bottleneck_transfer.fingerprint import sha256_file

PREFIX = "fashion-mnist:"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


_FASHION_FILES = {"train": "train", "test": "t10k"}


def detect(spec: str) -> bool:
    """``fashion-mnist:PART``."""
    return spec.startswith(PREFIX)


def open_listing(spec: str, columns: Columns) -> Listing:
    """The Fashion-MNIST part ``spec`` names (kind ``fashion-mnist``)."""
    fashion_part = spec.split(":", 1)[1]
    if fashion_part not in _FASHION_FILES:
        raise SourceError(
            f"unknown Fashion-MNIST split {fashion_part!r}; use fashion-mnist:train|test"
        )
    folder = Path(os.environ.get("BOTTLENECK_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    images_path = folder / f"{_FASHION_FILES[fashion_part]}-images-idx3-ubyte.gz"
    labels_path = folder / f"{_FASHION_FILES[fashion_part]}-labels-idx1-ubyte.gz"
    if not (images_path.exists() and labels_path.exists()):
        raise SourceError(
            f"Fashion-MNIST not found at {folder}: install it with "
            "`apt-get install dataset-fashion-mnist` or set BOTTLENECK_FASHION_MNIST_DIR"
        )
    hashes = {
        "images_sha256": sha256_file(images_path),
        "labels_sha256": sha256_file(labels_path),
    }
    images, labels = read_idx(images_path), read_idx(labels_path)
    kind = "fashion-mnist"
    items, names, arrays = array_items(kind, spec, images, labels, FASHION_MNIST_CLASSES, hashes)
    return Listing(kind, str(folder), spec, items, names, arrays, hashes)
