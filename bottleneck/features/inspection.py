"""Summaries and integrity checks of caches (``bottleneck info`` and ``verify``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import items_word
from bottleneck_transfer.features.cache.format import (
    assembled_rows,
    describe_unusable,
    is_view,
    manifest_changes,
    unusable_rows,
    view_count,
    view_source_rows,
)
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.sources import reopen_source
from bottleneck_transfer.features.targets import VALUE_KINDS, target_rows
from bottleneck_transfer.fingerprint import sha256_file


def cache_info(path: str | Path) -> dict:
    """Rows (images and their augmented views), feature size and storage, classes with
    counts of images, base, software, failures and fingerprint.

    Examples
    --------
    >>> info = cache_info("caches/fm-train.h5")
    >>> info["rows"], info["feature_dim"]
    (12000, 128)
    """
    with FeatureCache.open(path) as cache:
        provenance = cache.provenance
        plain = ~is_view(cache.ids) if cache.has_views else slice(None)
        counts = Counter(cache.labels[plain].tolist())  # images, not their views
        classes = [
            {"index": i, "name": name, "count": counts.get(i, 0)}
            for i, name in enumerate(cache.class_names)
        ]
        base = provenance.get("base", {})
        target = cache.target
        described = {**target.to_dict(), "described": target.describe()}
        if target.kind in VALUE_KINDS:
            described["rows"] = target_rows(cache.targets, target)
        return {
            "path": str(path),
            "rows": len(cache),
            "images": sum(counts.values()),
            "views": cache.identity.get("views"),
            "feature_dim": cache.dim,
            "store_dtype": str(cache.features_dataset.dtype),
            "compression": cache.features_dataset.compression,
            "classes": classes,
            "unlabeled": counts.get(-1, 0),
            "target": described,
            "base": next(
                (base[k] for k in ("application", "file", "table", *hub.NAME_KEYS) if k in base),
                None,
            ),
            "hub": _hub_provenance(base),
            "weights": base.get("weights"),
            "layer": base.get("layer"),
            "pooling": base.get("pooling"),
            "input_shape": base.get("input_shape") or _text_input(base),
            "unit": items_word(base),
            "source": {
                **{k: provenance.get("source", {}).get(k) for k in ("kind", "root", "n_items")},
                "split": (provenance.get("source", {}).get("options") or {}).get("split"),
            },
            "software": provenance.get("software", {}),
            "extraction": provenance.get("extraction", {}),
            "created_at": provenance.get("created_at"),
            "failed": [{"id": i, "reason": r} for i, r in cache.failed],
            "fingerprint": cache.fingerprint,
            "size_bytes": Path(path).stat().st_size,
        }


def _text_input(base: dict) -> str | None:
    """A text base's input, in words (None for others)."""
    if base.get("input") != "text":
        return None
    return f"text, up to {base.get('max_length')} tokens"


def _hub_provenance(base: dict) -> dict:
    """A hub base's class, config and weights sha256, converter or SavedModel ({} for others)."""
    if not any(key in base for key in hub.NAME_KEYS):
        return {}
    keys = (*hub.DETAIL_KEYS, "weights_sha256")
    return {key: base[key] for key in keys if key in base}


@dataclass
class Check:
    """One check of :func:`verify_cache`: its name and the problems it found."""

    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(repr=False)
class VerifyReport(Display):
    """The outcome of :func:`verify_cache`: one verdict per check; ``ok`` when all pass."""

    path: str
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem found, check by check."""
        return [problem for check in self.checks for problem in check.problems]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def _display_summary(self) -> dict[str, object]:
        return {"path": self.path, "ok": self.ok, "problems": len(self.problems)}

    def _display_rows(self) -> list[dict[str, object]]:
        """One row per check: ok or not, and its problems."""
        return [
            {"check": check.name, "ok": check.ok, "problems": "; ".join(check.problems)}
            for check in self.checks
        ]

    def lines(self) -> list[str]:
        """``ok    <check>`` or ``FAIL  <check>: <problem>``, one verdict per check."""
        return [
            f"ok    {check.name}"
            if check.ok
            else f"FAIL  {check.name}: {'; '.join(check.problems)}"
            for check in self.checks
        ]


def _source_changes(cache: FeatureCache) -> list[str]:
    """Which source files were added, removed or modified since extraction."""
    described = cache.provenance.get("source", {})
    if described.get("kind") == "table":
        return _table_changes(described)
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
    return [
        f"source changed since extraction: {line}" for line in manifest_changes(stored, current)
    ]


def _table_changes(described: dict) -> list[str]:
    """An imported cache's table (``cache import``): still there, with the same sha256."""
    path = Path(described.get("root") or "")
    if not path.is_file():
        return [f"the table it was imported from is not at {path}"]
    if sha256_file(path) != described.get("sha256"):
        return [f"{path} changed since it was imported (sha256 differs)"]
    return []


