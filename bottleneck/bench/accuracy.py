"""What two extraction options do to each head's accuracy on the Fashion-MNIST demo.

The demo is ``pipelines/fashion_mnist.toml`` (:data:`DEMO_SPEC`): the shipped base trained on
Fashion-MNIST classes 0-4, transferred to classes 5-9, with the spec's heads (untuned, as in
the demo). Both parts draw from the spec's training images (its ``limit`` spread over the
30,000 of those classes) and score on ``test_limit`` of its test images, spread evenly.

With few labels most of the variance comes from *which* images are labelled, so each part
fits every head on ``draws`` seeded, stratified draws of ``n`` labelled images per class
(:func:`labelled_draw`, seeded by ``(seed, n, r)``), once per arm, against the same test rows
(:func:`heads.compare.compare_heads`). Every mean has an interval over both sources of chance
(:func:`~bottleneck_transfer.heads.stats.draw_interval`: which images are labelled, which
test images); the difference of the two arms is paired on the same draws and test rows.

``views`` (:func:`bench_views`)
    Arms: the draw extracted plain, and with ``views`` augmented views
    (``flip,crop,rotate,color``, seeded by the draw).
``float16-heads`` (:func:`bench_float16_heads`)
    Arms: the draw and the test images stored as float32 and as float16 (``store_dtype``),
    with file sizes, how far float16 features are from float32 and how many test
    predictions changed.

``bottleneck bench --parts views,float16-heads`` runs both. Each report records the spec it
measures and its :func:`~bottleneck_transfer.bench.specs.spec_settings`, so that a stale
report is caught (:mod:`~bottleneck_transfer.bench.readme`). Nothing here asserts a time.
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
from bottleneck_transfer.bench.specs import spec_settings
from bottleneck_transfer.heads.stats import draw_interval

#: The spec whose demo both parts measure (relative to the checkout).
DEMO_SPEC = "pipelines/fashion_mnist.toml"
#: Labelled images per class, seeded draws of each size, and test images scored.
SIZES = (10, 50)
DRAWS = 5
TEST_LIMIT = 2000
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


@dataclasses.dataclass
class Arm:
    """One side of a paired measurement: extraction options of a draw and of the test rows.

    ``train`` maps the draw's index to :func:`features.extract.extract` options (views are
    seeded by the draw); ``test`` are the test cache's options.
    """

    train: Callable[[int], dict[str, Any]]
    test: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Fitted:
    """One arm of one draw: its training and test data and each head's predictions."""

    train: Any
    test: Any
    paths: dict[str, Path]
    predictions: dict[str, np.ndarray]
    notes: dict[str, list[str]]


Inspect = Callable[[dict[str, Fitted]], None]


def paired_draws(
    arms: dict[str, Arm],
    *,
    per_class: Sequence[int] = SIZES,
    draws: int = DRAWS,
    test_limit: int | None = TEST_LIMIT,
    n_bootstrap: int = 1000,
    seed: int = 0,
    spec: str | Path = DEMO_SPEC,
    directory: str | Path | None = None,
    inspect: Inspect | None = None,
    log: Log = _quiet,
    name: str = "paired",
) -> dict[str, Any]:
    """Every head of ``spec`` fitted on each arm of the same labelled draws (module text).

    Returns the report: the spec, its :func:`spec_settings`, the design (sizes, draws, test
    rows, seed) and ``rows``: per size and head, each arm's :func:`draw_interval` over the
    draws and the test rows, their ``difference`` (second arm - first, paired), the number
    of test predictions that differ between the arms (summed over the draws) and the fits'
    notes. ``inspect`` sees each draw's :class:`Fitted` arms.
    """
    started = time.perf_counter()
    first, second = arms
    setup = _setup(spec, n_bootstrap)
    tally = _Tally()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        tests = {
            arm: _test_set(setup, options, root / f"test-{arm}.h5", test_limit)
            for arm, options in arms.items()
        }
        for size in per_class:
            for r in range(draws):
                log(f"{name}: {size} per class, draw {r + 1}/{draws}")
                source = labelled_draw(setup.train_source, size, (seed, size, r))
                fitted = {
                    arm: _fit_arm(
                        setup, source, r, options, root / f"{size}-{r}-{arm}.h5", tests[arm]
                    )
                    for arm, options in arms.items()
                }
                if inspect is not None:
                    inspect(fitted)
                tally.add(size, setup.heads, fitted[first], fitted[second], tests[first].data.y)
    stats = {"n_bootstrap": n_bootstrap, "seed": seed}
    return {
        "spec": Path(spec).as_posix(),
        "settings": spec_settings(spec),
        "arms": list(arms),
        "per_class": list(per_class),
        "draws": draws,
        "test_rows": len(tests[first].data),
        "heads": setup.heads,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "rows": tally.rows(per_class, setup.heads, (first, second), stats),
        "seconds": round(time.perf_counter() - started, 1),
    }


@dataclasses.dataclass
class _Setup:
    """What every fit of a paired measurement shares: the spec's data, heads and metric, its
    base, its training source and the bootstrap resamples of each comparison."""

    data: dict[str, Any]
    heads: list[str]
    metric: str | None
    base: Any
    train_source: Any
    n_bootstrap: int


