"""Entry manifests: reading, checking and removing by them. This is the part of
:mod:`~bottleneck_transfer.entries` that writes nothing atomically, so that
:mod:`~bottleneck_transfer.atomic` (which seals a folder it writes and clears one it replaces
with these) and :mod:`~bottleneck_transfer.entries` (which saves manifests through
:mod:`~bottleneck_transfer.atomic`) both import it: imports go one way.

A manifest lists an entry's regular files, each with its size and sha256, and the folders it
created (:class:`Manifest`); it lives inside a folder entry (:data:`MANIFEST_NAME`) and beside a
file entry (``<name>`` + :data:`MANIFEST_SUFFIX`). :func:`remove_entry` is the one deletion of
the package's own entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.regular import file_kind

#: Suffix of the hidden temporary folders (``.<name>.<random>.tmp``) that
#: :func:`~bottleneck_transfer.atomic.atomic_path` makes beside a final path.
TEMP_SUFFIX = ".tmp"
#: The manifest inside a folder entry.
MANIFEST_NAME = "bottleneck-manifest.json"
#: The manifest beside a file entry: ``<name>.manifest.json``.
MANIFEST_SUFFIX = ".manifest.json"
FORMAT = "bottleneck-manifest"
#: A manifest is small JSON: anything bigger is not one (and is never read whole).
_MAX_MANIFEST_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class EntryError(BottleneckError):
    """A store entry without a readable manifest: not positively the package's own."""


@dataclass
class Removal:
    """What :func:`remove_entry` removed (or would), and what it left and why."""

    removed: list[Path] = field(default_factory=list)
    left: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class Manifest:
    """The files and folders of one entry, by path relative to the manifest's folder (read,
    checked and recorded here; :class:`~bottleneck_transfer.entries.EntryManifest` saves it).

    Parameters
    ----------
    path : Path
        The manifest file.
    files : dict
        ``name -> {"size": int, "sha256": hex}``; names are relative POSIX paths.
    folders : list of str
        Folders the entry created, relative like ``files`` (removed when emptied).
    pending : list of str
        Files being written (:meth:`writing`): an interrupted write's temporary of one of
        them is the package's own.
    """

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The folder the names are relative to."""
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest; :class:`EntryError` saying why it is not one."""
        path = Path(path)
        kind = file_kind(path)
        if kind is not None:
            raise EntryError(f"no manifest ({path.name} is {kind}): not written by bottleneck")
        if path.lstat().st_size > _MAX_MANIFEST_BYTES:
            raise EntryError(f"{path.name} is too big to be a manifest")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files, folders, pending = data["files"], data["folders"], data.get("pending", [])
            if data.get("format") != FORMAT or not isinstance(files, dict):
                raise TypeError(data.get("format"))
            for name, info in files.items():
                _check_name(name)
                if not (
                    isinstance(info["size"], int)
                    and info["size"] >= 0
                    and _SHA256.fullmatch(info["sha256"])
                ):
                    raise TypeError(name)
            for name in [*folders, *pending]:
                _check_name(name)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EntryError(f"{path.name} is not a bottleneck manifest ({exc})") from None
        return cls(path, dict(files), list(folders), list(pending))

    def add(self, name: str, written: Path) -> None:
        """Record ``written`` (a file, or a folder tree the package just wrote) as ``name``.

        Raises
        ------
        EntryError
            If the tree holds a symbolic link or anything but regular files and folders.
        """
        _check_name(name)
        if name in self.pending:
            self.pending.remove(name)
        kind = file_kind(written)
        if kind is None:
            self.files[name] = _describe(written)
            return
        if kind != "a folder":
            raise EntryError(f"{written} is {kind}: bottleneck writes regular files only")
        self.folders = sorted({*self.folders, name})
        for top, folders, files in os.walk(written):
            relative = PurePosixPath(name, Path(top).relative_to(written).as_posix())
            for folder in folders:
                if file_kind(Path(top, folder)) != "a folder":
                    raise EntryError(f"{Path(top, folder)} is a symbolic link: not recorded")
                self.folders = sorted({*self.folders, str(relative / folder)})
            for file in files:
                if (kind := file_kind(Path(top, file))) is not None:
                    raise EntryError(f"{Path(top, file)} is {kind}: not recorded")
                self.files[str(relative / file)] = _describe(Path(top, file))

    def dump(self) -> str:
        """The manifest as JSON text."""
        data = {
            "format": FORMAT,
            "files": self.files,
            "folders": self.folders,
            "pending": self.pending,
        }
        return json.dumps(data, indent=1, sort_keys=True)

    def problems(self, names: list[str] | None = None, *, hashes: bool = True) -> list[str]:
        """Why the entry (or its files ``names``) cannot be used as written; [] when intact."""
        out = []
        for name in self.files if names is None else names:
            reason = self._problem(name, hashes)
            if reason is not None:
                out.append(f"{name} {reason}")
        return out

    def _problem(self, name: str, hashes: bool) -> str | None:
        info = self.files.get(name)
        if info is None:
            return "is not in the manifest"
        path, reason = _inside(self.root, name)
        if reason is not None:
            return reason
        kind = file_kind(path)
        if kind is not None:
            return "is missing" if kind == "missing" else f"is {kind}"
        if path.lstat().st_size != info["size"]:
            return f"has {path.lstat().st_size} bytes, not {info['size']}"
        if hashes and _sha256(path) != info["sha256"]:
            return "changed since it was written (sha256 differs)"
        return None


