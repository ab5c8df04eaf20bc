"""A content-addressed store of caches, keyed by extraction fingerprint (``bottleneck cache``)."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
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
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: How the store names what it writes: 24 hex digits of the fingerprint, ``.h5`` or
#: ``.h5.partial``. Nothing else in the folder is the store's.
_STORE_NAME = re.compile(r"[0-9a-f]{24}\.h5(\.partial)?")


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
    """Caches named by fingerprint in one folder; reuse touches a cache (its last use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, fingerprint: str) -> Path:
        """Where the cache with this fingerprint lives (whether or not it exists yet)."""
        digest = fingerprint.split(":", 1)[-1]
        return self.root / f"{digest[:24]}.h5"

    def touch(self, path: Path) -> None:
        """Record a use of ``path`` (``cache prune --older-than`` goes by last use)."""
        if path.exists():
            os.utime(path)

    def entries(self) -> list[dict]:
        """Every cache and unfinished extraction named as the store names them, newest first.

        ``status`` is ``complete``, ``damaged`` (a cache header, but it does not open),
        ``partial`` (a folder with the writer's marker), or ``not ours`` (a store name on
        something this package did not write); ``note`` says why.
        """
        out = []
        paths = self.root.iterdir() if self.root.is_dir() else []
        for path in sorted(p for p in paths if _STORE_NAME.fullmatch(p.name)):
            stat = path.lstat()
            status, note, details = _recognise(path)
            out.append(
                {
                    "path": str(path),
                    "size_bytes": _size(path) if status != "not ours" else stat.st_size,
                    "last_used": dt.datetime.fromtimestamp(stat.st_mtime).isoformat(
                        timespec="seconds"
                    ),
                    "status": status,
                    "note": note,
                    "base": None,
                    "source": None,
                    "rows": None,
                    **details,
                }
            )
        return sorted(out, key=lambda e: e["last_used"], reverse=True)

    def prune(
        self, *, older_than: float | None = None, partial: bool = False, dry_run: bool = False
    ) -> Pruned:
        """Remove caches unused for ``older_than`` seconds, and/or unfinished extractions.

        Only what the store wrote goes (see :meth:`entries`), each while holding its lock:
        one that a running extraction holds is kept, and so is anything not recognised.
        With ``dry_run``, nothing is removed: ``removed`` lists what would be.
        """
        if older_than is None and not partial:
            raise BottleneckError("say what to prune: --older-than AGE and/or --partial")
        now = time.time()
        result = Pruned()
        for entry in self.entries():
            path = Path(entry["path"])
            is_partial = path.name.endswith(".partial")
            old = older_than is not None and now - path.lstat().st_mtime > older_than
            if not (old or (partial and is_partial)):
                continue
            if entry["status"] == "not ours":
                result.kept.append((path, entry["note"]))
                continue
            try:
                with writer_lock(path.with_suffix("") if is_partial else path):
                    if not dry_run:
                        _remove(path)
            except CacheBusyError:
                result.kept.append((path, "in use: a running extraction holds its lock"))
            except CacheError as exc:
                result.kept.append((path, str(exc)))
            else:
                result.removed.append(path)
        return result


@dataclass
class Pruned:
    """What :meth:`CacheStore.prune` removed (or would remove), and what it kept and why."""

    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def _recognise(path: Path) -> tuple[str, str, dict]:
    """The status of a store-named path, why, and what its cache holds."""
    if path.is_symlink():
        return "not ours", "a symbolic link: not followed", {}
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


def _remove(path: Path) -> None:
    """Remove a cache file, or an unfinished extraction's folder (see ``discard_partial``)."""
    if path.name.endswith(".partial"):
        discard_partial(path)
    else:
        path.unlink()


def _has_cache_header(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file with this package's ``format`` attribute."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def _size(path: Path) -> int:
    """Bytes of a file, or of the files directly in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size