def _setup(spec: str | Path, n_bootstrap: int) -> _Setup:
    """The spec loaded: its base built and its training images opened."""
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.sources import open_source
    from bottleneck_transfer.pipeline.spec import load_spec

    loaded = load_spec(spec)
    data = loaded["data"]
    named = {k: v for k, v in loaded["base"].items() if k != "name" and v is not None}
    base = load_base(loaded["base"]["name"], seed=loaded["extract"]["seed"], **named)
    train_source = open_source(data["train"], classes=data["classes"], limit=data["limit"])
    heads = loaded["heads"]
    return _Setup(data, list(heads["use"]), heads["metric"], base, train_source, n_bootstrap)


@dataclasses.dataclass
class _TestSet:
    """One arm's test rows: their data and their cache."""

    data: Any
    path: Path


def _test_set(setup: _Setup, arm: Arm, path: Path, limit: int | None) -> _TestSet:
    """Extract ``limit`` of the spec's test images with ``arm``'s test options to ``path``."""
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.heads.training import LabeledData

    data = setup.data
    extract(
        data["test"],
        setup.base,
        path,
        classes=data["classes"],
        limit=limit,
        progress=False,
        **arm.test,
    )
    return _TestSet(LabeledData.from_cache(path), path)


def _fit_arm(setup: _Setup, source: Any, r: int, arm: Arm, path: Path, test: _TestSet) -> Fitted:
    """Extract draw ``r`` with ``arm``'s options to ``path``, then fit and score every head of
    the spec on it against ``test``."""
    from bottleneck_transfer.errors import SmallDataWarning
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.training import LabeledData

    extract(source, setup.base, path, progress=False, **arm.train(r))
    train = LabeledData.from_cache(path)
    with warnings.catch_warnings():  # few labels per class: the point here
        warnings.simplefilter("ignore", SmallDataWarning)
        comparison = compare_heads(
            train,
            test.data,
            heads=setup.heads,
            metric=setup.metric,
            n_bootstrap=setup.n_bootstrap,
            random_state=r,
            progress=False,
        )
    return Fitted(
        train,
        test.data,
        {"train": path, "test": test.path},
        {row.name: row.predictions for row in comparison.rows},
        {row.name: row.notes for row in comparison.rows},
    )


