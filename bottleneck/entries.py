"""What the package keeps names its own files: a manifest per entry, checked and removed by it.

Every entry the package keeps and later reuses or removes (a cache in a store, an unfinished
extraction, a fitted head, stored predictions, an export folder) has a manifest: the regular
files it consists of, each with its size and sha256, and the folders it created. The
manifest is written entry by entry as each file is written (:meth:`EntryManifest.writing`),
or for a folder written whole in a private temporary, before it is moved into place
(:func:`seal_folder`). It lives inside a folder entry (:data:`MANIFEST_NAME`) and beside a
file entry (``<name>`` + :data:`MANIFEST_SUFFIX`).

Reuse checks it (:meth:`EntryManifest.problems`): an entry whose files are missing, not
regular, or of another size or hash is not used. :func:`remove_entry` is the one deletion of
the package's own entries: it unlinks the regular files its manifest lists (never through a
symbolic link), the temporaries an interrupted atomic write left of them, then the emptied
folders it created, and reports everything else it left, and why.

Reading, checking and removing live in :mod:`~bottleneck_transfer.manifests` (below
:mod:`~bottleneck_transfer.atomic`, which seals and clears folders with them); this module
adds what writes through :mod:`~bottleneck_transfer.atomic`: saving a manifest and recording
each file as it is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bottleneck_transfer.atomic import atomic_path, atomic_write_text
from bottleneck_transfer.errors import StoreEntryWarning
from bottleneck_transfer.manifests import (
    MANIFEST_NAME,
    MANIFEST_SUFFIX,
    EntryError,
    Manifest,
    Removal,
    checked,
    manifest_path,
    remove_entry,
    remove_temporaries,
    seal_folder,
    unlink_listed,
)

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_SUFFIX",
    "EntryError",
    "EntryManifest",
    "Removal",
    "checked",
    "manifest_path",
    "remove_entry",
    "remove_temporaries",
    "reusable",
    "seal_folder",
]


class EntryManifest(Manifest):
    """A :class:`~bottleneck_transfer.manifests.Manifest` that saves itself atomically and
    records each file of its entry as it is written (:meth:`writing`)."""

    def discard(self, names: list[str]) -> Removal:
        """Remove the listed files ``names`` (as :func:`remove_entry` would) and unlist them."""
        result = Removal()

        def unlink(path: Path) -> None:
            path.unlink()
            result.removed.append(path)

        for name in names:
            unlink_listed(self, name, unlink, result)
            if not result.left or result.left[-1][0] != self.root / name:
                self.files.pop(name, None)
        self.save()
        return result

    def save(self) -> None:
        """Write the manifest atomically."""
        atomic_write_text(self.path, self.dump())

    @contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """Write ``name`` (under :attr:`root`) atomically, recorded here before it appears.

        Yields the temporary path to write (see :func:`~bottleneck_transfer.atomic.atomic_path`).
        A new name is saved as pending first (a kill leaves a temporary that is known), the
        size and hash before the rename: no file of the entry is ever unlisted.
        """
        if name not in self.files and name not in self.pending:
            self.pending.append(name)
            self.save()
        with atomic_path(self.root / name) as tmp:
            yield tmp
            self.add(name, tmp)
            self.save()


def reusable(entry: Path, what: str, *, manifest: Path | None = None) -> bool:
    """Whether a stored ``entry`` can be used as written (its files' sizes and hashes).

    Nothing stored (neither ``entry`` nor its manifest): False, silently. Anything but an
    intact entry: one :class:`~bottleneck_transfer.errors.StoreEntryWarning` naming what is
    wrong, and False: the caller computes it again and rewrites it, never uses it.
    """
    manifest = manifest or manifest_path(entry)
    if not any(p.exists() or p.is_symlink() for p in (entry, manifest)):
        return False
    problems = checked(entry, manifest=manifest)
    if problems:
        warnings.warn(
            f"stored {what} {entry} is not used ({problems[0]}): computing it again",
            StoreEntryWarning,
            stacklevel=3,
        )
    return not problems
