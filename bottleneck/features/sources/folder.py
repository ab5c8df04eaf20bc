"""Folder sources: one subfolder per class (nested files allowed), or a flat unlabeled folder;
local, or behind an fsspec URL (listed once, files read through it)."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.decode import (
    IMAGE_EXTENSIONS,
)
from bottleneck_transfer.features.sources.items import Columns, Item, Listing, file_item, local_path
from bottleneck_transfer.features.sources.reading import FileBytes, url_filesystem, url_of


def _is_image(name: str, suffixes: tuple[str, ...] = IMAGE_EXTENSIONS) -> bool:
    return name.lower().endswith(suffixes) and not name.startswith(".")


def _walk_images(
    folder: Path, root: Path, label: int, suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
) -> list[Item]:
    """Every file under ``folder`` with one of ``suffixes`` (images), sorted; a folder that
    cannot be listed is a failed item."""
    found = []

    def unreadable(exc: OSError) -> None:
        path = Path(exc.filename or folder)
        rel = path.relative_to(root).as_posix() + "/"
        reason = f"cannot list this folder ({exc.strerror or exc}); its images are not read"
        found.append(Item(rel, label, path, error=reason))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if _is_image(name, suffixes):
                path = Path(dirpath) / name
                found.append(file_item(path.relative_to(root).as_posix(), label, path))
    return sorted(found, key=lambda item: item.id)


def folder_items(
    root: Path, suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
) -> tuple[str, list[Item], list[str]]:
    """A flat folder (unlabeled) or one subfolder per class of files with one of
    ``suffixes`` (images; the text kind's ``.txt``); a mix of both is refused."""
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot list the source folder {root}: {exc.strerror or exc}") from exc
    subdirs = [p for p in entries if p.is_dir()]
    top = [p.name for p in entries if not p.is_dir() and _is_image(p.name, suffixes)]
    classes = [(d, _walk_images(d, root, label, suffixes)) for label, d in enumerate(subdirs)]
    if top and any(item.error is None for _, found in classes for item in found):
        shown = ", ".join(top[:3]) + (f" (+{len(top) - 3})" if len(top) > 3 else "")
        folders = ", ".join(d.name for d, found in classes if found)
        raise SourceError(
            f"{root} holds images at its top level ({shown}) and image subfolders ({folders}): "
            "move the top-level images into a class folder (or the subfolders out), or list "
            "the images in a CSV manifest (path,label)"
        )
    if top:  # subfolders without images (e.g. the one `-o` writes caches to) are no classes
        return "folder", _walk_images(root, root, -1, suffixes), []
    items = [item for _, found in classes for item in found]
    return "class-folders", items, [d.name for d in subdirs]


def _remote_folder(fs: Any, root: str) -> tuple[str, list[Item], list[str]]:
    """:func:`folder_items` for a folder on an fsspec file system: one listing of it."""
    root = root.rstrip("/")
    files = sorted(str(p) for p in fs.find(root))
    relative = [posixpath.relpath(p, root) for p in files]
    relative = [r for r in relative if not any(part.startswith(".") for part in r.split("/"))]
    images = [r for r in relative if _is_image(posixpath.basename(r))]
    entries = fs.ls(root, detail=True)
    subdirs = sorted(
        posixpath.basename(str(e["name"]).rstrip("/"))
        for e in entries
        if e["type"] == "directory" and not posixpath.basename(str(e["name"])).startswith(".")
    )
    top = [r for r in images if "/" not in r]
    if top:
        if len(top) < len(images):
            raise SourceError(
                f"{url_of(fs, root)} holds images at its top level and in subfolders: move "
                "the top-level images into a class folder (or the subfolders out)"
            )
        return "folder", [Item(r, -1, Path(root, r)) for r in top], []
    label = {name: k for k, name in enumerate(subdirs)}
    items = [Item(r, label[r.split("/", 1)[0]], Path(root, r)) for r in images]
    return "class-folders", sorted(items, key=lambda i: (i.label, i.id)), subdirs


def detect(spec: str) -> bool:
    """A folder (local, or behind an fsspec URL)."""
    remote = url_filesystem(spec)
    if remote is not None:
        fs, path = remote
        return bool(fs.isdir(path))
    return Path(spec).expanduser().is_dir()


def open_listing(spec: str, columns: Columns) -> Listing:
    """The images of the folder ``spec`` (kind ``class-folders`` or ``folder``)."""
    remote = url_filesystem(spec)
    if remote is not None:
        fs, path = remote
        kind, items, names = _remote_folder(fs, path)
        return Listing(kind, spec, spec, items, names, reader=FileBytes(fs))
    path, root = local_path(spec)
    kind, items, names = folder_items(path)
    return Listing(kind, root, root, items, names)
