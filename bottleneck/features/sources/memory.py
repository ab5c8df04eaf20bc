"""In-memory arrays as a source (the library only): ``open_arrays(images, labels)``, and
lists of strings as a text source: ``open_texts(texts, labels)``; a text file's lines
(``open_text_lines``: what ``predict`` reads from a ``.txt`` file).

Items are indices into ``images`` (ids ``array:<index>``, as every array source's); the
identity is the arrays' content hash, so the same arrays give the same fingerprint in any
process. A cluster engine cannot send them to its workers: save them as ``.npz`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.sources.arrays import array_items
from bottleneck_transfer.features.sources.items import (
    Item,
    Source,
    Split,
    select,
    split_source,
)
from bottleneck_transfer.features.sources.text import texts_sha256
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


def open_texts(
    texts: Sequence[str],
    labels: np.ndarray | Sequence[int] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    classes: str | Sequence[str | int] | None = None,
    limit: int | None = None,
    split: Split | None = None,
) -> Source:
    """A text source of the strings in ``texts`` (ids ``array:<index>``, modality ``text``).

    ``labels``, ``class_names``, ``classes``, ``limit`` and ``split`` as :func:`open_arrays`'.
    The identity is the texts' hash (:func:`.text.texts_sha256`) and the labels'. A string
    that cannot be UTF-8 (a lone surrogate) is a failed item at extraction, as is an empty one.

    Examples
    --------
    >>> source = open_texts(["a cat", "a red car"], [0, 1], class_names=["animal", "thing"])
    >>> source.modality, source.items[1].id
    ('text', 'array:1')
    """
    if isinstance(texts, (str, bytes)):
        raise SourceError("texts must be a list of strings, not one string")
    data = [str(text).encode("utf-8", "surrogatepass") for text in texts]
    label_array = None if labels is None else np.asarray(labels)
    hashes = {"texts_sha256": texts_sha256(data)}
    if label_array is not None:
        hashes["labels_sha256"] = sha256_arrays([label_array])
    shape = np.zeros((len(data), 1, 1), np.uint8)  # array_items checks labels against N rows
    items, names, _ = array_items(
        KIND, "memory", shape, label_array, list(class_names or []), hashes
    )
    items = [replace(item, modality="text") for item in items]
    items, names = select(items, names, classes, limit)
    if not items:
        raise SourceError("no texts in the list given (an empty list, or --limit/classes)")
    arrays = np.empty(len(data), dtype=object)
    arrays[:] = data
    options = {"spec": None, "classes": classes, "limit": limit}
    source = Source("texts", "memory", names, items, options, arrays, hashes)
    return source if split is None else split_source(source, split)


def open_text_lines(path: str | Path, limit: int | None = None) -> Source:
    """A text source of a file's lines, one text a line, unlabeled (ids ``NAME:LINE``, lines
    counted from 1; blank lines are skipped). Each line keeps its bytes, so a line that is
    not UTF-8 fails at reading as that line's failure, not the file's."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read the text file {path}: {exc.strerror or exc}") from exc
    lines = [(k, line.rstrip(b"\r")) for k, line in enumerate(data.split(b"\n"), start=1)]
    lines = [(k, line) for k, line in lines if line.strip()]
    items = [
        Item(f"{path.name}:{k}", -1, index=row, modality="text") for row, (k, _) in enumerate(lines)
    ]
    items, _ = select(items, [], None, limit)  # ``limit``: spread evenly, as open_source's
    if not items:
        raise SourceError(f"{path} holds no text (one text a line)")
    texts = np.empty(len(lines), dtype=object)
    texts[:] = [line for _, line in lines]
    hashes = {"texts_sha256": texts_sha256(list(texts))}
    options = {"spec": str(path), "limit": limit}
    return Source("text", str(path.parent), [], items, options, texts, hashes)
