"""The HDF5 feature cache, format version 1: its layout, row ids and the checks every writer and
reader applies.

Layout (see README, "Cache format"):

``/features`` float32 (N, D), contiguous (float16, or compressed, when asked) ·
``/labels`` int32 (N,) · ``/ids`` str (N,) ·
``/failed/ids``, ``/failed/reasons`` str · ``/manifest/{ids,size,mtime_ns}`` (file sources) ·
``/views/source_row`` int64 (N,) (caches with augmented views: after the plain rows come the
rows ``<id>#view0`` of every image in order, then ``#view1``, ... (:func:`assembled_rows`);
each row's plain row, a plain row's being its own index) ·
``/groups`` str (N,) (optional: a manifest's ``--groups`` column, e.g. a patient; each row's
image's value, ``""`` for none; rows sharing a value stay on one side of every split) ·
root attrs ``format``, ``format_version``, ``complete``, ``fingerprint``, ``identity``,
``provenance``, ``class_names`` (JSON).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from bottleneck_transfer import limits
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.choices import COMPRESSIONS, STORE_DTYPES
from bottleneck_transfer.fingerprint import diff_keys

FORMAT = "bottleneck-cache"


FORMAT_VERSION = 1


_STR = h5py.string_dtype("utf-8")


#: Features whose magnitude exceeds this overflow float32 once squared (scaling, kernels).
FEATURE_LIMIT = float(np.sqrt(np.finfo(np.float32).max))


#: The id of an augmented view row: ``<plain id>#view<k>``.
_VIEW_ID = re.compile(r"^(?P<plain>.*)#view(?P<k>\d+)$")


def view_id(item_id: str, k: int) -> str:
    """The id of view ``k`` of the image ``item_id``."""
    return f"{item_id}#view{k}"


def is_view(ids: Sequence[str]) -> np.ndarray:
    """bool (N,): which ids are augmented views (``<id>#view<k>``)."""
    return np.asarray([_VIEW_ID.match(i) is not None for i in ids], dtype=bool).reshape(len(ids))


def view_count(identity: dict) -> int:
    """K: the augmented views per image of a cache with this identity (0: a plain cache)."""
    return int(identity.get("views", {}).get("count", 0))


def image_row_ids(item_id: str, count: int) -> list[str]:
    """The ids of one image's rows: its plain row, then its ``count`` views."""
    return [item_id, *(view_id(item_id, k) for k in range(count))]


def assembled_rows(ids: Sequence[str], first: int, n_plain: int, count: int) -> np.ndarray:
    """int64: where a chunk's rows go in the assembled cache, whatever their order in it.

    The layout of a cache with ``count`` views per image: the ``n_plain`` plain rows in source
    order, then view 0 of each of them in that order, then view 1, ... (view ``k`` of plain
    row ``p`` is row ``n_plain * (k + 1) + p``); the chunk's plain rows start at ``first``.

    Raises
    ------
    CacheError
        A chunk whose rows are not its plain rows and ``count`` views of each.
    """
    matches = [_VIEW_ID.match(i) for i in ids]
    plain = [i for i, match in zip(ids, matches, strict=True) if match is None]
    where = {i: first + rank for rank, i in enumerate(plain)}
    out = np.empty(len(ids), np.int64)
    for row, (i, match) in enumerate(zip(ids, matches, strict=True)):
        k = -1 if match is None else int(match["k"])
        image = i if match is None else match["plain"]
        if image not in where or k >= count:
            raise CacheError(
                f"view row {i!r} has no plain row {image!r} beside it (or k >= {count}); "
                "rerun with --force"
            )
        out[row] = n_plain * (k + 1) + where[image]
    if len(ids) != len(plain) * (count + 1) or len(set(ids)) != len(ids):
        raise CacheError(
            f"{len(ids)} rows for {len(plain)} images are not each image and its {count} "
            "views; rerun with --force"
        )
    return out


def view_source_rows(n_plain: int, count: int) -> np.ndarray:
    """int64 (n_plain * (count + 1),): ``/views/source_row`` of :func:`assembled_rows`'s
    layout (each row's plain row, a plain row's own index)."""
    return np.tile(np.arange(n_plain, dtype=np.int64), count + 1)


def _json_attr(handle: h5py.File, name: str, default: Any = None) -> Any:
    raw = handle.attrs.get(name)
    if raw is None:
        return default
    where = f"{handle.filename}: attribute {name!r}"
    todo = "re-extract the cache with --force"
    if not isinstance(raw, (str, bytes)):
        raise CacheError(f"{where} is not JSON text ({type(raw).__name__}); {todo}")
    return limits.load_json(raw, where, CacheError, todo)


def manifest_changes(before: dict | None, after: dict | None) -> list[str]:
    """Sentences naming the files added, removed or modified between two manifests."""
    if before is None or after is None:
        return []
    old, new = (
        dict(zip(m["ids"], zip(m["size"], m["mtime_ns"], strict=True), strict=True))
        for m in (before, after)
    )
    changed = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "modified": sorted(k for k in set(old) & set(new) if tuple(old[k]) != tuple(new[k])),
    }
    return [
        f"{len(ids)} file(s) {what}: "
        + ", ".join(ids[:5])
        + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")
        for what, ids in changed.items()
        if ids
    ]


