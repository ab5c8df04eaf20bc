"""Caches that grow: ``extract --update`` extracts only new or changed images.

An image is unchanged when the old cache's manifest holds its id with the same size and
mtime (array sources: when the old cache indexes the same arrays, by their hashes); its
rows (plain and augmented views) or its failure are reused. New and changed images
are extracted into a temporary cache beside ``out`` (resumable like any extraction), rows of
removed images are dropped, and the rows are merged in source order into a new complete cache,
written by the normal crash-safe writer: it equals a fresh extraction (same ids, features,
``/views/source_row``, fingerprint; an image's views depend only on its id and the seed).
The caches of several layers of one pass are updated together: an image new or changed for
any of them is extracted once, for all of them; a layer without a cache yet reuses nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import StaleCacheError
from bottleneck_transfer.features.cache.format import image_row_ids, is_view, view_count
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.loop import finished
from bottleneck_transfer.features.sources import Source
from bottleneck_transfer.fingerprint import diff_keys

#: Rows merged (and committed) at a time.
MERGE_ROWS = 4096


def update_path(out: Path) -> Path:
    """The temporary cache of the new and changed images of an update of ``out``."""
    return out.with_name(out.name + ".update.h5")


def _unchanged(cache: FeatureCache, source: Source, manifest: dict | None) -> set[str]:
    """Ids whose size and mtime are those recorded in the cache's manifest; for an array
    source (no manifest), every id of a cache made from the same arrays (equal hashes)."""
    if manifest is None:
        made_from = cache.identity.get("source", {})
        same = all(made_from.get(k) == v for k, v in source.array_hashes.items())
        return (
            set(cache.ids) | {i for i, _ in cache.failed} if source.array_hashes and same else set()
        )
    old = cache.manifest
    if old is None:
        return set()
    stat = dict(zip(old["ids"], zip(old["size"], old["mtime_ns"], strict=True), strict=True))
    now = zip(manifest["ids"], manifest["size"], manifest["mtime_ns"], strict=True)
    return {i for i, size, mtime in now if stat.get(i) == (size, mtime)}


def check_updatable(cache: FeatureCache, identity: dict, out: Path) -> None:
    """Refuse an update whose base, its settings, the storage or the augmented views (recipe,
    count, seed) differ from the cache's.

    Raises
    ------
    StaleCacheError
        Naming what differs.
    """
    old = cache.identity
    keep = ("format_version", "base", "store_dtype", "views")
    differs = diff_keys({k: old.get(k) for k in keep}, {k: identity.get(k) for k in keep})
    if old.get("source", {}).get("kind") != identity["source"]["kind"]:
        differs.append("source.kind")
    if differs:
        raise StaleCacheError(
            f"--update keeps the base, its settings and the views (--augment/--views/--seed), "
            f"but {out} was made with others (differs in: {', '.join(differs)}); extract "
            "afresh: to another file with -o, or without --update and with --force"
        )


def _reusable(
    cache: FeatureCache | None, source: Source, manifest: dict | None
) -> dict[str, str | None]:
    """The images whose rows (None) or failure (its reason) ``cache`` holds, unchanged."""
    if cache is None:
        return {}
    unchanged = _unchanged(cache, source, manifest)
    ids = np.asarray(cache.ids, dtype=object)
    rows = {i: None for i in ids[~is_view(ids)].tolist() if i in unchanged}
    return rows | {i: why for i, why in cache.failed if i in unchanged}


def update_caches(
    source: Source,
    outs: list[Path],
    *,
    prints: list[str],
    identities: list[dict],
    manifest: dict | None,
    open_writer: Callable[[int], Any],
    extract_part: Callable[[Source, list[int], list[Path]], Any],
) -> list[Any]:
    """Bring the caches ``outs`` of one pass (one per layer) up to date with ``source``.

    A cache whose fingerprint is ``prints[k]`` is up to date; one that does not exist yet
    reuses nothing. Only the images new or changed for any cache to update are extracted,
    once, for all of them: ``extract_part(part, keep, paths)`` extracts the source ``part``
    for the caches ``keep`` into ``paths`` in one pass (see the module); ``open_writer(k)``
    makes cache ``k``'s new writer.

    Raises
    ------
    StaleCacheError
        A cache made with another base, settings or views (:func:`check_updatable`).
    """
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        olds = [stack.enter_context(FeatureCache.open(o)) if o.exists() else None for o in outs]
        stale = [k for k, old in enumerate(olds) if old is None or old.fingerprint != prints[k]]
        for k in stale:
            if olds[k] is not None:
                check_updatable(olds[k], identities[k], outs[k])
        reusable = {k: _reusable(olds[k], source, manifest) for k in stale}
        kept = set.intersection(*(set(rows) for rows in reusable.values())) if stale else set()
        todo = [item for item in source.items if item.id not in kept]
        fresh_paths = [update_path(outs[k]) for k in stale]
        counts: dict[int, dict[str, int]] = {}
        if stale and todo:
            options = {**source.options, "update_of": str(outs[stale[0]])}
            part = dataclasses.replace(source, items=todo, options=options)
            extract_part(part, stale, fresh_paths)
        for k, fresh_path in zip(stale, fresh_paths, strict=True):
            with FeatureCache.open(fresh_path) if todo else contextlib.nullcontext() as fresh:
                writer = open_writer(k)
                _merge(writer, source.items, kept, olds[k], reusable[k], fresh, identities[k])
            counts[k] = {
                "reused": len(kept),
                "extracted": len(todo),
                "dropped": _dropped(olds[k], source),
            }
            extraction = {
                "update": counts[k],
                "seconds": round(time.perf_counter() - started, 3),
                "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            if olds[k] is not None:
                olds[k].close()  # before the new cache replaces it
            writer.finalize(outs[k], extraction)
            fresh_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return [
        finished(
            out,
            up_to_date=k not in stale,
            seconds=seconds if k in stale else 0.0,
            update=counts.get(k),
        )
        for k, out in enumerate(outs)
    ]


def _dropped(old: FeatureCache | None, source: Source) -> int:
    """How many images (rows or failures) of ``old`` are no longer in ``source``."""
    if old is None:
        return 0
    ids = np.asarray(old.ids, dtype=object)
    present = {item.id for item in source.items}
    gone = [*ids[~is_view(ids)].tolist(), *(i for i, _ in old.failed)]
    return sum(1 for i in gone if i not in present)


def _merge(
    writer: Any,
    items: list,
    kept: set[str],
    old: FeatureCache | None,
    reused: dict[str, str | None],
    fresh: FeatureCache | None,
    identity: dict,
) -> None:
    """Write every image of ``items`` in order: the ``kept`` ones' rows or failure from
    ``old``, the others' from ``fresh``, ``MERGE_ROWS`` images per committed chunk."""
    count = view_count(identity)
    dim = (fresh if fresh is not None else old).dim
    old_rows = {} if old is None else {i: r for r, i in enumerate(old.ids)}
    new_rows = {} if fresh is None else {i: r for r, i in enumerate(fresh.ids)}
    new_failed = {} if fresh is None else dict(fresh.failed)
    for start in range(0, len(items), MERGE_ROWS):
        block = items[start : start + MERGE_ROWS]
        why = {i.id: reused[i.id] if i.id in kept else new_failed.get(i.id) for i in block}
        failures = [(i.id, why[i.id]) for i in block if why[i.id] is not None]
        done = [item for item in block if why[item.id] is None]
        features = np.empty((len(done) * (count + 1), dim), np.float32)
        ids: list[str] = []
        for item in done:
            data, rows = (old, old_rows) if item.id in kept else (fresh, new_rows)
            for row_id in image_row_ids(item.id, count):
                features[len(ids)] = data.features[rows[row_id]]
                ids.append(row_id)
        labels = np.repeat(np.asarray([item.label for item in done], np.int32), count + 1)
        writer.write_batch(features, labels, ids, failures, start + len(block))
        writer.commit()
