"""A content-addressed store: caches keyed by extraction fingerprint, and what later stages
keep beside them (``bottleneck cache ls|prune``).

The store owns its folder's layout; nothing else in it is the store's::

    <24 hex>.h5              a cache             <24 hex>.h5.partial/   an unfinished extraction
    fits/<32 hex>.json       a fit's metadata    fits/<32 hex>.skops    the fitted head
    fits/<32 hex>.npz        stored predictions  (heads/memo.py writes fits/)
    exports/<32 hex>/        export.json, and model.keras or model/ (pipeline/run.py writes it)
    runtimes/<32 hex>/       a converted graph: model.onnx, conversion.json (features/runners)
    runtimes/probe-<24 hex>.json   what ``--runtime auto`` chose for a base on this machine

Each entry has its manifest (:mod:`bottleneck_transfer.entries`): beside a file entry
(``<24 hex>.h5.manifest.json``, ``fits/<32 hex>.manifest.json`` for a fit's two files,
``fits/<32 hex>.npz.manifest.json``), inside a folder. Listing reads manifests and file
kinds only (a FIFO named like an entry is never opened); reuse checks the hashes too
(:meth:`CacheStore.reusable`); removal goes by the manifest alone
(:func:`~bottleneck_transfer.entries.remove_entry`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bottleneck_transfer.entries import (
    MANIFEST_SUFFIX,
    EntryError,
    EntryManifest,
    manifest_path,
    remove_entry,
    reusable,
)
from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features.cache.partial import (
    CacheBusyError,
    check_partial_folder,
    writer_lock,
)
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.regular import is_regular

#: Environment variable naming the default store folder.
CACHE_DIR_ENV = "BOTTLENECK_CACHE_DIR"
#: The store's folder of memoized fits and their stored predictions.
FITS_FOLDER = "fits"
#: The store's folder of exports (one folder per fit), the summary file in each, and the
#: model beside it by the head kind's export form.
EXPORTS_FOLDER = "exports"
EXPORT_SUMMARY = "export.json"
EXPORT_MODELS = {"keras": "model.keras", "folder": "model"}
#: The store's folder of converted graphs and runtime probes (:mod:`features.runners`).
RUNTIMES_FOLDER = "runtimes"
#: What ``cache ls`` lists, in its order: each kind of thing the store writes.
KINDS = ("cache", "partial", "fit", "predictions", "export", "runtime", "probe")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: How the store names what it writes (and their manifests); nothing else is the store's.
_MANIFEST = re.escape(MANIFEST_SUFFIX)
_STORE_NAME = re.compile(rf"[0-9a-f]{{24}}\.h5(\.partial|{_MANIFEST})?")
_FIT_NAME = re.compile(rf"[0-9a-f]{{32}}(\.json|\.skops|\.npz|{_MANIFEST}|\.npz{_MANIFEST})")
_EXPORT_NAME = re.compile(r"[0-9a-f]{32}")
_RUNTIME_NAME = _EXPORT_NAME
_PROBE_NAME = re.compile(rf"probe-[0-9a-f]{{24}}\.json({_MANIFEST})?")
_LINK = "a symbolic link: not followed"


def default_cache_dir(near: str | Path | None = None) -> Path:
    """``$BOTTLENECK_CACHE_DIR``, else ``caches/`` beside ``near`` (a spec), else ``./caches``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return (Path(near).resolve().parent if near else Path.cwd()) / "caches"