@dataclasses.dataclass
class _Tally:
    """Per labelled size and head: each arm's 1/0 test scores of every draw, the test
    predictions that differ between the arms and the fits' notes."""

    right: dict[tuple[int, str, str], list[np.ndarray]] = dataclasses.field(default_factory=dict)
    changed: dict[tuple[int, str], int] = dataclasses.field(default_factory=dict)
    notes: dict[tuple[int, str], set[str]] = dataclasses.field(default_factory=dict)

    def add(
        self, size: int, heads: list[str], first: Fitted, second: Fitted, y: np.ndarray
    ) -> None:
        """Count one draw of both arms, scored against the test labels ``y``."""
        for head in heads:
            a, b = first.predictions[head], second.predictions[head]
            for arm, (fitted, predicted) in enumerate(((first, a), (second, b))):
                self.right.setdefault((size, head, arm), []).append(
                    (predicted == y).astype(np.int8)
                )
                self.notes.setdefault((size, head), set()).update(fitted.notes[head])
            self.changed[(size, head)] = self.changed.get((size, head), 0) + int((a != b).sum())

    def rows(
        self,
        per_class: Sequence[int],
        heads: list[str],
        arms: tuple[str, str],
        stats: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Per size and head: each arm's :func:`draw_interval`, their paired difference
        (second - first), the predictions changed and the notes."""
        rows = []
        for size in per_class:
            for head in heads:
                first, second = (np.stack(self.right[(size, head, k)]) for k in (0, 1))
                rows.append(
                    {
                        "per_class": size,
                        "head": head,
                        arms[0]: draw_interval(first, **stats),
                        arms[1]: draw_interval(second, **stats),
                        "difference": draw_interval(second - first, bounds=DIFFERENCE, **stats),
                        "predictions_changed": self.changed[(size, head)],
                        "notes": sorted(self.notes[(size, head)]),
                    }
                )
        return rows


def bench_views(*, views: int = 8, log: Log = _quiet, **design: Any) -> dict[str, Any]:
    """Each head's test accuracy with 0 and with ``views`` augmented views per labelled image.

    ``design`` goes to :func:`paired_draws` (sizes, draws, test rows, spec, seed). Adds
    ``views``, ``augment`` and ``plain_rows_max_abs_diff``: how far the plain rows of the
    views caches are from the plain extractions (0.0: identical).
    """
    gap = [0.0]

    def inspect(fitted: dict[str, Fitted]) -> None:
        viewed = fitted["views"].train
        difference = np.abs(viewed.X[viewed.plain] - fitted["plain"].train.X).max()
        gap[0] = max(gap[0], float(difference))

    arms = {
        "plain": Arm(lambda r: {}),
        "views": Arm(lambda r: {"augment": AUGMENT, "views": views, "seed": r}),
    }
    report = paired_draws(arms, inspect=inspect, log=log, name="views", **design)
    return {**report, "views": views, "augment": AUGMENT, "plain_rows_max_abs_diff": gap[0]}


def bench_float16_heads(*, log: Log = _quiet, **design: Any) -> dict[str, Any]:
    """Each head's test accuracy on caches stored as float32 and as float16.

    ``design`` goes to :func:`paired_draws`. Adds ``size_ratio`` (float16 over float32
    file size of the test cache and of the last draw's training cache, with their rows) and
    ``feature_max_abs_error`` / ``feature_max_abs`` (float16 features read back against
    float32, over every cache).
    """
    seen = {"error": 0.0, "largest": 0.0, "ratio": {}}

    def inspect(fitted: dict[str, Fitted]) -> None:
        a, b = fitted["float32"], fitted["float16"]
        for part in ("train", "test"):
            x, y = getattr(a, part).X, getattr(b, part).X
            seen["error"] = max(seen["error"], float(np.abs(y - x).max()))
            seen["largest"] = max(seen["largest"], float(np.abs(x).max()))
            sizes = (b.paths[part].stat().st_size, a.paths[part].stat().st_size)
            seen["ratio"][part] = {"rows": len(x), "ratio": round(sizes[0] / sizes[1], 4)}

    arms = {
        dtype: Arm(lambda r, dtype=dtype: {"store_dtype": dtype}, {"store_dtype": dtype})
        for dtype in ("float32", "float16")
    }
    report = paired_draws(arms, inspect=inspect, log=log, name="float16-heads", **design)
    return {
        **report,
        "size_ratio": seen["ratio"],
        "feature_max_abs_error": seen["error"],
        "feature_max_abs": seen["largest"],
    }


def _cell(stats: dict[str, Any], signed: bool = False, digits: int = 3) -> str:
    form = f"{'+' if signed else ''}.{digits}f"
    return f"{stats['mean']:{form}} [{stats['low']:{form}}, {stats['high']:{form}}]"


def _design(report: dict[str, Any]) -> str:
    sizes = " and ".join(str(n) for n in report["per_class"])
    return (
        f"`{report['spec']}`: {report['draws']} seeded, stratified draws of {sizes} labelled "
        f"images per class from its {report['settings']['data']['limit']:,} training images, "
        f"scored on {report['test_rows']:,} of its test images; mean [95 % interval over "
        "the draws and the test images], the difference paired on the same draws and test "
        "images"
    )


def _paired_table(
    report: dict[str, Any], titles: Sequence[str], difference_digits: int = 3
) -> list[str]:
    """A Markdown table of a :func:`paired_draws` report; ``titles`` name the arms and
    their difference."""
    scored = report["draws"] * report["test_rows"]
    lines = [
        f"| labels per class | head | {' | '.join(titles)} | predictions changed (of {scored:,}) |",
        "|---|---|---|---|---|---|",
    ]
    first, second = report["arms"]
    for row in report["rows"]:
        difference = _cell(row["difference"], signed=True, digits=difference_digits)
        lines.append(
            f"| {row['per_class']} | {row['head']} | {_cell(row[first])} | "
            f"{_cell(row[second])} | {difference} | {row['predictions_changed']:,} |"
        )
    notes = [
        f"- {row['per_class']} per class, {row['head']}: {note}"
        for row in report["rows"]
        for note in row.get("notes", [])
    ]
    return lines + (["", *notes] if notes else [])


def format_views(views: dict[str, Any]) -> list[str]:
    """The Markdown caption and table of a :func:`bench_views` report."""
    k = views["views"]
    return [
        f"Accuracy with 0 and {k} views (`--augment {views['augment']} --views {k}`) on "
        f"{_design(views)}:",
        "",
        *_paired_table(views, ("0 views", f"{k} views", f"{k} views − 0")),
    ]


def format_float16(float16: dict[str, Any]) -> list[str]:
    """The Markdown caption and table of a :func:`bench_float16_heads` report."""
    ratio = float16["size_ratio"]
    return [
        f"Accuracy with caches stored as float32 and float16 (`--store-dtype float16`) on "
        f"{_design(float16)}. float16 files are {ratio['test']['ratio']:.3f} × float32 "
        f"({ratio['test']['rows']:,} test rows; {ratio['train']['ratio']:.3f} × for a "
        f"{ratio['train']['rows']}-row draw: ids and labels do not shrink); features within "
        f"{float16['feature_max_abs_error']:.2g} of float32 (largest "
        f"{float16['feature_max_abs']:.3g}):",
        "",
        *_paired_table(float16, ("float32", "float16", "float16 − float32"), 4),
    ]


def format_accuracy(report: dict[str, Any]) -> list[str]:
    """Markdown tables of the ``views`` and ``float16_heads`` parts of a bench report."""
    lines: list[str] = []
    if report.get("views"):
        lines += ["", *format_views(report["views"])]
    if report.get("float16_heads"):
        lines += ["", *format_float16(report["float16_heads"])]
    return lines