def manifest_path(entry: Path) -> Path:
    """Where ``entry``'s manifest is: inside a folder (a real one), beside anything else."""
    if file_kind(entry) == "a folder":
        return entry / MANIFEST_NAME
    return entry.with_name(entry.name + MANIFEST_SUFFIX)


def seal_folder(folder: Path) -> Manifest:
    """Write the manifest of a folder the package has just written whole, inside it.

    Call it on the private temporary of :func:`~bottleneck_transfer.atomic.atomic_path`,
    before the folder is moved into place: everything in it is the package's own.
    """
    manifest = Manifest(folder / MANIFEST_NAME)
    for item in sorted(folder.iterdir()):
        if item.name != MANIFEST_NAME:
            manifest.add(item.name, item)
    manifest.path.write_text(manifest.dump(), encoding="utf-8")  # the folder is renamed whole
    return manifest


def checked(entry: Path, *, manifest: Path | None = None) -> list[str]:
    """Why ``entry`` must not be reused (no manifest, files changed); [] when intact."""
    try:
        return Manifest.load(manifest or manifest_path(entry)).problems()
    except EntryError as exc:
        return [str(exc)]


def remove_entry(entry: Path, *, dry_run: bool = False, manifest: Path | None = None) -> Removal:
    """Remove an entry by its own manifest; the one deletion of what the package keeps.

    Unlinks the regular files the manifest lists (never through a symbolic link), the
    temporaries an interrupted atomic write left of them (a folder ``.<name>.<x>.tmp``
    holding at most a regular file ``<name>``), the folders it lists once empty, the
    manifest, and a folder entry's own folder once empty. Anything else stays, listed in
    :attr:`Removal.left` with the reason; nothing is removed when there is no manifest
    (unless the folder holds nothing, or only a temporary of its first manifest).
    Locks are never listed, so a held lock is never touched; callers hold the entry's lock.
    All or nothing: when anything would be left, nothing is removed (``manifest``: the
    manifest's path when it is not :func:`manifest_path` of ``entry``).
    """
    planned = _remove(entry, manifest or manifest_path(entry), dry_run=True)
    if planned.left:
        return Removal([], planned.left)
    return planned if dry_run else _remove(entry, manifest or manifest_path(entry), dry_run=False)