def _accounting(cache: FeatureCache) -> list[str]:
    """Whether plain rows + failures are exactly the source's items, each once."""
    rows = cache.ids
    ids = [i for i, view in zip(rows, is_view(rows), strict=True) if not view]
    ids += [item for item, _ in cache.failed]
    problems = []
    repeated = sorted(k for k, n in Counter(ids).items() if n > 1)
    if repeated:
        problems.append(f"{len(repeated)} ids appear more than once: {_some(repeated)}")
    manifest = cache.manifest
    if manifest is None:
        n_items = cache.identity.get("source", {}).get("n_items")
        if n_items is not None and n_items != len(ids):
            problems.append(f"{len(ids)} rows + failures for {n_items} source items")
        return problems
    expected = set(manifest["ids"].tolist())
    missing = sorted(expected - set(ids))
    extra = sorted(set(ids) - expected)
    if missing:
        problems.append(
            f"{len(missing)} source items are neither rows nor failures: {_some(missing)}"
        )
    if extra:
        problems.append(f"{len(extra)} rows or failures are not source items: {_some(extra)}")
    return problems


def _views(cache: FeatureCache) -> list[str]:
    """Whether the rows are each image and its K views in the cache layout, tied to their
    images by ``/views/source_row``."""
    ids, count = cache.ids, view_count(cache.identity)
    n_plain = int((~is_view(ids)).sum())
    try:
        where = assembled_rows(ids, 0, n_plain, count)
    except CacheError as exc:
        return [str(exc)]
    if not np.array_equal(where, np.arange(len(ids))):
        return [f"the rows are not the {n_plain} images, then view 0 of each, view 1, ..."]
    if not np.array_equal(cache.source_rows, view_source_rows(n_plain, count)):
        return ["/views/source_row does not tie each view to its image's row"]
    return []


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")


def verify_cache(
    path: str | Path, *, check_source: bool = True, block_rows: int = 16384
) -> VerifyReport:
    """Check format, fingerprint, shapes, labels, ids, finite features, that rows + failures
    are the source's items, and (``check_source``) that the source is unchanged.

    Examples
    --------
    >>> report = verify_cache("caches/fm-train.h5")
    >>> report.ok, report.problems
    (True, [])
    """
    report = VerifyReport(str(path))
    opening = Check("format, version, completeness, fingerprint and row counts")
    report.checks.append(opening)
    try:
        cache = FeatureCache.open(path)
    except CacheError as exc:
        opening.problems.append(str(exc))
        return report
    with cache:
        n_classes = len(cache.class_names)
        labels = cache.labels
        bad = np.flatnonzero((labels < -1) | (labels >= max(n_classes, 0)))
        report.checks.append(
            Check(
                "labels in range",
                [f"{bad.size} labels outside -1..{n_classes - 1} (row {bad[0]})"]
                if bad.size
                else [],
            )
        )
        report.checks.append(
            Check("rows + failures are the source's items, each once", _accounting(cache))
        )
        if cache.has_views or view_count(cache.identity):
            report.checks.append(Check("augmented views: K per image, in order", _views(cache)))
        expected_dim = cache.provenance.get("base", {}).get("feature_dim")
        wrong_dim = expected_dim is not None and expected_dim != cache.dim
        report.checks.append(
            Check(
                "feature size is the base's",
                [f"feature size {cache.dim} != base's {expected_dim}"] if wrong_dim else [],
            )
        )
        rows = unusable_rows(cache.features_dataset, block_rows)
        report.checks.append(
            Check("features finite", [describe_unusable(rows, cache.ids)] if rows.size else [])
        )
        if check_source:
            report.checks.append(Check("source unchanged since extraction", _source_changes(cache)))
    return report
