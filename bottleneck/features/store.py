"""A content-addressed store of caches, keyed by extraction fingerprint (``bottleneck cache``)."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path

from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features.cache import FeatureCache, discard_partial

#: Environment variable naming the default store folder.
CACHE_DIR_ENV = "BOTTLENECK_CACHE_DIR"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
        """Every cache and unfinished extraction in the store, newest use first."""
        out = []
        for path in sorted(self.root.glob("*.h5*")):
            if not (path.suffix == ".h5" or path.name.endswith(".h5.partial")):
                continue
            stat = path.stat()
            size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else stat.st_size
            entry = {
                "path": str(path),
                "size_bytes": size,
                "last_used": dt.datetime.fromtimestamp(stat.st_mtime).isoformat(timespec="seconds"),
                "status": "partial" if path.name.endswith(".partial") else "complete",
                "base": None,
                "source": None,
                "rows": None,
            }
            if entry["status"] == "complete":
                try:
                    with FeatureCache.open(path) as cache:
                        base = cache.provenance.get("base", {})
                        source = cache.provenance.get("source", {})
                        entry.update(
                            base=f"{base.get('application') or base.get('file')} "
                            f"({base.get('weights')})",
                            source=(source.get("options") or {}).get("spec") or source.get("root"),
                            rows=len(cache),
                        )
                except CacheError as exc:
                    entry["status"] = f"unreadable: {exc}"
            out.append(entry)
        return sorted(out, key=lambda e: e["last_used"], reverse=True)

    def prune(self, *, older_than: float | None = None, partial: bool = False) -> list[Path]:
        """Remove caches unused for ``older_than`` seconds, and/or unfinished extractions."""
        if older_than is None and not partial:
            raise BottleneckError("say what to prune: --older-than AGE and/or --partial")
        now = time.time()
        removed = []
        for entry in self.entries():
            path = Path(entry["path"])
            old = older_than is not None and now - path.stat().st_mtime > older_than
            if old or (partial and entry["status"] == "partial"):
                discard_partial(path)
                removed.append(path)
        return removed
