"""The sample every candidate base extracts, and the full extraction that reuses it.

The sample is stratified by class, grouped like every split (exact copies and the groups a
manifest declares stay whole: :func:`~bottleneck_transfer.features.sources.item_groups`) and
seeded; it is drawn by :func:`~bottleneck_transfer.heads.splits.stratified_subset`, the draw
learning curves use. Each candidate extracts only the sample, into the store by fingerprint;
the winner's extraction of the whole collection starts from its sample cache and extracts
only the other images (:func:`extract_full`, the ``--update`` path).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.bases import Base
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.loop import ExtractResult, cache_identity
from bottleneck_transfer.features.sources import Source, item_groups
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.heads.splits import stratified_subset

_SIZE = re.compile(r"\s*(\d+)\s*(/\s*class)?\s*")


@dataclass(frozen=True)
class SampleSize:
    """How many images to sample: ``count`` per class, or ``count`` in all.

    Examples
    --------
    >>> SampleSize.parse("50/class").per_class_count(10)
    50
    >>> SampleSize.parse("2000").per_class_count(10)
    200
    """

    count: int
    per_class: bool = True

    @classmethod
    def parse(cls, text: str | int) -> SampleSize:
        """``"50/class"`` (per class) or ``"2000"`` (in all, spread over the classes).

        Raises
        ------
        SourceError
            For anything else, or a count below 1.
        """
        match = _SIZE.fullmatch(str(text))
        if not match or int(match.group(1)) < 1:
            raise SourceError(
                "the sample size is N/class (N images of each class) or N (N images in all), "
                f"N >= 1, e.g. 50/class or 2000. Received: sample={text!r}"
            )
        return cls(int(match.group(1)), match.group(2) is not None)

    def per_class_count(self, n_classes: int) -> int:
        """Images per class on average (a total is shared equally, at least 1 each)."""
        return self.count if self.per_class else max(1, round(self.count / n_classes))

    def __str__(self) -> str:
        return f"{self.count}/class" if self.per_class else str(self.count)


def sample_source(source: Source, size: SampleSize, seed: int = 0) -> Source:
    """The sample of ``source``: stratified, grouped and seeded, in the source's order.

    Each class keeps its share of the collection (``size.per_class_count`` per class on
    average, at least one group, at most all); a group (copies of one picture, a declared
    group) is taken whole or not at all. The sample is recorded in the source's options.

    Raises
    ------
    SourceError
        If an image is unlabelled (ranking needs labels).
    """
    labels = np.asarray([item.label for item in source.items], dtype=np.int64)
    if (labels < 0).any():
        raise SourceError(
            f"ranking bases needs labelled images; {int((labels < 0).sum())} of "
            f"{source.root} are unlabelled: give a class-folder tree or a manifest with labels"
        )
    rows = stratified_subset(
        labels,
        np.arange(len(labels)),
        size.per_class_count(len(source.class_names)),
        np.random.default_rng(seed),
        linked=item_groups(source),
    )
    return replace(
        source,
        items=[source.items[r] for r in rows],
        options={**source.options, "sample": {"size": str(size), "seed": seed}},
    )


def store_extract(store: CacheStore, source: Source, base: Base, **options: Any) -> ExtractResult:
    """Extract ``source`` with ``base`` into ``store``, keyed by the cache's fingerprint; a
    cache already there intact is reused, a tampered one extracted again."""
    identity = cache_identity(
        base, source, source.manifest(), options.get("store_dtype", "float32")
    )
    path = store.path_for(fingerprint(identity))
    intact = store.reusable(path)
    result = extract(source, base, path, force=path.exists() and not intact, **options)
    if not (intact and result.up_to_date):
        store.seal(path)
    store.touch(path)
    return result


def extract_full(
    source: Source, base: Base, out: str | Path, sample_cache: str | Path, **options: Any
) -> ExtractResult:
    """Extract the whole ``source`` with ``base`` into ``out``, reusing the sample's rows.

    When ``out`` does not exist it starts as a copy of ``sample_cache`` (one atomic write);
    the ``--update`` path then extracts only the images outside the sample and merges the
    rows in source order, so the result equals a fresh extraction. ``options`` are
    :func:`~bottleneck_transfer.features.extract.extract`'s.
    """
    out = Path(out)
    if not out.exists():
        seed_cache(sample_cache, out)
    return extract(source, base, out, update=True, **options)


def seed_cache(sample_cache: str | Path, out: str | Path) -> Path:
    """Copy ``sample_cache`` to ``out`` (one atomic write): the cache an ``--update``
    extraction of the whole collection into ``out`` completes."""
    with atomic_path(out) as tmp:
        shutil.copyfile(sample_cache, tmp)
    return Path(out)
