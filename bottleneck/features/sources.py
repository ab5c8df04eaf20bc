"""Image collections: class-folder trees, flat folders, CSV manifests, IDX and NPZ arrays.

A source is an ordered list of :class:`Item` (id, label, where the pixels are) plus class
names. The order is deterministic (sorted paths, array order) and is the row order of the
cache. ``open_source(spec)`` understands:

* a directory: one subfolder per class (nested files allowed), or a flat unlabeled folder;
* a ``.csv`` manifest with a ``path`` column (relative to the CSV) and optional ``label``;
* an IDX images file (``.gz`` or not), with labels found beside it; an ``.npz`` file with
  ``images``/``x`` and optional ``labels``/``y`` and ``class_names`` arrays;
* ``fashion-mnist:train`` / ``fashion-mnist:test``: the IDX files that
  ``apt-get install dataset-fashion-mnist`` puts in ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from bottleneck_transfer.display import Display, class_rows
from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features.duplicates import content_hash, merge_labels
from bottleneck_transfer.features.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    decode_array,
    decode_file,
)
from bottleneck_transfer.fingerprint import canonical_json, sha256_arrays, sha256_file, sha256_text
from bottleneck_transfer.regular import file_kind

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_FILES = {"train": "train", "test": "t10k"}


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
            content = source.arrays[item.index] if item.path is None else item.path
            hashes.append(None if item.error else content_hash(content))
        except OSError:
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

    _display_bar = ("class", "images")

    def __len__(self) -> int:
        return len(self.items)

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
        if item.error is not None:
            raise ImageError(item.error)
        if item.path is not None:
            return decode_file(item.path, size, channels, max_pixels=max_pixels)
        assert self.arrays is not None and item.index is not None
        return decode_array(self.arrays[item.index], size, channels)

    def manifest(self) -> dict[str, list] | None:
        """Per-item id, size and mtime (file sources), and ``group`` when a manifest declares
        groups; ``None`` for array sources."""
        if self.arrays is not None:
            return None
        sizes, mtimes = [], []
        for item in self.items:
            try:
                stat = os.stat(item.path)  # type: ignore[arg-type]
                sizes.append(stat.st_size)
                mtimes.append(stat.st_mtime_ns)
            except OSError:
                sizes.append(-1)
                mtimes.append(-1)
        manifest = {"ids": [item.id for item in self.items], "size": sizes, "mtime_ns": mtimes}
        if self.options.get("groups"):
            manifest["group"] = [item.group or "" for item in self.items]
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
            rows = zip(*columns, strict=True)
            content = {"manifest_sha256": sha256_text(canonical_json(list(rows)))}
        return {
            "kind": self.kind,
            "n_items": len(self.items),
            "class_names": self.class_names,
            **content,
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


def _select(
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


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk_images(folder: Path, root: Path, label: int) -> list[Item]:
    """Every image under ``folder``, sorted; a folder that cannot be listed is a failed item."""
    found = []

    def unreadable(exc: OSError) -> None:
        path = Path(exc.filename or folder)
        rel = path.relative_to(root).as_posix() + "/"
        reason = f"cannot list this folder ({exc.strerror or exc}); its images are not read"
        found.append(Item(rel, label, path, error=reason))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if _is_image(name):
                path = Path(dirpath) / name
                found.append(_file_item(path.relative_to(root).as_posix(), label, path))
    return sorted(found, key=lambda item: item.id)


def _file_item(item_id: str, label: int, path: Path, *, group: str | None = None) -> Item:
    """An image file to read; a FIFO, socket or device is a failed item, never opened."""
    what = file_kind(path, follow=True)
    error = None if what in (None, "missing") else f"{what}, not an image file: not opened"
    return Item(item_id, label, path, error=error, group=group)


def _folder_source(root: Path) -> tuple[str, list[Item], list[str]]:
    """A flat folder (unlabeled) or one subfolder per class; a mix of both is refused."""
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot list the source folder {root}: {exc.strerror or exc}") from exc
    subdirs = [p for p in entries if p.is_dir()]
    top = [p.name for p in entries if not p.is_dir() and _is_image(p.name)]
    classes = [(d, _walk_images(d, root, label)) for label, d in enumerate(subdirs)]
    if top and any(item.error is None for _, found in classes for item in found):
        shown = ", ".join(top[:3]) + (f" (+{len(top) - 3})" if len(top) > 3 else "")
        folders = ", ".join(d.name for d, found in classes if found)
        raise SourceError(
            f"{root} holds images at its top level ({shown}) and image subfolders ({folders}): "
            "move the top-level images into a class folder (or the subfolders out), or list "
            "the images in a CSV manifest (path,label)"
        )
    if top:  # subfolders without images (e.g. the one `-o` writes caches to) are no classes
        return "folder", _walk_images(root, root, -1), []
    items = [item for _, found in classes for item in found]
    return "class-folders", items, [d.name for d in subdirs]


def _csv_source(path: Path, groups: str | None = None) -> tuple[list[Item], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            numbered = [(reader.line_num, row) for row in reader]  # line of each row's end
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"cannot read manifest {path}: {exc}") from exc
    if columns and "path" not in columns:
        raise SourceError(
            f"manifest {path} has no 'path' column (columns: {', '.join(columns)}); "
            "the header must be 'path,label' (label optional)"
        )
    if groups is not None and groups not in columns:
        raise SourceError(
            f"manifest {path} has no {groups!r} column for --groups (columns: "
            f"{', '.join(columns)}); name the column that holds each image's group"
        )
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for _, row in numbered]
    # An empty label and -1 (the cache's own mark) both mean unlabeled.
    values = sorted({r["label"] for r in rows if r.get("label") not in (None, "", "-1")})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {name: i for i, name in enumerate(values)}
    listed = [(line, r) for (line, _), r in zip(numbered, rows, strict=True) if r["path"]]
    _refuse_duplicates(
        path, [(line, os.path.normpath(path.parent / r["path"])) for line, r in listed]
    )
    items = [
        _file_item(
            r["path"],
            index.get(r.get("label", ""), -1),
            path.parent / r["path"],
            group=(r.get(groups) or None) if groups else None,
        )
        for _, r in listed
    ]
    return items, values


def _refuse_duplicates(manifest: Path, paths: list[tuple[int, str]]) -> None:
    """Refuse a manifest listing one file twice (it would be two rows of one image)."""
    lines: dict[str, list[int]] = {}
    for line, where in paths:
        lines.setdefault(where, []).append(line)
    twice = {where: found for where, found in lines.items() if len(found) > 1}
    if twice:
        shown = "; ".join(
            f"{Path(where).name} on lines {', '.join(map(str, found))}"
            for where, found in list(twice.items())[:3]
        )
        more = f" (+{len(twice) - 3} more)" if len(twice) > 3 else ""
        raise SourceError(
            f"manifest {manifest} lists {len(twice)} file(s) more than once: {shown}{more}; "
            "keep one line per image"
        )


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


def _idx_labels_path(images: Path) -> Path | None:
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    candidate = images.with_name(name)
    return candidate if name != images.name and candidate.exists() else None


def _array_source(
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


def open_source(
    spec: str | Path,
    *,
    classes: str | Sequence[str | int] | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
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
    options = {"spec": text, "classes": classes, "limit": limit}
    if groups is not None:
        options["groups"] = groups
    arrays = None
    hashes: dict[str, str] = {}
    if text.startswith("fashion-mnist:"):
        fashion_part = text.split(":", 1)[1]
        if fashion_part not in _FASHION_FILES:
            raise SourceError(
                f"unknown Fashion-MNIST split {fashion_part!r}; use fashion-mnist:train|test"
            )
        folder = Path(os.environ.get("BOTTLENECK_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
        images_path = folder / f"{_FASHION_FILES[fashion_part]}-images-idx3-ubyte.gz"
        labels_path = folder / f"{_FASHION_FILES[fashion_part]}-labels-idx1-ubyte.gz"
        if not (images_path.exists() and labels_path.exists()):
            raise SourceError(
                f"Fashion-MNIST not found at {folder}: install it with "
                "`apt-get install dataset-fashion-mnist` or set BOTTLENECK_FASHION_MNIST_DIR"
            )
        hashes = {
            "images_sha256": sha256_file(images_path),
            "labels_sha256": sha256_file(labels_path),
        }
        kind, root = "fashion-mnist", str(folder)
        items, names, arrays = _array_source(
            kind, text, read_idx(images_path), read_idx(labels_path), FASHION_MNIST_CLASSES, hashes
        )
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise SourceError(f"source not found: {path}")
        root = str(path.resolve())
        options["spec"] = root
        path = path.absolute()  # item paths must not depend on the working directory
        if path.is_dir():
            kind, items, names = _folder_source(path)
        elif (what := file_kind(path, follow=True)) is not None:
            raise SourceError(f"source {path} is {what}, not a file: it is never opened")
        elif path.suffix.lower() == ".csv":
            kind = "csv"
            items, names = _csv_source(path, groups)
        elif path.suffix.lower() == ".npz":
            kind = "npz"
            items, names, arrays, hashes = _npz_source(path)
        elif "idx" in path.name or path.suffix.lower() in (".idx", ".gz", ".ubyte"):
            kind = "idx"
            labels_path = _idx_labels_path(path)
            labels = read_idx(labels_path) if labels_path else None
            hashes = {"images_sha256": sha256_file(path)}
            if labels_path:
                hashes["labels_sha256"] = sha256_file(labels_path)
            items, names, arrays = _array_source(kind, text, read_idx(path), labels, [], hashes)
        else:
            raise SourceError(
                f"cannot tell what {path} is: give a folder, a .csv manifest, an IDX or .npz "
                "file, or fashion-mnist:train|test"
            )
    if groups is not None and kind != "csv":
        raise SourceError(
            f"--groups names a column of a CSV manifest; {text} is a {kind} source. Received: "
            f"groups={groups!r}"
        )
    items, names = _select(items, names, classes, limit)
    if not items:
        raise SourceError(
            f"no images found in {text}"
            + (f" (image extensions: {' '.join(IMAGE_EXTENSIONS)})" if arrays is None else "")
        )
    source = Source(kind, root, names, items, options, arrays, hashes)
    return source if split is None else split_source(source, split)


def _npz_source(path: Path) -> tuple[list[Item], list[str], np.ndarray, dict[str, str]]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with loaded as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(f"cannot read {path} as a NumPy .npz without pickle: {exc}") from exc
    images = next((contents[k] for k in ("images", "x", "X") if k in contents), None)
    if images is None:
        raise SourceError(
            f"{path} has no 'images' (or 'x') array; found: {', '.join(contents) or 'nothing'}"
        )
    labels = next((contents[k] for k in ("labels", "y") if k in contents), None)
    names = [str(n) for n in contents.get("class_names", [])]
    hashes = {"npz_sha256": sha256_file(path)}
    items, names, arrays = _array_source("npz", str(path), images, labels, names, hashes)
    return items, names, arrays, hashes


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
    where = described.get("images_sha256") or described.get("root")
    return f"{described.get('kind')}:{where}" if where else ""


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
