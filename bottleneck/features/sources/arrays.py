"""Array sources' common part: images in one array (IDX files, ``.npz`` files, Fashion-MNIST,
an array in memory), each item an index into it, with ids ``array:<index>``; and IDX reading.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.items import Item


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot read IDX file {path} (truncated or corrupt?): {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SourceError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise SourceError(f"{path} is truncated: its header declares {ndim} dimensions")
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    count = math.prod(shape)
    if len(data) - offset != count:
        raise SourceError(
            f"{path} is truncated or corrupt: header says {shape} = {count} bytes of pixels, "
            f"file has {len(data) - offset}"
        )
    return np.frombuffer(data, np.uint8, count=count, offset=offset).reshape(shape)


def array_items(
    kind: str,
    root: str,
    images: np.ndarray,
    labels: np.ndarray | None,
    names: list[str],
    hashes: dict[str, str],
) -> tuple[list[Item], list[str], np.ndarray]:
    if images.ndim not in (3, 4):
        raise SourceError(f"{root}: images array has shape {images.shape}; expected (N, H, W[, C])")
    if labels is not None and len(labels) != len(images):
        raise SourceError(f"{root}: {len(images)} images but {len(labels)} labels")
    if labels is not None and not np.issubdtype(labels.dtype, np.integer):
        numeric = np.issubdtype(labels.dtype, np.floating)
        fractional = np.flatnonzero(labels != np.round(labels)) if numeric else [0]
        if len(fractional):
            raise SourceError(
                f"{root}: labels must be class indices (whole numbers); label {fractional[0]} "
                f"is {labels[fractional[0]]} ({labels.dtype}): map the labels to 0..K-1, "
                "or -1 for unlabeled"
            )
        labels = labels.astype(np.int64)
    if labels is not None and not names:
        names = [str(v) for v in range(int(labels.max()) + 1)] if len(labels) else []
    if labels is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < -1 or high >= len(names):
            raise SourceError(
                f"{root}: labels range {low}..{high} does not fit the {len(names)} class "
                f"names (labels are indices 0-{len(names) - 1}, or -1 for unlabeled)"
            )
    items = [
        Item(f"array:{i}", int(labels[i]) if labels is not None else -1, index=i)
        for i in range(len(images))
    ]
    return items, names, images