def describe_difference(
    path: str | Path,
    old_identity: dict,
    new_identity: dict,
    old_manifest: dict | None = None,
    new_manifest: dict | None = None,
) -> str:
    """A sentence naming the fields (and source files) in which two cache inputs differ."""
    keys = diff_keys(old_identity, new_identity) or ["fingerprint"]
    files = manifest_changes(old_manifest, new_manifest)
    changed = f"; {'; '.join(files)}" if files else ""
    return f"{path} was made from different inputs (differs in: {', '.join(keys)}{changed})"


def unusable_rows(features: Any, block_rows: int | None = None) -> np.ndarray:
    """Indices of the rows holding NaN, Inf, or values beyond :data:`FEATURE_LIMIT`.

    ``features`` is an array or an HDF5 dataset, read ``block_rows`` rows at a time
    (default: about 4M values).
    """
    step = block_rows or max(1, 2**22 // max(1, int(np.prod(features.shape[1:]))))
    bad = [
        start + np.flatnonzero(~(np.abs(features[start : start + step]) <= FEATURE_LIMIT).all(1))
        for start in range(0, len(features), step)
    ]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def describe_unusable(rows: np.ndarray, ids: Sequence[str]) -> str:
    """``"3 rows hold NaN, Inf or overflowing ... features (rows 2, 7, 9: ids a, b, c)"``."""
    shown = [int(r) for r in rows[:3]]
    more = " …" if len(rows) > 3 else ""
    return (
        f"{len(rows)} rows hold NaN, Inf or overflowing (|x| > {FEATURE_LIMIT:.2g}) features "
        f"(rows {', '.join(map(str, shown))}{more}: ids {', '.join(ids[r] for r in shown)}{more})"
    )


def check_features(features: np.ndarray, ids: Sequence[str], where: str | Path) -> None:
    """Refuse features heads cannot use, naming the rows.

    Raises
    ------
    CacheError
        If any row holds NaN, Inf or a value beyond :data:`FEATURE_LIMIT`.
    """
    bad = unusable_rows(features)
    if bad.size:
        raise CacheError(
            f"{where}: {describe_unusable(bad, ids)}; re-extract those images (check the base "
            "and its preprocessing) or drop the rows"
        )


def check_storage(store_dtype: str, compression: str | None) -> None:
    """Refuse a ``store_dtype`` or ``compression`` the cache format does not offer."""
    if store_dtype not in STORE_DTYPES:
        raise ValueError(
            f"store_dtype must be one of {', '.join(STORE_DTYPES)}. "
            f"Received: store_dtype={store_dtype!r}"
        )
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSIONS)} or None. "
            f"Received: compression={compression!r}"
        )


def _check_float16(features: np.ndarray, ids: Sequence[str], where: Path) -> None:
    """Refuse rows that float16 cannot hold (they would be stored as Inf)."""
    limit = float(np.finfo(np.float16).max)
    rows = np.flatnonzero(~(np.abs(np.asarray(features, np.float32)) <= limit).all(1))
    if rows.size:
        raise CacheError(
            f"{where}: {rows.size} rows hold features beyond float16's range (|x| > {limit:g}; "
            f"first id {ids[int(rows[0])]}); extract with --store-dtype float32"
        )
