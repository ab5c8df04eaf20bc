"""Sources by registry: each kind one module, detected from the spec (or named).

A kind module provides ``detect(spec) -> bool`` and ``open_listing(spec, columns) ->``
:class:`features.sources.items.Listing`, and lists in ``COLUMNS`` the
:class:`~features.sources.items.Columns` it reads (none when it has no ``COLUMNS``);
:func:`open_source` asks each kind in :data:`SOURCE_KINDS` order, then applies what every
source takes (class subset, sample, split). Adding a source kind is its module and one entry
in :data:`SOURCE_KINDS`. Specs may be fsspec URLs (``s3://``, ``memory://``: the kinds that
read files take them); ``file://`` URLs are local paths.
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
    jsonl,
    manifest,
    npz,
    table,
    text,
    webdataset,
)
from bottleneck_transfer.features.sources.items import (
    Columns,
    Listing,
    Source,
    Split,
    select,
    split_source,
)
from bottleneck_transfer.features.sources.reading import local_spec, url_filesystem
from bottleneck_transfer.regular import file_kind

#: Kind name -> its module, in detection order (a folder before a file suffix).
SOURCE_KINDS: dict[str, ModuleType] = {
    "fashion-mnist": fashion_mnist,
    "text": text,
    "table": table,
    "folder": folder,
    "csv": manifest,
    "jsonl": jsonl,
    "npz": npz,
    "idx": idx,
    "webdataset": webdataset,
}


def kind_module(spec: str, kind: str | None = None) -> ModuleType:
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
                f"unknown source kind; valid: {', '.join(SOURCE_KINDS)}. Received: source={kind!r}"
            )
        return SOURCE_KINDS[kind]
    for module in SOURCE_KINDS.values():
        if module.detect(spec):
            return module
    if url_filesystem(spec) is not None:
        raise SourceError(
            f"nothing at {spec} is a source: give a folder, a .csv or .jsonl manifest, .tar "
            "shards or a .parquet/.arrow table (or name the kind with --source: "
            f"{', '.join(SOURCE_KINDS)})"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if (what := file_kind(path, follow=True)) is not None:
        raise SourceError(f"source {path.absolute()} is {what}, not a file: it is never opened")
    raise SourceError(
        f"cannot tell what {path.absolute()} is: give a folder, a .csv or .jsonl manifest, an "
        "IDX or .npz file, .tar shards, a .parquet/.arrow table, or fashion-mnist:train|test "
        f"(or name the kind with --source: {', '.join(SOURCE_KINDS)})"
    )


def open_source(
    spec: str | Path,
    *,
    classes: str | Sequence[str | int] | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
    source_kind: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    target: str | None = None,
    text_column: str | None = None,
) -> Source:
    """Open an image or text collection.

    Parameters
    ----------
    spec : str or Path
        A folder, a ``.csv`` manifest, an IDX/``.npz`` file, ``.tar`` shards, a Parquet or
        Arrow table (or a folder of them), or ``fashion-mnist:train|test``; folders,
        manifests, shards and tables may be fsspec URLs (``s3://``, ``gs://``, ``http://``,
        ``memory://``; ``file://`` is a local path).
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
    source_kind : str, optional
        The source kind (:data:`SOURCE_KINDS`) instead of detecting it from ``spec``.
    image_column, label_column : str, optional
        A table's image and label columns (default ``image`` and ``label``).
    target : str, optional
        A manifest's target: ``class``, ``binary``, ``multilabel`` or ``regression``, with
        ``:column=NAME,positive=VALUE,unit=TEXT,empty=true`` (:mod:`..targets`); default:
        inferred from the ``label`` column (a class target unless unambiguous).
    text_column : str, optional
        A text table's column of texts (default ``text``; naming it makes the source a
        text source, :mod:`.text`).

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
    text = local_spec(str(spec))
    columns = Columns(groups, image_column, label_column, target=target, text=text_column)
    module = kind_module(text, source_kind or ("text" if text_column is not None else None))
    _check_columns(text, module, columns)
    listing = module.open_listing(text, columns)
    options = {"spec": listing.spec, "classes": classes, "limit": limit}
    options |= _reopening(columns, source_kind)
    items, names = select(listing.items, listing.names, classes, limit)
    if not items:
        raise _no_images(text, listing)
    source = Source(
        listing.kind,
        listing.root,
        names,
        items,
        options,
        listing.arrays,
        listing.hashes,
        listing.reader,
        listing.target,
    )
    return source if split is None else split_source(source, split)


def _no_images(spec: str, listing: Listing) -> SourceError:
    """The error of a source that holds no items (image files: the extensions looked for)."""
    files = listing.arrays is None and listing.kind != "text"
    extensions = f" (image extensions: {' '.join(IMAGE_EXTENSIONS)})" if files else ""
    return SourceError(
        f"no {'texts' if listing.kind == 'text' else 'images'} found in {spec}{extensions}"
    )


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
        source_kind=options.get("kind"),
        image_column=(options.get("columns") or {}).get("image"),
        label_column=(options.get("columns") or {}).get("label"),
        target=options.get("target"),
        text_column=(options.get("columns") or {}).get("text"),
    )


def _reopening(columns: Columns, kind: str | None) -> dict:
    """What else :func:`reopen_source` needs: the columns and the kind, when given."""
    options: dict = {}
    if columns.groups is not None:
        options["groups"] = columns.groups
    if columns.target is not None:
        options["target"] = columns.target
    if kind is not None:
        options["kind"] = kind
    if columns.given().keys() - {"groups"}:
        options["columns"] = {"image": columns.image, "label": columns.label}
        if columns.text is not None:
            options["columns"]["text"] = columns.text
    return options


#: Each column option's flag, for errors.
_COLUMN_FLAGS = {
    "groups": "--groups",
    "image": "--image-column",
    "label": "--label-column",
    "target": "--target",
    "text": "--text-column",
}


def _check_columns(spec: str, module: ModuleType, columns: Columns) -> None:
    """Refuse a column option the source's kind does not read."""
    reads = getattr(module, "COLUMNS", ())
    for name, value in columns.given().items():
        if name not in reads:
            what = {"groups": "a CSV manifest", "target": "a CSV manifest", "text": "a text table"}
            what = what.get(name, "a Parquet/Arrow table")
            kind = next(k for k, m in SOURCE_KINDS.items() if m is module)
            raise SourceError(
                f"{_COLUMN_FLAGS[name]} names a column of {what}; {spec} is a {kind} "
                f"source. Received: {_COLUMN_FLAGS[name].lstrip('-').replace('-', '_')}={value!r}"
            )
