"""Caches that grow: ``extract --update`` extracts only new or changed images.

An image is unchanged when the old cache's manifest holds its id with the same size and
mtime; its rows (plain and augmented views) or its failure are reused. New and changed images
are extracted into a temporary cache beside ``out`` (resumable like any extraction), rows of
removed images are dropped, and the rows are merged in source order into a new complete cache,
written by the normal crash-safe writer: it equals a fresh extraction (same ids, features,
``/views/source_row``, fingerprint; an image's views depend only on its id and the seed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import StaleCacheError
from bottleneck_transfer.features.bases import Base
from bottleneck_transfer.features.cache import FeatureCache, image_row_ids, is_view, view_count
from bottleneck_transfer.features.sources import Source
from bottleneck_transfer.fingerprint import diff_keys

#: Rows merged (and committed) at a time.
MERGE_ROWS = 4096


def update_path(out: Path) -> Path:
    """The temporary cache of the new and changed images of an update of ``out``."""
    return out.with_name(out.name + ".update.h5")


def _unchanged(cache: FeatureCache, manifest: dict) -> set[str]:
    """Ids whose size and mtime are those recorded in the cache's manifest."""
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


def update_cache(
    source: Source,
    base: Base,
    out: Path,
    *,
    open_writer: Any,
    print_fp: str,
    identity: dict,
    manifest: dict | None,
    settings: dict,
) -> Any:
    """Bring the complete cache ``out`` up to date with ``source`` (see the module).

    ``open_writer()`` makes the new cache's writer; ``settings`` are the extraction options
    (batch size, workers, strict, max_pixels, progress) for the new and changed images.
    """
    from bottleneck_transfer.features.extract import ExtractResult, extract

    if manifest is None:
        raise StaleCacheError(
            f"--update compares files by size and time, and {source.root} is not a folder or "
            "CSV source (array sources have no file list): rerun without --update, with --force"
        )
    started = time.perf_counter()
    with FeatureCache.open(out) as old:
        if old.fingerprint == print_fp:
            return ExtractResult(out, len(old), old.failed, up_to_date=True, fingerprint=print_fp)
        check_updatable(old, identity, out)
        unchanged = _unchanged(old, manifest)
        count = view_count(identity)
        old_ids = np.asarray(old.ids, dtype=object)
        old_plain = old_ids[~is_view(old_ids)].tolist()
        old_rows = {i: r for r, i in enumerate(old_ids)}
        old_failed = {i: why for i, why in old.failed if i in unchanged}
        kept = (set(old_plain) & unchanged) | set(old_failed)
        present = {item.id for item in source.items}
        dropped = sum(1 for i in [*old_plain, *(i for i, _ in old.failed)] if i not in present)
        todo = [item for item in source.items if item.id not in kept]
        fresh_path = update_path(out)
        if todo:
            options = {**source.options, "update_of": str(out)}
            part = dataclasses.replace(source, items=todo, options=options)
            extract(part, base, fresh_path, force=True, **settings)
        writer = open_writer()
        with FeatureCache.open(fresh_path) if todo else contextlib.nullcontext() as fresh:
            new_rows = {} if fresh is None else {i: r for r, i in enumerate(fresh.ids)}
            new_failed = {} if fresh is None else dict(fresh.failed)
            items = source.items
            for start in range(0, len(items), MERGE_ROWS):
                block = items[start : start + MERGE_ROWS]
                failures = [
                    (item.id, old_failed.get(item.id) or new_failed[item.id])
                    for item in block
                    if item.id in old_failed or item.id in new_failed
                ]
                failed = {item_id for item_id, _ in failures}
                done = [item for item in block if item.id not in failed]
                features = np.empty((len(done) * (count + 1), old.dim), np.float32)
                ids: list[str] = []
                for item in done:
                    data, rows = (old, old_rows) if item.id in kept else (fresh, new_rows)
                    for row_id in image_row_ids(item.id, count):
                        features[len(ids)] = data.features[rows[row_id]]
                        ids.append(row_id)
                labels = np.repeat(np.asarray([item.label for item in done], np.int32), count + 1)
                writer.write_batch(features, labels, ids, failures, start + len(block))
                writer.commit()
    seconds = time.perf_counter() - started
    extraction = {
        "update": {"reused": len(kept), "extracted": len(todo), "dropped": dropped},
        "seconds": round(seconds, 3),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    writer.finalize(out, extraction)
    fresh_path.unlink(missing_ok=True)
    with FeatureCache.open(out) as cache:
        return ExtractResult(out, len(cache), cache.failed, seconds=seconds, fingerprint=print_fp)