def _remove(entry: Path, path: Path, *, dry_run: bool) -> Removal:
    result = Removal()
    try:
        manifest = Manifest.load(path)
    except EntryError as exc:
        if not _being_marked(path):
            result.left.append((entry, str(exc)))
            return result
        manifest = Manifest(path)
    gone: set[Path] = set()

    def unlink(path: Path) -> None:
        if not dry_run:
            path.unlink()
        gone.add(path)
        result.removed.append(path)

    def rmdir_if_empty(folder: Path) -> None:
        if file_kind(folder) != "a folder":
            return
        rest = sorted(p for p in folder.iterdir() if p not in gone)
        for path in rest:
            if not any(path == left for left, _ in result.left):
                result.left.append((path, "not in the manifest: not written by bottleneck"))
        if rest:
            return
        if not dry_run:
            folder.rmdir()
        gone.add(folder)

    for name in sorted(manifest.files):
        unlink_listed(manifest, name, unlink, result)
    for name in [*manifest.files, *manifest.pending, manifest.path.name]:
        _remove_temporaries(manifest.root / name, unlink, rmdir_if_empty, result)
    for name in sorted(manifest.folders, key=lambda n: -len(PurePosixPath(n).parts)):
        path, reason = _inside(manifest.root, name)
        if reason is None:
            rmdir_if_empty(path)
    if file_kind(manifest.path) is None:
        unlink(manifest.path)
    if manifest.path.name == MANIFEST_NAME:
        rmdir_if_empty(manifest.root)
    return result


def _being_marked(path: Path) -> bool:
    """Whether a folder entry was stopped before its first manifest appeared: the folder
    holds nothing, or only temporaries of that manifest."""
    folder = path.parent
    if path.name != MANIFEST_NAME or file_kind(path) != "missing":
        return False
    if file_kind(folder) != "a folder":
        return False
    return set(folder.iterdir()) <= set(_temporaries(path))


def unlink_listed(
    manifest: Manifest, name: str, unlink: Callable[[Path], None], result: Removal
) -> None:
    """Unlink the listed file ``name`` when it is a regular file reached through no link."""
    path, reason = _inside(manifest.root, name)
    kind = file_kind(path) if reason is None else None
    if kind == "missing":
        return
    if reason is None and kind is not None:
        reason = f"is {kind}: not the regular file bottleneck wrote"
    if reason is None:
        unlink(path)
    else:
        result.left.append((path, reason))


def remove_temporaries(final: Path) -> Removal:
    """Remove what an interrupted atomic write of ``final`` left: a folder ``.<name>.<x>.tmp``
    beside it holding at most a regular file ``<name>`` (anything else named so stays)."""
    result = Removal()

    def unlink(path: Path) -> None:
        path.unlink()
        result.removed.append(path)

    def rmdir_if_empty(folder: Path) -> None:
        if not any(folder.iterdir()):
            folder.rmdir()

    _remove_temporaries(final, unlink, rmdir_if_empty, result)
    return result


def _remove_temporaries(
    final: Path,
    unlink: Callable[[Path], None],
    rmdir_if_empty: Callable[[Path], None],
    result: Removal,
) -> None:
    for holder in _temporaries(final):
        inside = sorted(holder.iterdir()) if file_kind(holder) == "a folder" else None
        if inside is None or any(p.name != final.name or file_kind(p) for p in inside):
            result.left.append((holder, f"named like a temporary of {final.name}, but not one"))
            continue
        for path in inside:
            unlink(path)
        rmdir_if_empty(holder)


def _temporaries(final: Path) -> list[Path]:
    """What atomic.py names a temporary of ``final``: ``.<name>.<x>.tmp`` beside it."""
    if file_kind(final.parent) != "a folder":
        return []
    pattern = re.compile(rf"\.{re.escape(final.name)}\.\w+{re.escape(TEMP_SUFFIX)}")
    return sorted(p for p in final.parent.iterdir() if pattern.fullmatch(p.name))


def _inside(root: Path, name: str) -> tuple[Path, str | None]:
    """``root / name``, and why it must not be touched: a folder on the way is not a real one."""
    path = root
    parts = PurePosixPath(name).parts
    for part in parts[:-1]:
        path = path / part
        if file_kind(path) not in ("a folder", "missing"):
            return root / name, f"passes through {path}, which is {file_kind(path)}"
    return root / name, None


def _check_name(name: object) -> None:
    """Refuse a listed name that could leave the entry's folder."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or PurePosixPath(name).is_absolute() or {"", ".", ".."} & set(parts):
        raise TypeError(f"not a relative name: {name!r}")


def _describe(path: Path) -> dict[str, Any]:
    return {"size": path.lstat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    """The hex sha256 of a regular file, opened without following a link, never blocking."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
