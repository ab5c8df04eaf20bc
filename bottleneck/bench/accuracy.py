"""What two extraction options do to each head's accuracy on the Fashion-MNIST demo.

The demo is ``pipelines/fashion_mnist.toml``: the shipped base trained on Fashion-MNIST
classes 0-4, transferred to classes 5-9, scored on the 5,000 test images of those classes,
with the registry's compared-by-default heads (untuned, as in the demo).

``views`` (:func:`bench_views`)
    For each labelled-set size (images per class) and each of ``draws`` seeded, stratified
    draws of that many training images: extract the draw plain and with ``views``
    augmented views (``flip,crop,rotate,color``, seeded by the draw), fit every head on
    each (:func:`heads.compare.compare_heads` against the same plain test cache) and keep
    each head's test predictions. With few labels most of the variance comes from *which*
    images are labelled, so every mean has an interval over both sources of chance
    (:func:`~bottleneck_transfer.heads.stats.draw_interval`); the paired difference (views -
    plain) uses the same draws.
``float16-heads`` (:func:`bench_float16_heads`)
    The demo's train (``limit`` images) and test caches stored as float32 and as float16
    (``store_dtype``): file sizes, how far the float16 features are from float32, and each
    head's accuracy on both with the holdout bootstrap interval and the paired change.

``bottleneck bench --parts views,float16-heads`` runs both. Nothing here asserts a time.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.bench.suite import FASHION_BASE
from bottleneck_transfer.heads.stats import draw_interval

#: The demo of ``pipelines/fashion_mnist.toml`` (the base path is relative to the checkout).
DEMO = {
    "base": FASHION_BASE,
    "train": "fashion-mnist:train",
    "test": "fashion-mnist:test",
    "classes": "5-9",
    "limit": 12000,
}
AUGMENT = "flip,crop,rotate,color"
#: The range of a paired difference of 1/0 scores.
DIFFERENCE = (-1.0, 1.0)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def labelled_draw(source: Any, per_class: int, seed: Sequence[int]) -> Any:
    """``per_class`` images of every class of ``source``, drawn without replacement.

    A :class:`features.sources.Source` of the chosen items in source order; the selection is
    recorded in its options (and, through its items, in its identity and so the cache's
    fingerprint).
    """
    labels = np.asarray([item.label for item in source.items])
    rng = np.random.default_rng(list(seed))
    chosen = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == k), per_class, replace=False)
                for k in range(len(source.class_names))
            ]
        )
    )
    draw = {"per_class": per_class, "seed": list(seed)}
    return dataclasses.replace(
        source,
        items=[source.items[i] for i in chosen],
        options={**source.options, "draw": draw},
    )


def _correct(comparison: Any, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's 1/0 correctness on the test rows, by head name."""
    return {row.name: (row.predictions == y).astype(np.int8) for row in comparison.rows}


def _notes(comparison: Any) -> dict[str, list[str]]:
    return {row.name: row.notes for row in comparison.rows}


