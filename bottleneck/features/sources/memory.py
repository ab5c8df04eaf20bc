"""In-memory arrays as a source (the library only): ``open_arrays(images, labels)``.

Items are indices into ``images`` (ids ``array:<index>``, as every array source's); the
identity is the arrays' content hash, so the same arrays give the same fingerprint in any
process. A cluster engine cannot send them to its workers: save them as ``.npz`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.arrays import array_items
from bottleneck_transfer.features.sources.items import Source, Split, select, split_source
from bottleneck_transfer.fingerprint import sha256_arrays

KIND = "arrays"


def open_arrays(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    classes: str | Sequence[str | int] | None = None,
    limit: int | None = None,
    split: Split | None = None,
) -> Source:
    """A source of the images in ``images`` (uint8 ``(N, H, W[, C])``).

    Parameters
    ----------
    images : ndarray
        One image per row.
    labels : array-like of int, optional
        Class index per image (-1: unlabeled).
    class_names : sequence of str, optional
        Default: ``"0"``, ``"1"``, ... up to the largest label.
    classes, limit, split
        As :func:`features.sources.open_source`'s.

    Raises
    ------
    SourceError
        Shapes or labels that do not fit, naming them.

    Examples
    --------
    >>> source = open_arrays(x_train, y_train, class_names=["cat", "dog"])  # doctest: +SKIP
    >>> extract(source, "mobilenet_v2", "train.h5")  # doctest: +SKIP
    """
    images = np.asarray(images)
    label_array = None if labels is None else np.asarray(labels)
    hashes = {"images_sha256": sha256_arrays([images])}
    if label_array is not None:
        hashes["labels_sha256"] = sha256_arrays([label_array])
    names = list(class_names or [])
    items, names, arrays = array_items(KIND, "memory", images, label_array, names, hashes)
    items, names = select(items, names, classes, limit)
    if not items:
        raise SourceError("no images in the arrays given (an empty array, or --limit/classes)")
    options = {"spec": None, "classes": classes, "limit": limit}
    source = Source(KIND, "memory", names, items, options, arrays, hashes)
    return source if split is None else split_source(source, split)
