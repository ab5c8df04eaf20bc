"""What every source kind yields: :class:`Item` (an id, a label, where the pixels are) in a
:class:`Source` (ordered items and class names), and what applies to any source: class
subsets and samples (:func:`select`), stratified splits that keep groups and copies whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from bottleneck_transfer.display import Display, class_rows
from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features.decode import (
    DEFAULT_MAX_PIXELS,
    decode_array,
    decode_file,
)
from bottleneck_transfer.features.duplicates import content_hash, merge_labels
from bottleneck_transfer.features.sources.reading import Reader, file_stat
from bottleneck_transfer.features.targets import VALUE_KINDS, Target
from bottleneck_transfer.fingerprint import canonical_json, sha256_arrays, sha256_text
from bottleneck_transfer.regular import file_kind


@dataclass(frozen=True)
class Split:
    """One part of a stratified, seeded train/validation split of a labelled source.

    ``fraction`` of each class's items (at least one, at most all but one) go to the
    ``"val"`` part, chosen by ``seed``; the rest are the ``"train"`` part. Both parts keep
    the source's order, and the split is recorded in the source's provenance.
    """

    fraction: float
    part: str = "train"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise SourceError(
                "the validation share must be between 0 and 1 (exclusive). "
                f"Received: val_split={self.fraction}"
            )
        if self.part not in SPLIT_PARTS:
            raise ValueError(f"part must be one of {SPLIT_PARTS}. Received: part={self.part!r}")


#: The two parts of a :class:`Split`.
SPLIT_PARTS = ("train", "val")


def group_units(
    labels: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's unit and each unit's label: the units a grouped split chooses.

    A unit is one group (rows sharing a ``groups`` label: copies of one picture, one patient),
    numbered in order of its first row; its label is its rows' most common label (the
    smallest on ties). Without ``groups`` every row is its own unit.
    """
    labels = np.asarray(labels)
    if groups is None:
        return np.arange(len(labels)), labels
    _, first, unit = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    unit = rank[unit.reshape(-1)]
    classes, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(first), len(classes)), dtype=np.int64)
    np.add.at(counts, (unit, label_index.reshape(-1)), 1)
    return unit, classes[counts.argmax(axis=1)]


