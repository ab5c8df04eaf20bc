"""Summaries and integrity checks of caches (``bottleneck info`` and ``verify``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features import hub
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.sources import reopen_source


def cache_info(path: str | Path) -> dict:
    """Rows, feature size, classes with counts, base, software, failures and fingerprint."""
    with FeatureCache.open(path) as cache:
        provenance = cache.provenance
        labels = cache.labels
        counts = Counter(labels.tolist())
        classes = [
            {"index": i, "name": name, "count": counts.get(i, 0)}
            for i, name in enumerate(cache.class_names)
        ]
        base = provenance.get("base", {})
        return {
            "path": str(path),
            "rows": len(cache),
            "feature_dim": cache.dim,
            "classes": classes,
            "unlabeled": counts.get(-1, 0),
            "base": next(
                (base[k] for k in ("application", "file", *hub.NAME_KEYS) if k in base), None
            ),
            "hub": _hub_provenance(base),
            "weights": base.get("weights"),
            "layer": base.get("layer"),
            "pooling": base.get("pooling"),
            "input_shape": base.get("input_shape"),
            "source": {k: provenance.get("source", {}).get(k) for k in ("kind", "root", "n_items")},
            "software": provenance.get("software", {}),
            "extraction": provenance.get("extraction", {}),
            "created_at": provenance.get("created_at"),
            "failed": [{"id": i, "reason": r} for i, r in cache.failed],
            "fingerprint": cache.fingerprint,
            "size_bytes": Path(path).stat().st_size,
        }


def _hub_provenance(base: dict) -> dict:
    """A hub base's class, config and weights sha256, converter or SavedModel ({} for others)."""
    if not any(key in base for key in hub.NAME_KEYS):
        return {}
    keys = (*hub.DETAIL_KEYS, "weights_sha256")
    return {key: base[key] for key in keys if key in base}


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_cache`: ``ok`` when there are no problems."""

    path: str
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _source_changes(cache: FeatureCache) -> list[str]:
    """Which source files were added, removed or modified since extraction."""
    described = cache.provenance.get("source", {})
    try:
        source = reopen_source(described)
    except BottleneckError as exc:
        return [f"source cannot be reopened: {exc}"]
    stored = cache.manifest
    if stored is None:
        now = source.identity()
        keys = [k for k in now if k.endswith("sha256") and now[k] != described.get(k)]
        return [f"source arrays changed ({', '.join(keys)})"] if keys else []
    current = source.manifest() or {"ids": [], "size": [], "mtime_ns": []}
    before = dict(
        zip(stored["ids"], zip(stored["size"], stored["mtime_ns"], strict=True), strict=True)
    )
    after = dict(
        zip(current["ids"], zip(current["size"], current["mtime_ns"], strict=True), strict=True)
    )
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    modified = sorted(k for k in set(before) & set(after) if tuple(before[k]) != tuple(after[k]))
    out = []
    for what, ids in (("added", added), ("removed", removed), ("modified", modified)):
        if ids:
            shown = ", ".join(ids[:5]) + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")
            out.append(f"source changed since extraction: {len(ids)} file(s) {what}: {shown}")
    return out


def verify_cache(
    path: str | Path, *, check_source: bool = True, block_rows: int = 16384
) -> VerifyReport:
    """Check format, completeness, shapes, label range, finite values and source changes."""
    report = VerifyReport(str(path))
    try:
        cache = FeatureCache.open(path)
    except CacheError as exc:
        report.problems.append(str(exc))
        return report
    with cache:
        report.checks.append("format, version, completeness and row counts")
        n_classes = len(cache.class_names)
        labels = cache.labels
        bad = np.flatnonzero((labels < -1) | (labels >= max(n_classes, 0)))
        if bad.size:
            report.problems.append(f"{bad.size} labels outside -1..{n_classes - 1} (row {bad[0]})")
        report.checks.append("labels in range")
        if len(set(cache.ids)) != len(cache):
            report.problems.append("duplicate ids")
        report.checks.append("ids unique")
        expected_dim = cache.provenance.get("base", {}).get("feature_dim")
        if expected_dim is not None and expected_dim != cache.dim:
            report.problems.append(f"feature size {cache.dim} != base's {expected_dim}")
        non_finite = 0
        first = None
        for start in range(0, len(cache), block_rows):
            block = cache.features_dataset[start : start + block_rows]
            rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
            if rows.size and first is None:
                first = start + int(rows[0])
            non_finite += int(rows.size)
        if non_finite:
            report.problems.append(
                f"{non_finite} rows hold NaN or Inf features (first: row {first}, "
                f"id {cache.ids[first]})"
            )
        report.checks.append("features finite")
        if check_source:
            report.problems += _source_changes(cache)
            report.checks.append("source unchanged since extraction")
    return report