def bench_views(
    per_class: Sequence[int] = (10, 50),
    *,
    draws: int = 20,
    views: int = 8,
    heads: Sequence[str] | None = None,
    test_limit: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    demo: dict[str, Any] = DEMO,
    directory: str | Path | None = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Each head's test accuracy with 0 and with ``views`` augmented views per labelled image.

    For every size in ``per_class`` and draw ``r`` in ``range(draws)``, the labelled images
    are :func:`labelled_draw` seeded by ``(seed, size, r)``; views are seeded by ``r``.
    Returns ``rows``: per size and head, ``plain``, ``views`` and ``difference`` (views -
    plain, paired by draw) as :func:`draw_interval` dicts; ``plain_rows_max_abs_diff``: how
    far the plain rows of the views caches are from the plain extractions (0.0: identical).
    """
    from bottleneck_transfer.errors import SmallDataWarning
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.features.sources import open_source
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.registry import default_heads
    from bottleneck_transfer.heads.training import LabeledData

    started = time.perf_counter()
    heads = list(heads or default_heads())
    base = load_base(demo["base"])
    train_source = open_source(demo["train"], classes=demo["classes"])
    correct: dict[tuple[int, str, str], list[np.ndarray]] = {}
    notes: dict[tuple[int, str, str], set[str]] = {}
    plain_gap = 0.0
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        test_path = root / "test.h5"
        extract(
            demo["test"],
            base,
            test_path,
            classes=demo["classes"],
            limit=test_limit,
            progress=False,
        )
        test = LabeledData.from_cache(test_path)
        for size in per_class:
            for r in range(draws):
                log(f"views: {size} per class, draw {r + 1}/{draws}")
                source = labelled_draw(train_source, size, (seed, size, r))
                paths = {"plain": root / f"{size}-{r}-plain.h5", "views": root / f"{size}-{r}.h5"}
                extract(source, base, paths["plain"], progress=False)
                extract(
                    source,
                    base,
                    paths["views"],
                    augment=AUGMENT,
                    views=views,
                    seed=r,
                    progress=False,
                )
                data = {kind: LabeledData.from_cache(path) for kind, path in paths.items()}
                plain_rows = data["views"].X[data["views"].plain]
                plain_gap = max(plain_gap, float(np.abs(plain_rows - data["plain"].X).max()))
                for kind, train in data.items():
                    with warnings.catch_warnings():  # few labels per class: the point here
                        warnings.simplefilter("ignore", SmallDataWarning)
                        comparison = compare_heads(
                            train, test, heads=heads, n_bootstrap=n_bootstrap, progress=False
                        )
                    for head, right in _correct(comparison, test.y).items():
                        correct.setdefault((size, head, kind), []).append(right)
                    for head, lines in _notes(comparison).items():
                        notes.setdefault((size, head, kind), set()).update(lines)
    rows = []
    for size in per_class:
        for head in heads:
            plain, viewed = (np.stack(correct[(size, head, k)]) for k in ("plain", "views"))
            stats = {"n_bootstrap": n_bootstrap, "seed": seed}
            rows.append(
                {
                    "per_class": size,
                    "head": head,
                    "plain": draw_interval(plain, **stats),
                    "views": draw_interval(viewed, **stats),
                    "difference": draw_interval(
                        viewed.astype(np.int8) - plain, bounds=DIFFERENCE, **stats
                    ),
                    "notes": sorted(notes[(size, head, "plain")] | notes[(size, head, "views")]),
                }
            )
    return {
        "demo": {key: value for key, value in demo.items() if key != "limit"},
        "test_rows": len(test),
        "augment": AUGMENT,
        "views": views,
        "draws": draws,
        "heads": heads,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "plain_rows_max_abs_diff": plain_gap,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def bench_float16_heads(
    *,
    heads: Sequence[str] | None = None,
    test_limit: int | None = None,
    n_bootstrap: int = 1000,
    demo: dict[str, Any] = DEMO,
    directory: str | Path | None = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Each head's test accuracy on the demo's caches stored as float32 and as float16.

    Returns ``bytes`` (train and test cache files per dtype), ``feature_max_abs_error`` and
    ``feature_max_abs`` (float16 features read back against float32), and ``rows``: per head
    the accuracy and holdout interval of both, the paired ``change`` (float16 - float32, a
    :func:`draw_interval` of one draw) and how many test predictions changed.
    """
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.registry import default_heads
    from bottleneck_transfer.heads.training import LabeledData

    started = time.perf_counter()
    heads = list(heads or default_heads())
    base = load_base(demo["base"])
    dtypes = ("float32", "float16")
    sizes: dict[str, dict[str, int]] = {}
    data: dict[str, dict[str, Any]] = {}
    comparisons = {}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for dtype in dtypes:
            log(f"float16-heads: extracting and comparing the {dtype} caches")
            parts = {"train": demo["limit"], "test": test_limit}
            paths = {part: Path(tmp) / f"{part}-{dtype}.h5" for part in parts}
            for part, limit in parts.items():
                extract(
                    demo[part],
                    base,
                    paths[part],
                    classes=demo["classes"],
                    limit=limit,
                    store_dtype=dtype,
                    progress=False,
                )
            sizes[dtype] = {part: path.stat().st_size for part, path in paths.items()}
            data[dtype] = {part: LabeledData.from_cache(path) for part, path in paths.items()}
            comparisons[dtype] = compare_heads(
                data[dtype]["train"],
                data[dtype]["test"],
                heads=heads,
                n_bootstrap=n_bootstrap,
                progress=False,
            )
    y = data["float32"]["test"].y
    error = max(
        np.abs(data["float16"][p].X - data["float32"][p].X).max() for p in ("train", "test")
    )
    rows = []
    for head in heads:
        found = {dtype: comparisons[dtype].row(head) for dtype in dtypes}
        right = {dtype: (row.predictions == y).astype(np.int8) for dtype, row in found.items()}
        rows.append(
            {
                "head": head,
                **{
                    dtype: {
                        "accuracy": round(row.metrics["accuracy"], 4),
                        "interval": [round(v, 4) for v in row.intervals["accuracy"]],
                    }
                    for dtype, row in found.items()
                },
                "change": draw_interval(
                    (right["float16"] - right["float32"])[None],
                    n_bootstrap=n_bootstrap,
                    bounds=DIFFERENCE,
                ),
                "predictions_changed": int(
                    (found["float16"].predictions != found["float32"].predictions).sum()
                ),
                "notes": sorted(set(found["float32"].notes) | set(found["float16"].notes)),
            }
        )
    return {
        "demo": demo,
        "train_rows": len(data["float32"]["train"]),
        "test_rows": len(y),
        "dim": int(data["float32"]["train"].X.shape[1]),
        "bytes": sizes,
        "size_ratio": {
            part: round(sizes["float16"][part] / sizes["float32"][part], 4)
            for part in ("train", "test")
        },
        "feature_max_abs_error": float(error),
        "feature_max_abs": float(np.abs(data["float32"]["train"].X).max()),
        "heads": heads,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _cell(stats: dict[str, Any], signed: bool = False, digits: int = 3) -> str:
    form = f"{'+' if signed else ''}.{digits}f"
    return f"{stats['mean']:{form}} [{stats['low']:{form}}, {stats['high']:{form}}]"


def format_accuracy(report: dict[str, Any]) -> list[str]:
    """Markdown tables of the ``views`` and ``float16_heads`` parts of a bench report."""
    lines: list[str] = []
    views = report.get("views")
    if views:
        lines += [
            "",
            f"Accuracy with 0 and {views['views']} views ({views['draws']} labelled draws per "
            f"size, {views['test_rows']} test images; mean [95 % interval over draws and test "
            "images]):",
            "",
            f"| labels per class | head | 0 views | {views['views']} views | difference |",
            "|---|---|---|---|---|",
        ]
        for row in views["rows"]:
            lines.append(
                f"| {row['per_class']} | {row['head']} | {_cell(row['plain'])} | "
                f"{_cell(row['views'])} | {_cell(row['difference'], signed=True)} |"
            )
        notes = [
            f"- {row['per_class']} per class, {row['head']}: {note}"
            for row in views["rows"]
            for note in row.get("notes", [])
        ]
        lines += ["", *notes] if notes else []
    float16 = report.get("float16_heads")
    if float16:
        lines += [
            "",
            f"float16 storage ({float16['train_rows']} train, {float16['test_rows']} test "
            f"images; train cache {float16['size_ratio']['train']:.3f} × float32; features "
            f"within {float16['feature_max_abs_error']:.2g} of float32, largest "
            f"{float16['feature_max_abs']:.3g}):",
            "",
            "| head | float32 | float16 | change | predictions changed |",
            "|---|---|---|---|---|",
        ]
        for row in float16["rows"]:
            a, b = row["float32"], row["float16"]
            lines.append(
                f"| {row['head']} | {a['accuracy']:.4f} [{a['interval'][0]:.4f}, "
                f"{a['interval'][1]:.4f}] | {b['accuracy']:.4f} [{b['interval'][0]:.4f}, "
                f"{b['interval'][1]:.4f}] | {_cell(row['change'], signed=True, digits=4)} | "
                f"{row['predictions_changed']} |"
            )
    return lines