def holdout_mask(
    labels: np.ndarray, fraction: float, seed: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """Stratified, seeded choice of ``fraction`` of the rows of each class: True = held out.

    Every class keeps at least one row on each side. With ``groups`` the choice is of groups
    (:func:`group_units`), each held out or kept whole; rows that share no group split as
    without. Raises SourceError for unlabelled rows (-1) or a class with a single row.
    """
    labels = np.asarray(labels)
    if (labels < 0).any():
        raise SourceError(
            f"a validation split needs labelled images; {int((labels < 0).sum())} are unlabelled"
        )
    if groups is not None:
        unit, unit_labels = group_units(labels, groups)
        return holdout_mask(unit_labels, fraction, seed)[unit]
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < 2:
            raise SourceError(
                f"a validation split needs at least 2 images per class; class {int(label)} has 1"
            )
        n_held = min(max(round(len(rows) * fraction), 1), len(rows) - 1)
        held[rng.permutation(rows)[:n_held]] = True
    return held


def item_hashes(source: Source) -> list[str | None]:
    """Each item's :func:`~bottleneck_transfer.features.duplicates.content_hash` (None for
    an item that cannot be read: extraction records it as failed)."""
    hashes: list[str | None] = []
    for item in source.items:
        try:
            hashes.append(None if item.error else content_hash(source.content(item)))
        except (OSError, ImageError):
            hashes.append(None)
    return hashes


def item_groups(source: Source) -> np.ndarray | None:
    """Each item's group label for splits: declared groups and exact copies (equal
    :func:`item_hashes`) joined; None if no two items are tied."""
    return merge_labels(item_hashes(source), [item.group for item in source.items])


def split_source(source: Source, split: Split) -> Source:
    """The ``split.part`` of ``source`` (see :class:`Split`), declared groups and exact
    copies kept whole (:func:`item_groups`)."""
    labels = np.asarray([item.label for item in source.items])
    held = holdout_mask(labels, split.fraction, split.seed, item_groups(source))
    keep = held if split.part == "val" else ~held
    return replace(
        source,
        items=[item for item, kept in zip(source.items, keep, strict=True) if kept],
        options={
            **source.options,
            "split": {"fraction": split.fraction, "part": split.part, "seed": split.seed},
        },
    )


@dataclass(frozen=True)
class Item:
    """One image of a source: its id, class index (-1 if unlabeled) and location."""

    id: str
    label: int
    path: Path | None = None
    index: int | None = None
    #: Why the item cannot be read, known when the source is listed (an unreadable folder).
    error: str | None = None
    #: The group a manifest declares for it (``--groups``: patient, session), if any.
    group: str | None = None
    #: Where its bytes are inside the file at ``path``: a tar member's ``(offset, size)``,
    #: a table row's ``(row group or record batch, row in it)``.
    member: tuple[int, int] | None = None
    #: Its multi-label tags (``a|b``) or regression value, as text (:mod:`..targets`).
    target: str | None = None
    #: What the item holds: ``image`` or ``text`` (its UTF-8 bytes; :mod:`.text`).
    modality: str = "image"


@dataclass(repr=False)
class Source(Display):
    """An ordered image collection. Build with :func:`open_source`.

    Examples
    --------
    >>> source = open_source("fashion-mnist:test", classes="5-9", limit=100)
    >>> len(source), source.class_names[0], source.items[0].id
    (100, 'Sandal', 'array:0')
    """

    kind: str
    root: str
    class_names: list[str]
    items: list[Item]
    options: dict = field(default_factory=dict)
    arrays: np.ndarray | None = None
    array_hashes: dict[str, str] = field(default_factory=dict)
    #: Reads items that are not local image files (tar members, table rows, URLs).
    reader: Reader | None = None
    #: A binary, multi-label or regression target (None: a class target).
    target: Target | None = None

    _display_bar = ("class", "images")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modality(self) -> str:
        """``image`` or ``text``: what every item of the source holds."""
        return self.items[0].modality if self.items else "image"

    @property
    def units(self) -> tuple[str, str]:
        """What its items are called: in messages (``images``/``texts``) and on a progress
        bar (``img``/``text``)."""
        return ("images", "img") if self.modality == "image" else ("texts", "text")

    def _display_summary(self) -> dict[str, object]:
        return {"kind": self.kind, "root": self.root, "images": len(self)}

    def _display_rows(self) -> list[dict[str, object]]:
        """One row per class: its index, name and number of images (then unlabeled ones)."""
        return class_rows([item.label for item in self.items], self.class_names, "images")

    def load(
        self,
        item: Item,
        size: tuple[int, int],
        channels: int = 3,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> np.ndarray:
        """Decode one item to uint8 ``(height, width, channels)``; raises ImageError."""
        content = self.content(item)
        if isinstance(content, np.ndarray):
            return decode_array(content, size, channels)
        return decode_file(content, size, channels, max_pixels=max_pixels)

    def content(self, item: Item) -> bytes | Path | np.ndarray:
        """The item's image: its bytes (through :attr:`reader`), its local file, or its
        array; raises ImageError."""
        if item.error is not None:
            raise ImageError(item.error)
        if self.reader is not None:
            return self.reader.read(item)
        if item.path is not None:
            return item.path
        assert self.arrays is not None and item.index is not None
        return self.arrays[item.index]

    def manifest(self) -> dict[str, list] | None:
        """Per-item id, size and mtime (file sources), and ``group`` when a manifest declares
        groups; ``None`` for array sources."""
        if self.arrays is not None:
            return None
        stat = self.reader.stat if self.reader is not None else partial(file_stat, None)
        sizes, mtimes = [], []
        for item in self.items:
            size, mtime = stat(item.path)  # type: ignore[arg-type]
            sizes.append(size)
            mtimes.append(mtime)
        manifest = {"ids": [item.id for item in self.items], "size": sizes, "mtime_ns": mtimes}
        if self.options.get("groups"):
            manifest["group"] = [item.group or "" for item in self.items]
        if self.target is not None and self.target.kind in VALUE_KINDS:
            manifest["target"] = [item.target or "" for item in self.items]
        return manifest

    def identity(self, manifest: dict[str, list] | None = None) -> dict:
        """What about this source determines the features (not where it lives)."""
        labels = [item.label for item in self.items]
        if self.arrays is not None:
            content = dict(self.array_hashes)
            content["selection"] = sha256_arrays(
                [np.asarray([i.index for i in self.items], np.int64), np.asarray(labels, np.int64)]
            )
        else:
            manifest = manifest if manifest is not None else self.manifest()
            assert manifest is not None
            columns = [manifest["ids"], manifest["size"], manifest["mtime_ns"], labels]
            if "group" in manifest:  # declared groups enter the fingerprint; none: as before
                columns.append(manifest["group"])
            if "target" in manifest:  # so do multi-label and regression targets
                columns.append(manifest["target"])
            rows = zip(*columns, strict=True)
            content = {"manifest_sha256": sha256_text(canonical_json(list(rows)))}
        target = {} if self.target is None else {"target": self.target.to_dict()}
        return {
            "kind": self.kind,
            "n_items": len(self.items),
            "class_names": self.class_names,
            **content,
            **target,
        }

    def describe(self, manifest: dict[str, list] | None = None) -> dict:
        """Provenance: the identity plus the root and the options needed to reopen it."""
        return {**self.identity(manifest), "root": self.root, "options": self.options}


def _parse_classes(classes: str | Sequence[str | int] | None, names: list[str]) -> list[int]:
    """Resolve a class subset (names, indices, or ``"5-9"`` ranges) to sorted indices."""
    if classes is None:
        return list(range(len(names)))
    tokens: list[str | int] = (
        [t.strip() for t in classes.split(",") if t.strip()]
        if isinstance(classes, str)
        else list(classes)
    )
    chosen: set[int] = set()
    for token in tokens:
        text = str(token)
        if text in names:
            chosen.add(names.index(text))
        elif text.isdigit() and int(text) < len(names):
            chosen.add(int(text))
        elif "-" in text and all(p.strip().isdigit() for p in text.split("-", 1)):
            low, high = (int(p) for p in text.split("-", 1))
            if not (0 <= low <= high < len(names)):
                raise SourceError(f"class range {text!r} is outside 0-{len(names) - 1}")
            chosen.update(range(low, high + 1))
        else:
            raise SourceError(
                f"unknown class {text!r} in --classes. Received: classes={classes!r}; "
                f"valid: {names} or indices 0-{len(names) - 1}"
            )
    if not chosen:
        raise SourceError(f"--classes selects no class. Received: classes={classes!r}")
    return sorted(chosen)


def select(
    items: list[Item], names: list[str], classes, limit: int | None
) -> tuple[list[Item], list[str]]:
    """Apply a class subset (labels renumbered from 0) and an evenly spread ``limit``."""
    if classes is not None:
        keep = _parse_classes(classes, names)
        remap = {old: new for new, old in enumerate(keep)}
        items = [replace(i, label=remap[i.label]) for i in items if i.label in remap]
        names = [names[k] for k in keep]
    if limit is not None:
        if limit <= 0:
            raise SourceError(f"--limit must be positive. Received: limit={limit}")
        if limit < len(items):
            picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
            items = [items[k] for k in picks]
    return items, names


def file_item(
    item_id: str, label: int, path: Path, *, group: str | None = None, target: str | None = None
) -> Item:
    """An image file to read; a FIFO, socket or device is a failed item, never opened."""
    what = file_kind(path, follow=True)
    error = None if what in (None, "missing") else f"{what}, not an image file: not opened"
    return Item(item_id, label, path, error=error, group=group, target=target)


def id_origin(described: dict) -> str:
    """What a cache's ids name images in, from its provenance ``source`` entry.

    Two caches with the same origin and the same id hold the same image: array sources
    index one image array (its hash), file sources name paths under one resolved root. An
    empty string when the provenance does not say.

    Examples
    --------
    >>> id_origin({"kind": "fashion-mnist", "images_sha256": "sha256:b056"})
    'fashion-mnist:sha256:b056'
    >>> id_origin({"kind": "folder", "root": "/data/photos"})
    'folder:/data/photos'
    """
    where = described.get("images_sha256") or described.get("texts_sha256") or described.get("root")
    return f"{described.get('kind')}:{where}" if where else ""


@dataclass(frozen=True)
class Columns:
    """Which column of a manifest or table holds what (None: the kind's default).

    ``groups``: a CSV manifest's column of each image's group (``--groups``); ``image`` and
    ``label``: a table's image and label columns (``--image-column``, ``--label-column``;
    default ``image`` and ``label``); ``text``: a text table's column of texts
    (``--text-column``, default ``text``). A kind reads only the columns its module lists
    in ``COLUMNS``.
    """

    groups: str | None = None
    image: str | None = None
    label: str | None = None
    target: str | None = None
    text: str | None = None

    def given(self) -> dict[str, str]:
        """The columns named, by option name (``groups``, ``image``, ``label``, ``text``)."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class Listing:
    """What a source kind finds at a spec, before class subsets and samples.

    ``spec`` is what reopens it (a resolved path for files); ``arrays`` the images of an
    array source (items index into it) and ``hashes`` their content hashes.
    """

    kind: str
    root: str
    spec: str
    items: list[Item]
    names: list[str]
    arrays: np.ndarray | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    reader: Reader | None = None
    target: Target | None = None


def local_path(spec: str) -> tuple[Path, str]:
    """``spec`` as an absolute path (item paths must not depend on the working directory)
    and its resolved root."""
    path = Path(spec).expanduser()
    return path.absolute(), str(path.resolve())


def is_regular_file(spec: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Whether ``spec`` is an existing regular file (never a FIFO, socket or device), with
    one of ``suffixes`` when given."""
    path = Path(spec).expanduser()
    if not path.exists() or path.is_dir() or file_kind(path, follow=True) is not None:
        return False
    return not suffixes or path.suffix.lower() in suffixes
