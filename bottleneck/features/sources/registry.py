"""Sources by registry: each kind one module, detected from the spec (or named).

A kind module provides ``detect(spec) -> bool`` and ``open_listing(spec, groups) ->``
:class:`features.sources.items.Listing`; :func:`open_source` asks each kind in
:data:`SOURCE_KINDS` order, then applies what every source takes (class subset, sample,
split). Adding a source kind is its module and one entry in :data:`SOURCE_KINDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.decode import IMAGE_EXTENSIONS
from bottleneck_transfer.features.sources import (
    fashion_mnist,
    folder,
    idx,
    manifest,
    npz,
    webdataset,
)
from bottleneck_transfer.features.sources.items import Source, Split, select, split_source
from bottleneck_transfer.regular import file_kind

#: Kind name -> its module, in detection order (a folder before a file suffix).
SOURCE_KINDS: dict[str, ModuleType] = {
    "fashion-mnist": fashion_mnist,
    "folder": folder,
    "csv": manifest,
    "npz": npz,
    "idx": idx,
    "webdataset": webdataset,
}


def source_kind(spec: str, kind: str | None = None) -> ModuleType:
    """The module of the source kind ``kind``, or of the first kind that detects ``spec``.

    Raises
    ------
    SourceError
        An unknown ``kind``; a spec that does not exist, is not a regular file, or that no
        kind recognises.
    """
    if kind is not None:
        if kind not in SOURCE_KINDS:
            raise SourceError(
                f"unknown source kind; valid: {', '.join(SOURCE_KINDS)}. Received: kind={kind!r}"
            )
        return SOURCE_KINDS[kind]
    for module in SOURCE_KINDS.values():
        if module.detect(spec):
            return module
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if (what := file_kind(path, follow=True)) is not None:
        raise SourceError(f"source {path.absolute()} is {what}, not a file: it is never opened")
    raise SourceError(
        f"cannot tell what {path.absolute()} is: give a folder, a .csv manifest, an IDX or .npz "
        "file, .tar shards, or fashion-mnist:train|test"
    )


def open_source(
    spec: str | Path,
    *,
    classes: str | Sequence[str | int] | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
    kind: str | None = None,
) -> Source:
    """Open an image collection.

    Parameters
    ----------
    spec : str or Path
        A folder, a ``.csv`` manifest, an IDX/``.npz`` file, or ``fashion-mnist:train|test``.
    classes : str or sequence, optional
        Keep only these classes (names, indices or ranges such as ``"5-9"``); labels are
        renumbered from 0 in class order.
    limit : int, optional
        Keep ``limit`` items spread evenly over the collection (quick trials).
    split : Split, optional
        Keep one part of a stratified, seeded train/validation split (after ``classes``
        and ``limit``), e.g. ``Split(0.2, "val")``; it keeps declared groups and exact
        copies (:func:`item_groups`) whole.
    groups : str, optional
        A CSV manifest's column naming each image's group (patient, session): a group is
        never on both sides of any split. An empty cell: the image is its own group.
    kind : str, optional
        The source kind (:data:`SOURCE_KINDS`) instead of detecting it from ``spec``.

    Raises
    ------
    SourceError
        If the source is missing, malformed or holds no images.

    Examples
    --------
    >>> open_source("photos/").class_names  # one subfolder per class
    ['cat', 'coffee', 'rocket']
    >>> len(open_source("fashion-mnist:train", classes="5-9", limit=1000))
    1000
    """
    text = str(spec)
    listing = source_kind(text, kind).open_listing(text, groups)
    if groups is not None and listing.kind != "csv":
        raise SourceError(
            f"--groups names a column of a CSV manifest; {text} is a {listing.kind} source. "
            f"Received: groups={groups!r}"
        )
    options = {"spec": listing.spec, "classes": classes, "limit": limit}
    if groups is not None:
        options["groups"] = groups
    items, names = select(listing.items, listing.names, classes, limit)
    if not items:
        raise SourceError(
            f"no images found in {text}"
            + (
                f" (image extensions: {' '.join(IMAGE_EXTENSIONS)})"
                if listing.arrays is None
                else ""
            )
        )
    source = Source(
        listing.kind, listing.root, names, items, options, listing.arrays, listing.hashes
    )
    return source if split is None else split_source(source, split)


def reopen_source(described: dict) -> Source:
    """Reopen the source a cache was made from, from its provenance ``source`` entry."""
    options = described.get("options") or {}
    spec = options.get("spec") or described.get("root")
    if not spec:
        raise SourceError("the cache's provenance does not say where its source is")
    split = Split(**options["split"]) if options.get("split") else None
    return open_source(
        spec,
        classes=options.get("classes"),
        limit=options.get("limit"),
        split=split,
        groups=options.get("groups"),
    )