def store_location(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """The store folder and what chose it: ``cache_dir`` (``--cache-dir``), else
    ``$BOTTLENECK_CACHE_DIR``, else ``./caches`` (:func:`default_cache_dir`)."""
    if cache_dir is not None:
        return Path(cache_dir), "--cache-dir"
    if os.environ.get(CACHE_DIR_ENV):
        return default_cache_dir(), f"${CACHE_DIR_ENV}"
    return default_cache_dir(), f"default: caches/ in the working folder; set ${CACHE_DIR_ENV}"


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

    @staticmethod
    def reusable(path: Path) -> bool:
        """Whether the cache at ``path`` is as the store wrote it (sizes and sha256 of its
        manifest); else, when something is there, one
        :class:`~bottleneck_transfer.errors.StoreEntryWarning`: extract it again (``force``)."""
        return reusable(path, "cache")

    @staticmethod
    def seal(path: Path) -> None:
        """Write the manifest of the cache just written at ``path`` (call it holding the
        cache's lock, or right after the extraction that wrote it)."""
        manifest = EntryManifest(manifest_path(path))
        manifest.add(path.name, path)
        manifest.save()

    def entries(self) -> list[dict]:
        """Everything named as the store names it, by kind (:data:`KINDS`), newest first.

        ``kind`` is ``cache``, ``partial`` (an unfinished extraction), ``fit``, ``predictions``,
        ``export``, ``runtime`` (a converted graph) or ``probe`` (a runtime probe).
        ``status`` is ``complete``; ``damaged`` (a file its manifest lists is missing, not a
        regular file or of another size, or a cache does not open);
        ``partial`` (an unfinished extraction's folder); or ``not ours`` (no manifest, a
        symbolic link, or it holds what its manifest does not list); ``note`` says why.
        ``head`` is a fit's head spec, or an export's head and form. Only manifests are
        read to tell (and a complete entry's own details): a FIFO is never opened.
        """
        found = [
            *self._caches(),
            *self._fits(),
            *(("export", p) for p in self._named(EXPORTS_FOLDER, _EXPORT_NAME)),
            *(("runtime", p) for p in self._named(RUNTIMES_FOLDER, _RUNTIME_NAME)),
            *self._probes(),
        ]
        out = []
        for kind, path in found:
            status, note, details = _RECOGNISE[kind](path)
            out.append(
                {
                    "kind": kind,
                    "path": str(path),
                    "size_bytes": _size(path, kind),
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
        self,
        *,
        older_than: float | None = None,
        partial: bool = False,
        dry_run: bool = False,
        only: Sequence[str | Path] | None = None,
    ) -> Pruned:
        """Remove what was not used for ``older_than`` seconds, and/or unfinished extractions,
        and/or the entries named in ``only`` (as ``cache ls`` prints them).

        With ``only``, just those entries are candidates (all of them when no other criterion
        is given); a path that is no entry of this store is kept, saying so.

        Caches, fits, stored predictions and exports go by their last use. Each goes by its
        manifest alone (:func:`~bottleneck_transfer.entries.remove_entry`: all of it or
        nothing); caches, unfinished extractions and exports each while holding their lock:
        one that a running extraction or pipeline holds is kept, and so is anything not the
        store's or holding what its manifest does not list, each with the reason in
        ``kept``. With ``dry_run``, nothing is removed: ``removed`` lists what would be.
        """
        if older_than is None and not partial and only is None:
            raise BottleneckError(
                "say what to prune: --older-than AGE, --partial and/or the entries to remove "
                "(- reads the paths `bottleneck cache ls` prints)"
            )
        now = time.time()
        result = Pruned()
        entries = self.entries()
        named = None if only is None else {os.path.abspath(p) for p in only}
        if named is not None:
            known = {os.path.abspath(e["path"]) for e in entries}
            result.kept += [
                (Path(p), f"not an entry of the store {self.root}") for p in sorted(named - known)
            ]
        for entry in entries:
            kind, path = entry["kind"], Path(entry["path"])
            if named is not None and os.path.abspath(path) not in named:
                continue
            old = older_than is not None and now - _last_use(path, kind) > older_than
            chosen = old or (partial and kind == "partial")
            if not (chosen or (named is not None and older_than is None and not partial)):
                continue
            if entry["status"] == "not ours":
                result.kept.append((path, entry["note"]))
                continue
            try:
                left = _remove(path, kind, dry_run)
            except CacheBusyError:
                result.kept.append((path, _IN_USE[kind]))
            except (CacheError, OSError) as exc:
                result.kept.append((path, str(exc)))
            else:
                if left:
                    result.kept.append((path, _left(left)))
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

    def _probes(self) -> list[tuple[str, Path]]:
        """``("probe", path)`` per runtime probe (also when only its manifest is left); none
        in a linked ``runtimes/`` folder (listed once, as a runtime entry)."""
        if (self.root / RUNTIMES_FOLDER).is_symlink():
            return []
        paths = self._named(RUNTIMES_FOLDER, _PROBE_NAME)
        probes = {p.with_name(p.name.removesuffix(MANIFEST_SUFFIX)) for p in paths}
        return [("probe", p) for p in sorted(probes)]

    def _caches(self) -> list[tuple[str, Path]]:
        """``("cache" | "partial", path)`` per cache name (a manifest whose cache is gone
        is listed as its cache)."""
        paths = {p.with_name(p.name.removesuffix(MANIFEST_SUFFIX)) for p in self._named()}
        return [("partial" if p.name.endswith(".partial") else "cache", p) for p in sorted(paths)]

    def _fits(self) -> list[tuple[str, Path]]:
        """``("fit", path)`` once per fit key (its ``.json``, else its ``.skops``) and
        ``("predictions", path)`` per ``.npz``, each also when only its manifest is left;
        a linked ``fits/`` folder is one fit entry."""
        fits, predictions, linked = set(), set(), []
        for path in self._named(FITS_FOLDER, _FIT_NAME):
            if path.name == FITS_FOLDER:
                linked.append(("fit", path))  # the linked folder itself
                continue
            key, rest = path.name.split(".", 1)
            (predictions if rest.startswith("npz") else fits).add(path.with_name(key))
        return [
            *(("fit", _fit_path(stem)) for stem in sorted(fits)),
            *(("predictions", stem.with_suffix(".npz")) for stem in sorted(predictions)),
            *linked,
        ]


@dataclass
class Pruned:
    """What :meth:`CacheStore.prune` removed (or would remove), and what it kept and why."""

    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def overall(entries: list[dict]) -> dict[str, object]:
    """``{"entries", "size_bytes", "oldest"}`` of :meth:`CacheStore.entries`: ``oldest`` is
    the earliest last use (None for an empty store)."""
    return {
        "entries": len(entries),
        "size_bytes": sum(e["size_bytes"] for e in entries),
        "oldest": min((e["last_used"] for e in entries), default=None),
    }


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
    status, note = _judge(path)
    if status != "complete":
        return status, note, {}
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


def _fit_path(stem: Path) -> Path:
    """A fit's path as listed: its metadata, else its head file (else where its metadata was)."""
    head = stem.with_suffix(".skops")
    return (
        head
        if _exists(head) and not _exists(stem.with_suffix(".json"))
        else stem.with_suffix(".json")
    )


def _fit_manifest(path: Path) -> Path:
    """A fit's manifest (``<key>.manifest.json``), from any of its files."""
    return manifest_path(path.parent / path.name.split(".", 1)[0])


def _recognise_fit(path: Path) -> tuple[str, str, dict]:
    """The status of a memoized fit (its metadata and head file), why, and its head spec."""
    status, note = _judge(path, _fit_manifest(path))
    if status != "complete":
        return status, note, {}
    spec = _json_field(path.with_suffix(".json"), "head")
    if not isinstance(spec, str):
        return "damaged", "its metadata names no head", {}
    return "complete", "", {"head": spec}


def _recognise_predictions(path: Path) -> tuple[str, str, dict]:
    """The status of stored predictions, why, and how many rows they cover."""
    status, note = _judge(path)
    if status != "complete":
        return status, note, {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            return "complete", "", {"rows": len(stored["predictions"])}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return "damaged", f"not readable as stored predictions ({exc})", {}


def _recognise_export(folder: Path) -> tuple[str, str, dict]:
    """The status of an export folder, why, and its head and form (from its summary)."""
    if not folder.is_dir() and not folder.is_symlink():
        return "not ours", "not an export folder", {}
    status, note = _judge(folder)
    if status != "complete":
        return status, note, {}
    head, kind = (_json_field(folder / EXPORT_SUMMARY, key) for key in ("head", "kind"))
    if not isinstance(head, str):
        return "damaged", f"{EXPORT_SUMMARY} is not an export's summary", {}
    return "complete", "", {"head": f"{head} ({kind})"}


def _recognise_runtime(path: Path) -> tuple[str, str, dict]:
    """The status of a converted graph's folder or a runtime probe, and why."""
    if path.name.startswith("probe-") or path.is_dir() or path.is_symlink():
        return (*_judge(path), {})
    return "not ours", "not a converted graph's folder", {}


def _judge(entry: Path, manifest: Path | None = None) -> tuple[str, str]:
    """``(status, note)`` of an entry by its manifest, opening nothing but the manifest:
    ``not ours`` (a link; no manifest; or it holds what its manifest does not list),
    ``damaged`` (a listed file missing, not regular or of another size) or ``complete``."""
    if entry.is_symlink():
        return "not ours", _LINK
    try:
        listed = EntryManifest.load(manifest or manifest_path(entry))
    except EntryError as exc:
        return "not ours", str(exc)
    left = remove_entry(entry, dry_run=True, manifest=listed.path).left
    if left:
        return "not ours", _left(left)
    problems = listed.problems(hashes=False)
    if problems:
        return "damaged", "; ".join(problems[:2])
    return "complete", ""


def _left(left: list[tuple[Path, str]]) -> str:
    """What a removal left and why, in one line."""
    shown = "; ".join(f"{path.name} {why}" for path, why in left[:3])
    return f"left {shown}" + (f" and {len(left) - 3} more" if len(left) > 3 else "")


def _json_field(path: Path, key: str) -> object:
    """``key`` of the JSON object in ``path``; None when it is not one (or not a file)."""
    if not is_regular(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def _remove(path: Path, kind: str, dry_run: bool) -> list[tuple[Path, str]]:
    """Remove one entry by its manifest (see :func:`~bottleneck_transfer.entries.remove_entry`)
    while holding its lock when it has one; what was left, and why."""
    manifest = _fit_manifest(path) if kind == "fit" else None
    if kind in ("cache", "partial", "export"):
        # The pipeline checks, copies and reads an export all while holding this lock, so no
        # run copies from a folder being removed; an extraction holds its cache's.
        with writer_lock(path.with_suffix("") if kind == "partial" else path):
            return remove_entry(path, dry_run=dry_run).left
    return remove_entry(path, dry_run=dry_run, manifest=manifest).left


_RECOGNISE: dict[str, Callable[[Path], tuple[str, str, dict]]] = {
    "cache": _recognise_cache,
    "partial": _recognise_cache,
    "fit": _recognise_fit,
    "predictions": _recognise_predictions,
    "export": _recognise_export,
    "runtime": _recognise_runtime,
    "probe": _recognise_runtime,
}
_IN_USE = {
    "cache": "in use: a running extraction holds its lock",
    "partial": "in use: a running extraction holds its lock",
    "export": "in use: a running pipeline holds its lock",
}


def _exists(path: Path) -> bool:
    """Whether there is anything at ``path`` (a link counts, followed or not)."""
    return path.exists() or path.is_symlink()


def _last_use(path: Path, kind: str) -> float:
    """When a store entry was last used: its newest file's mtime (an export: its summary's;
    an entry of which only the manifest is left: the manifest's)."""
    if kind == "fit":
        files = [path.with_suffix(s) for s in (".json", ".skops")]
        stats = [p.lstat().st_mtime for p in files if _exists(p)]
        if stats:
            return max(stats)
    if kind == "export" and is_regular(path / EXPORT_SUMMARY):
        return (path / EXPORT_SUMMARY).lstat().st_mtime
    if not _exists(path):
        path = _fit_manifest(path) if kind == "fit" else manifest_path(path)
    return path.lstat().st_mtime


def _size(path: Path, kind: str) -> int:
    """Bytes of an entry: a file, a fit's two files, or every file under a folder."""
    if kind == "fit":
        files = [path.with_suffix(s) for s in (".json", ".skops")]
        return sum(p.lstat().st_size for p in files if is_regular(p))
    if path.is_dir() and not path.is_symlink():
        return sum(
            (Path(top) / name).lstat().st_size for top, _, names in os.walk(path) for name in names
        )
    return path.lstat().st_size if _exists(path) else 0
