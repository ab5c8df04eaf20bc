"""A content-addressed store: caches keyed by extraction fingerprint, and what later stages
keep beside them (``bottleneck cache ls|prune``).

The store owns its folder's layout; nothing else in it is the store's::

    <24 hex>.h5              a cache             <24 hex>.h5.partial/   an unfinished extraction
    fits/<32 hex>.json       a fit's metadata    fits/<32 hex>.skops    the fitted head
    fits/<32 hex>.npz        stored predictions  (heads/memo.py writes fits/)
    exports/<32 hex>/        export.json, and model.keras or model/ (pipeline/run.py writes it)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features.cache import (
    FORMAT,
    CacheBusyError,
    FeatureCache,
    check_partial_folder,
    discard_partial,
    writer_lock,
)

#: Environment variable naming the default store folder.
CACHE_DIR_ENV = "BOTTLENECK_CACHE_DIR"
#: The store's folder of memoized fits and their stored predictions.
FITS_FOLDER = "fits"
#: The store's folder of exports (one folder per fit), the summary file in each, and the
#: model beside it by the head kind's export form.
EXPORTS_FOLDER = "exports"
EXPORT_SUMMARY = "export.json"
EXPORT_MODELS = {"keras": "model.keras", "folder": "model"}
#: What ``cache ls`` lists, in its order: each kind of thing the store writes.
KINDS = ("cache", "partial", "fit", "predictions", "export")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: How the store names what it writes; nothing else in its folders is the store's.
_STORE_NAME = re.compile(r"[0-9a-f]{24}\.h5(\.partial)?")
_FIT_NAME = re.compile(r"[0-9a-f]{32}\.(json|skops|npz)")
_EXPORT_NAME = re.compile(r"[0-9a-f]{32}")
#: What an export folder holds: its summary, and the model with what export writes beside it
#: (``model.labels.txt``).
_EXPORT_ENTRY = re.compile(rf"{re.escape(EXPORT_SUMMARY)}|{EXPORT_MODELS['folder']}(\.[a-z]+)*")
_LINK = "a symbolic link: not followed"


def default_cache_dir(near: str | Path | None = None) -> Path:
    """``$BOTTLENECK_CACHE_DIR``, else ``caches/`` beside ``near`` (a spec), else ``./caches``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return (Path(near).resolve().parent if near else Path.cwd()) / "caches"


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"2w"``, ``"90m"`` or ``"45s"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise BottleneckError(
            f"invalid age {text!r}: use a number and a unit s, m, h, d or w, e.g. 30d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


class CacheStore:
    """Caches named by fingerprint in one folder, with the fits and exports made from them.

    Reusing a cache, fit, stored predictions or export touches it (its last use).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, fingerprint: str) -> Path:
        """Where the cache with this fingerprint lives (whether or not it exists yet)."""
        digest = fingerprint.split(":", 1)[-1]
        return self.root / f"{digest[:24]}.h5"

    @staticmethod
    def touch(path: Path) -> None:
        """Record a use of ``path`` (``cache prune --older-than`` goes by last use)."""
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: nothing to record
            os.utime(path)

    def entries(self) -> list[dict]:
        """Everything named as the store names it, by kind (:data:`KINDS`), newest first.

        ``kind`` is ``cache``, ``partial`` (an unfinished extraction), ``fit``, ``predictions``
        or ``export``. ``status`` is ``complete``; ``damaged`` (a cache header, but it does
        not open; a fit's metadata without its head); ``partial`` (a folder with the writer's
        marker); ``incomplete`` (a head without its metadata, an export without its summary:
        being written, or half removed); or ``not ours`` (a store name on something this
        package did not write, or a symbolic link); ``note`` says why. ``head`` is a fit's
        head spec, or an export's head and form.
        """
        found = [
            *(("partial" if p.name.endswith(".partial") else "cache", p) for p in self._named()),
            *self._fits(),
            *(("export", p) for p in self._named(EXPORTS_FOLDER, _EXPORT_NAME)),
        ]
        out = []
        for kind, path in found:
            status, note, details = _RECOGNISE[kind](path)
            out.append(
                {
                    "kind": kind,
                    "path": str(path),
                    "size_bytes": path.lstat().st_size
                    if status == "not ours"
                    else _size(path, kind),
                    "last_used": dt.datetime.fromtimestamp(_last_use(path, kind)).isoformat(
                        timespec="seconds"
                    ),
                    "status": status,
                    "note": note,
                    "base": None,
                    "source": None,
                    "rows": None,
                    "head": None,
                    **details,
                }
            )
        out.sort(key=lambda e: e["last_used"], reverse=True)
        return sorted(out, key=lambda e: KINDS.index(e["kind"]))

    def prune(
        self, *, older_than: float | None = None, partial: bool = False, dry_run: bool = False
    ) -> Pruned:
        """Remove what was not used for ``older_than`` seconds, and/or unfinished extractions.

        Caches, fits, stored predictions and exports go by their last use. Only what the
        store wrote goes (see :meth:`entries`); caches, unfinished extractions and exports
        each while holding their lock: one that a running extraction or pipeline holds is
        kept, and so is anything not recognised. With ``dry_run``, nothing is removed:
        ``removed`` lists what would be.
        """
        if older_than is None and not partial:
            raise BottleneckError("say what to prune: --older-than AGE and/or --partial")
        now = time.time()
        result = Pruned()
        for entry in self.entries():
            kind, path = entry["kind"], Path(entry["path"])
            old = older_than is not None and now - _last_use(path, kind) > older_than
            if not (old or (partial and kind == "partial")):
                continue
            if entry["status"] == "not ours":
                result.kept.append((path, entry["note"]))
                continue
            try:
                _REMOVE[kind](path, dry_run)
            except CacheBusyError:
                result.kept.append((path, _IN_USE[kind]))
            except (CacheError, OSError) as exc:
                result.kept.append((path, str(exc)))
            else:
                result.removed.append(path)
        return result

    def _named(self, folder: str | None = None, name: re.Pattern = _STORE_NAME) -> list[Path]:
        """Paths in the store (or its ``folder``) named by ``name``, sorted.

        A linked sub-folder is not read: it is listed itself (as not ours).
        """
        where = self.root if folder is None else self.root / folder
        if folder is not None and where.is_symlink():
            return [where]
        return (
            sorted(p for p in where.iterdir() if name.fullmatch(p.name)) if where.is_dir() else []
        )

    def _fits(self) -> list[tuple[str, Path]]:
        """``("fit", path)`` once per fit key (its ``.json``, else its ``.skops``) and
        ``("predictions", path)`` per ``.npz``; a linked ``fits/`` folder is one fit entry."""
        fits: dict[Path, Path] = {}
        out = []
        for path in self._named(FITS_FOLDER, _FIT_NAME):
            if path.suffix == ".npz":
                out.append(("predictions", path))
            elif path.suffix in (".json", ".skops"):
                fits.setdefault(path.with_suffix(""), path)  # .json sorts before .skops
            else:
                out.append(("fit", path))  # the linked folder itself
        return [*(("fit", path) for path in fits.values()), *out]


@dataclass
class Pruned:
    """What :meth:`CacheStore.prune` removed (or would remove), and what it kept and why."""

    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def totals(entries: list[dict]) -> dict[str, dict[str, int]]:
    """``{kind: {"count", "size_bytes"}}`` of :meth:`CacheStore.entries`, in :data:`KINDS` order."""
    out = {kind: {"count": 0, "size_bytes": 0} for kind in KINDS}
    for entry in entries:
        out[entry["kind"]]["count"] += 1
        out[entry["kind"]]["size_bytes"] += entry["size_bytes"]
    return {kind: total for kind, total in out.items() if total["count"]}


def _recognise_cache(path: Path) -> tuple[str, str, dict]:
    """The status of a store-named cache or partial folder, why, and what its cache holds."""
    if path.is_symlink():
        return "not ours", _LINK, {}
    if path.name.endswith(".partial"):
        try:
            check_partial_folder(path)
        except CacheError as exc:
            return "not ours", str(exc), {}
        return "partial", "an unfinished extraction", {}
    if not path.is_file() or not _has_cache_header(path):
        return "not ours", "not a bottleneck cache", {}
    try:
        with FeatureCache.open(path) as cache:
            base = cache.provenance.get("base", {})
            source = cache.provenance.get("source", {})
            return (
                "complete",
                "",
                {
                    "base": f"{base.get('application') or base.get('file')} "
                    f"({base.get('weights')})",
                    "source": (source.get("options") or {}).get("spec") or source.get("root"),
                    "rows": len(cache),
                },
            )
    except CacheError as exc:
        return "damaged", str(exc), {}


def _fit_files(path: Path) -> list[Path]:
    """A fit's files in the order they are removed: the metadata first (see ``_remove_fit``)."""
    return [path.with_suffix(".json"), path.with_suffix(".skops")]


def _recognise_fit(path: Path) -> tuple[str, str, dict]:
    """The status of a memoized fit (its metadata and head file), why, and its head spec."""
    meta, head = (p if p.exists() or p.is_symlink() else None for p in _fit_files(path))
    if any(p is not None and p.is_symlink() for p in (path, meta, head)):
        return "not ours", _LINK, {}
    spec = None
    if meta is not None:
        spec = _json_field(meta, "head")
        if not isinstance(spec, str):
            return "not ours", "not a fit's metadata", {}
    if head is not None and not (head.is_file() and zipfile.is_zipfile(head)):
        return "not ours", "not a head file", {}
    if head is None:
        return "damaged", "metadata without its head file: reusing the fit would fail", {}
    if meta is None:
        return "incomplete", "a head file without its metadata: being written, or half removed", {}
    return "complete", "", {"head": spec}


def _recognise_predictions(path: Path) -> tuple[str, str, dict]:
    """The status of stored predictions, why, and how many rows they cover."""
    if path.is_symlink():
        return "not ours", _LINK, {}
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as stored:
                if "meta" in stored.files:
                    return "complete", "", {"rows": len(stored["predictions"])}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    return "not ours", "not stored predictions", {}


def _recognise_export(folder: Path) -> tuple[str, str, dict]:
    """The status of an export folder, why, and its head and form (from its summary)."""
    if folder.is_symlink():
        return "not ours", _LINK, {}
    if not folder.is_dir():
        return "not ours", "not an export folder", {}
    names = {p.name: p for p in folder.iterdir()}
    foreign = sorted(name for name in names if not _EXPORT_ENTRY.fullmatch(name))
    if foreign:
        return "not ours", f"holds what an export does not: {', '.join(foreign)}", {}
    if any(p.is_symlink() for p in names.values()):
        return "not ours", f"holds {_LINK}", {}
    if EXPORT_SUMMARY not in names:
        return "incomplete", f"an export without its {EXPORT_SUMMARY}: half removed", {}
    head, kind = (_json_field(names[EXPORT_SUMMARY], key) for key in ("head", "kind"))
    if not isinstance(head, str):
        return "not ours", f"{EXPORT_SUMMARY} is not an export's summary", {}
    return "complete", "", {"head": f"{head} ({kind})"}


def _json_field(path: Path, key: str) -> object:
    """``key`` of the JSON object in ``path``; None when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def _remove_cache(path: Path, dry_run: bool) -> None:
    with writer_lock(path):
        if not dry_run:
            path.unlink()


def _remove_partial(path: Path, dry_run: bool) -> None:
    with writer_lock(path.with_suffix("")):
        if not dry_run:
            discard_partial(path)


def _remove_fit(path: Path, dry_run: bool) -> None:
    # The metadata goes first: the memo takes a key with metadata to have its head (it writes
    # the metadata last), so a half-removed fit is never taken for a stored one.
    if not dry_run:
        for file in _fit_files(path):
            file.unlink(missing_ok=True)


def _remove_predictions(path: Path, dry_run: bool) -> None:
    if not dry_run:
        path.unlink(missing_ok=True)


def _remove_export(folder: Path, dry_run: bool) -> None:
    # The pipeline checks for the summary, copies the export and reads the summary all while
    # holding this lock, so no run copies from a folder being removed. The summary goes first:
    # a run without the lock (an older version) sees no summary and rebuilds the export.
    with writer_lock(folder):
        status, note, _ = _recognise_export(folder)  # as listed, now that no run writes it
        if status == "not ours":
            raise CacheError(note)
        if dry_run:
            return
        for entry in sorted(folder.iterdir(), key=lambda p: p.name != EXPORT_SUMMARY):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        folder.rmdir()


_RECOGNISE: dict[str, Callable[[Path], tuple[str, str, dict]]] = {
    "cache": _recognise_cache,
    "partial": _recognise_cache,
    "fit": _recognise_fit,
    "predictions": _recognise_predictions,
    "export": _recognise_export,
}
_REMOVE: dict[str, Callable[[Path, bool], None]] = {
    "cache": _remove_cache,
    "partial": _remove_partial,
    "fit": _remove_fit,
    "predictions": _remove_predictions,
    "export": _remove_export,
}
_IN_USE = {
    "cache": "in use: a running extraction holds its lock",
    "partial": "in use: a running extraction holds its lock",
    "export": "in use: a running pipeline holds its lock",
}


def _last_use(path: Path, kind: str) -> float:
    """When a store entry was last used: its newest file's mtime (an export: its summary's)."""
    if path.is_symlink():
        return path.lstat().st_mtime
    if kind == "fit":
        stats = [p.lstat().st_mtime for p in _fit_files(path) if p.exists() or p.is_symlink()]
        return max(stats, default=path.lstat().st_mtime)
    if kind == "export" and (path / EXPORT_SUMMARY).exists():
        return (path / EXPORT_SUMMARY).lstat().st_mtime
    return path.lstat().st_mtime


def _has_cache_header(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file with this package's ``format`` attribute."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def _size(path: Path, kind: str) -> int:
    """Bytes of an entry: a file, a fit's two files, or every file under a folder."""
    if kind == "fit":
        return sum(p.stat().st_size for p in _fit_files(path) if p.is_file())
    if path.is_dir():
        return sum(
            (Path(top) / name).lstat().st_size for top, _, names in os.walk(path) for name in names
        )
    return path.stat().st_size
