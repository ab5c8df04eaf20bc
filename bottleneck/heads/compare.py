"""Honest comparison of heads on cached features.

Every head is fitted and scored on the same rows: a held-out test cache (``test=``) or the
same stratified K folds of the training cache (``cv=K``). Each row of the result has
accuracy, balanced accuracy, macro-F1 and log-loss (where the head has probabilities), with
95 % intervals (:mod:`~bottleneck_transfer.heads.stats`: Clopper–Pearson for accuracy and
the percentile bootstrap for the others on a holdout; the Nadeau–Bengio corrected
t-interval over folds in CV); fit seconds and predict milliseconds per 1,000 rows, measured
with BLAS/OpenMP limited to one thread (:func:`~bottleneck.heads.single_threaded`) so that
heads are timed alike. The best head is tested against every other head (holdout: exact
McNemar; CV: Nadeau–Bengio corrected resampled t-test), Holm-adjusted within that family,
and a plain sentence says whether its lead is real.

Choices never see the reported rows (:mod:`~bottleneck_transfer.heads.selection`): in each
split the winning head, and the baseline row it is set against, are chosen on a validation
split of that split's fitting rows by one declared metric (``metric``; balanced accuracy
when classes are unequal and none is given). ``Comparison.selected`` is the chosen head's
score on the split's scored rows (in CV, each fold's chosen head on that fold), which no
choice saw: the number ``--assert-min-accuracy`` checks. Rows are ranked by their
validation score; their test scores are shown, never used to choose.

Baselines (transfer gain / negative transfer): extra feature sets of the same images, e.g.
raw pixels or a randomly initialised base, given as ``baselines={name: (train, test)}``. By
default the **winning head** is run on each baseline with the same splits (rows named
``HEAD@NAME``): the classic transfer gain, same head on other features, at the cost of one
head per baseline. ``baseline_heads="all"`` runs every head on every baseline, so the
baseline gets every chance the transferred features get (raw pixels are often best served
by another head), at the cost of a full comparison per baseline. The transfer gain is the
chosen head's accuracy minus the chosen baseline row's (both chosen on training rows), in
points, with its interval and p; the transfer test is a family of its own (Holm families:
:data:`FAMILIES`), so adding a baseline never changes a head-vs-head p. When it is not
significant the sentence says the base does not help on this data, when the baseline is
significantly better it says negative transfer.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.display import Display, cell
from bottleneck_transfer.errors import BottleneckWarning, HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.format import check_features
from bottleneck_transfer.features.sources import id_origin
from bottleneck_transfer.heads.calibration import calibration_report
from bottleneck_transfer.heads.declared import Metric, metric_named
from bottleneck_transfer.heads.memo import FitMemo, prediction_key
from bottleneck_transfer.heads.metrics import METRICS, row_losses, score
from bottleneck_transfer.heads.parallel import run_calls, use_workers
from bottleneck_transfer.heads.registry import (
    default_heads,
    make_head,
    single_threaded,
)
from bottleneck_transfer.heads.selection import (
    Candidate,
    Choice,
    choose,
    majority_rate,
    resolve_metric,
)
from bottleneck_transfer.heads.splits import holdout_split, plain_rows, stratified_folds
from bottleneck_transfer.heads.stats import (
    ALPHA,
    RANGES,
    cv_interval,
    family_tests,
    holdout_intervals,
)
from bottleneck_transfer.heads.streaming import check_streams
from bottleneck_transfer.heads.training import (
    DataInput,
    LabeledData,
    as_data,
    check_compatible,
    check_data,
    check_scorable,
    fit_head,
    memory_plan,
    predict_rows,
    take_ids,
    warn_duplicates,
)
from bottleneck_transfer.heads.tuning import TuneResult
from bottleneck_transfer.quiet import muted_backend_start
from tqdm.auto import tqdm

#: The registry's default heads (:func:`~bottleneck_transfer.heads.registry.default_heads`).
DEFAULT_HEADS = default_heads()
BASELINE_HEADS = ("winner", "all")
#: The Holm families: heads tested against the winner, and the winner against the baselines.
FAMILIES = ("heads vs winner", "transfer")

BaselineInput = DataInput | np.ndarray


class NegativeTransferWarning(BottleneckWarning):
    """A baseline (raw pixels, random base) beat the transferred features."""


@dataclass(repr=False)
class Row(Display):
    """One head on one feature set, scored on the comparison's rows."""

    name: str
    spec: str
    features: str
    metrics: dict[str, float | None]
    intervals: dict[str, tuple[float, float] | None]
    spread: dict[str, float | None]
    fold_metrics: list[dict[str, float | None]]
    fit_seconds: float
    predict_ms_per_1k: float
    tune_seconds: float
    tuning: list[TuneResult]
    notes: list[str]
    predictions: np.ndarray
    reused: bool = False
    test: dict[str, Any] | None = None
    rank: int = 0
    validation: float | None = None
    calibration: dict[str, Any] | None = None

    @property
    def is_baseline(self) -> bool:
        """Whether the row is a head on baseline features."""
        return self.features != "main"

    _display_bar = ("metric", "value")

    def _display_summary(self) -> dict[str, Any]:
        return {
            "head": self.name,
            "spec": self.spec,
            "features": self.features,
            "rank": self.rank,
            "fit_seconds": self.fit_seconds,
            "notes": "; ".join(self.notes) or None,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per metric: its value and 95% interval."""
        return [
            {
                "metric": key,
                "value": value,
                "value_low": (self.intervals.get(key) or (None, None))[0],
                "value_high": (self.intervals.get(key) or (None, None))[1],
            }
            for key, value in self.metrics.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row (without per-row predictions)."""
        return {
            "name": self.name,
            "spec": self.spec,
            "features": self.features,
            "rank": self.rank,
            "validation_score": self.validation,
            "metrics": self.metrics,
            "intervals_95": {k: list(v) if v else None for k, v in self.intervals.items()},
            "spread_std": self.spread,
            "fold_metrics": self.fold_metrics,
            "fit_seconds": self.fit_seconds,
            "predict_ms_per_1k": self.predict_ms_per_1k,
            "tune_seconds": self.tune_seconds,
            "tuning": [t.to_dict() for t in self.tuning],
            "reused": self.reused,
            "notes": self.notes,
            "vs_winner": self.test,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> Row:
        """Rebuild a row from :meth:`to_dict`, without its per-row predictions (empty) or its
        tuning splits' row indices (empty)."""
        empty = np.empty(0, dtype=np.int64)
        return cls(
            name=summary["name"],
            spec=summary["spec"],
            features=summary["features"],
            metrics=summary["metrics"],
            intervals={k: tuple(v) if v else None for k, v in summary["intervals_95"].items()},
            spread=summary["spread_std"],
            fold_metrics=summary["fold_metrics"],
            fit_seconds=summary["fit_seconds"],
            predict_ms_per_1k=summary["predict_ms_per_1k"],
            tune_seconds=summary["tune_seconds"],
            tuning=[TuneResult.from_dict(t, empty, empty) for t in summary["tuning"]],
            notes=summary["notes"],
            predictions=empty,
            reused=summary["reused"],
            test=summary["vs_winner"],
            rank=summary["rank"],
            validation=summary["validation_score"],
            calibration=summary["calibration"],
        )


@dataclass(repr=False)
class Comparison(Display):
    """The result of :func:`compare_heads`; ``rows`` are ranked, main features first.

    ``splits`` are ``(fit_rows, eval_rows)`` index pairs into the training cache (CV), or
    one pair ``(all training rows, all test rows)`` where the second indexes the test cache
    (holdout). ``eval_ids``/``eval_labels`` are the rows every head was scored on, in the
    order of each row's ``predictions``. ``metric`` decided every choice; ``choices`` (and
    ``baseline_choices``) are those of each split, made on its fitting rows only;
    ``selected`` is the chosen head scored on rows no choice saw (and ``selected_baseline``
    the chosen baseline row); ``majority_rate`` is the accuracy of always guessing the
    largest class on the scored rows.
    """

    mode: str
    n_folds: int | None
    class_names: list[str]
    caches: dict[str, Any]
    splits: list[tuple[np.ndarray, np.ndarray]]
    eval_ids: Sequence[str]
    eval_labels: np.ndarray
    rows: list[Row]
    winner: str
    verdict: str
    transfer: dict[str, Any] | None
    warnings: list[str]
    seconds: float
    n_bootstrap: int
    random_state: int
    tuned: bool = False
    eval_folds: list[np.ndarray] | None = None
    test_fraction: float | None = None
    metric: str = "accuracy"
    choices: list[Choice] = dataclasses.field(default_factory=list)
    baseline_choices: list[Choice] = dataclasses.field(default_factory=list)
    selected: Row | None = None
    selected_baseline: Row | None = None
    majority_rate: float | None = None
    memory: dict | None = None

    def row(self, name: str) -> Row:
        """The row named ``name`` (e.g. ``"logreg"`` or ``"logreg@raw-pixels"``)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    @property
    def best(self) -> Row:
        """The winning row."""
        return self.row(self.winner)

    _display_bar = ("head", "score")

    def _display_summary(self) -> dict[str, Any]:
        chosen = self.selected or self.best
        score = cell(chosen.metrics.get(metric_named(self.metric).key))
        folds = f", {self.n_folds} folds" if self.n_folds else ""
        return {
            "mode": f"{self.mode}{folds}, {len(self.eval_labels)} rows scored",
            "metric": self.metric,
            "chosen": f"{chosen.name} ({self.metric} {score} on rows no choice saw)",
            "verdict": self.verdict,
            "warnings": len(self.warnings),
            "seconds": self.seconds,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per head (and baseline): rank, the deciding metric with its 95% interval
        (``score``), every metric, times and the Holm-adjusted p against the winner."""
        key = metric_named(self.metric).key
        rows = []
        for row in self.rows:
            low, high = row.intervals.get(key) or (None, None)
            rows.append(
                {
                    "head": row.name,
                    "rank": row.rank,
                    "score": row.metrics.get(key),
                    "score_low": low,
                    "score_high": high,
                    **row.metrics,
                    "fit_seconds": row.fit_seconds,
                    "predict_ms_per_1k": row.predict_ms_per_1k,
                    "p_vs_winner": None if row.test is None else row.test.get("p_holm"),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "mode": self.mode,
            "n_folds": self.n_folds,
            "n_eval_rows": len(self.eval_labels),
            "class_names": self.class_names,
            "caches": self.caches,
            "tuned": self.tuned,
            "winner": self.winner,
            "metric": self.metric,
            "majority_rate": self.majority_rate,
            "selection": {
                "made_on": "a validation split of each split's fitting rows only",
                "choices": [c.to_dict() for c in self.choices],
                "baseline_choices": [c.to_dict() for c in self.baseline_choices],
                "chosen": None if self.selected is None else self.selected.name,
                "held_out_metrics": None if self.selected is None else self.selected.metrics,
                "held_out_intervals_95": None
                if self.selected is None
                else {k: list(v) if v else None for k, v in self.selected.intervals.items()},
                "held_out_spread_std": None if self.selected is None else self.selected.spread,
            },
            "verdict": self.verdict,
            "transfer": self.transfer,
            "rows": [row.to_dict() for row in self.rows],
            "warnings": self.warnings,
            "seconds": self.seconds,
            "n_bootstrap": self.n_bootstrap,
            "random_state": self.random_state,
            "memory": self.memory,
        }

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> Comparison:
        """Rebuild what :func:`~bottleneck_transfer.heads.report.format_table` prints from
        :meth:`to_dict` (a ``report.json``): the rows, verdict and settings, without per-row
        predictions, splits or the choices and their held-out row (empty)."""
        empty = np.empty(0, dtype=np.int64)
        return cls(
            mode=summary["mode"],
            n_folds=summary["n_folds"],
            class_names=summary["class_names"],
            caches=summary["caches"],
            splits=[],
            eval_ids=[],
            eval_labels=empty,
            rows=[Row.from_dict(row) for row in summary["rows"]],
            winner=summary["winner"],
            verdict=summary["verdict"],
            transfer=summary["transfer"],
            warnings=summary["warnings"],
            seconds=summary["seconds"],
            n_bootstrap=summary["n_bootstrap"],
            random_state=summary["random_state"],
            tuned=summary["tuned"],
            metric=summary["metric"],
            majority_rate=summary["majority_rate"],
        )


@dataclass
class _Fold:
    predictions: np.ndarray
    proba: np.ndarray | None
    classes: np.ndarray
    fit_seconds: float
    predict_seconds: float
    tuning: TuneResult | None
    notes: list[str]
    reused: bool


@dataclass(frozen=True)
class _Fitting:
    """What every fit of one comparison shares (sent as it is to worker processes)."""

    tune: bool
    random_state: int
    n_jobs: int | None
    memo: FitMemo | None
    metric: str = "accuracy"


def _fit_predict(
    spec: str,
    fit_data: LabeledData,
    fit_rows: np.ndarray,
    eval_data: LabeledData,
    eval_rows: np.ndarray,
    fitting: _Fitting,
) -> _Fold:
    """Fit on ``fit_rows`` of ``fit_data`` and predict ``eval_rows`` of ``eval_data``.

    With a memo, the fit and its predictions are stored by key; when both were stored
    before, the head is neither fitted nor loaded.
    """
    memo = fitting.memo
    fit = fit_head(
        spec,
        fit_data,
        fit_rows,
        tune=fitting.tune,
        random_state=fitting.random_state,
        n_jobs=fitting.n_jobs,
        memo=memo,
        metric=fitting.metric,
    )
    key = prediction_key(fit.key, eval_data.key, eval_rows)
    stored = None if memo is None else memo.load_predictions(key)
    if stored is None:
        head = fit.estimator
        with single_threaded():
            start = time.perf_counter()
            predictions, proba = predict_rows(head, eval_data, eval_rows)
            seconds = time.perf_counter() - start
        arrays = {"predictions": predictions, "classes": head.classes_}
        if proba is not None:
            arrays["proba"] = proba
        if memo is not None:
            memo.save_predictions(key, {"seconds": seconds}, **arrays)
    else:
        arrays, seconds = stored, stored["meta"]["seconds"]
    return _Fold(
        predictions=arrays["predictions"],
        proba=arrays.get("proba"),
        classes=arrays["classes"],
        fit_seconds=fit.seconds,
        predict_seconds=seconds,
        tuning=fit.tuning,
        notes=fit.notes,
        reused=fit.reused and stored is not None,
    )


def _fit_predict_in_worker(*call: Any) -> _Fold:
    """:func:`_fit_predict` in a worker process, whose Keras backend (a dense head's) starts
    without its C++ start-up chatter on the user's terminal."""
    muted_backend_start()
    return _fit_predict(*call)


def _choose(candidates: list[Candidate], rows: np.ndarray, settings: dict[str, Any]) -> Choice:
    return choose(candidates, rows, **settings)


def _choose_in_worker(*call: Any) -> Choice:
    """:func:`_choose` in a worker process (the backend started quietly, as for fits)."""
    muted_backend_start()
    return _choose(*call)


def _choices(
    calls: list[tuple[list[Candidate], np.ndarray]],
    settings: dict[str, Any],
    n_jobs: int | None,
    n_values: int,
) -> list[Choice]:
    """Each split's choice (:func:`.selection.choose` of its candidates on its fitting
    rows): over worker processes like the fits when the data is large, each choice's fits
    seeded, so the same choices."""
    workers = use_workers(len(calls), n_jobs, n_values)
    inner = {**settings, "n_jobs": 1 if workers else n_jobs}
    return list(
        run_calls(
            _choose_in_worker if workers else _choose,
            [(candidates, rows, inner) for candidates, rows in calls],
            n_jobs=n_jobs,
            workers=workers,
        )
    )


def _mean_metrics(folds: list[dict[str, float | None]]) -> tuple[dict, dict]:
    means: dict[str, float | None] = {}
    spread: dict[str, float | None] = {}
    for metric in METRICS:
        values = [f[metric] for f in folds]
        if any(v is None for v in values):
            means[metric] = spread[metric] = None
        else:
            means[metric] = float(np.mean(values))
            spread[metric] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return means, spread


Task = tuple[str, str, LabeledData, LabeledData | None]  # spec, features, train, test


def _fit_tasks(
    tasks: list[Task], splits: list[tuple[np.ndarray, np.ndarray]], fitting: _Fitting, bar: tqdm
) -> list[list[_Fold]]:
    """Every fold of every task: fitted one after another, or over worker processes (one
    fit per core; ``fitting.n_jobs``) when the data is large enough
    (:func:`.parallel.use_workers`). Each fit is seeded, so both give the same folds."""
    calls = [
        (spec, train, fit_rows, train if test is None else test, eval_rows)
        for spec, _, train, test in tasks
        for fit_rows, eval_rows in splits
    ]
    streaming = tasks[0][2].chunk_rows is not None  # one reader of the file at a time
    workers = not streaming and use_workers(len(calls), fitting.n_jobs, tasks[0][2].X.size)
    inner = dataclasses.replace(fitting, n_jobs=1) if workers else fitting  # cores to the fits
    folds = run_calls(
        _fit_predict_in_worker if workers else _fit_predict,
        [(*call, inner) for call in calls],
        n_jobs=fitting.n_jobs,
        workers=workers,
    )
    done = []
    bar.set_postfix_str(calls[0][0], refresh=False)
    for i, fold in enumerate(folds, start=1):
        done.append(fold)
        bar.set_postfix_str(calls[min(i, len(calls) - 1)][0], refresh=False)
        bar.update()
    return [done[i : i + len(splits)] for i in range(0, len(done), len(splits))]


def _evaluate(
    task: Task,
    folds: list[_Fold],
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    scored: np.ndarray,
    random_state: int,
    n_bootstrap: int,
    test_fraction: float | None,
) -> tuple[Row, dict[str, np.ndarray]]:
    """The row of one head on one feature set, from its fitted folds: holdout intervals on
    the test rows, or corrected intervals over the folds (CV, ``test_fraction`` set)."""
    spec, features, train, test = task
    n_classes = len(train.class_names)
    name = spec if features == "main" else f"{spec}@{features}"
    if test is not None:
        y_eval = test.y
        predictions = folds[0].predictions
        fold_metrics = [score(test.y, predictions, folds[0].proba, folds[0].classes)]
    else:
        predictions = np.empty_like(train.y)
        fold_metrics = []
        for (_, eval_rows), fold in zip(splits, folds, strict=True):
            predictions[eval_rows] = fold.predictions
            fold_metrics.append(
                score(train.y[eval_rows], fold.predictions, fold.proba, fold.classes)
            )
        predictions, y_eval = predictions[scored], train.y[scored]
    if test is not None:
        metrics, spread = fold_metrics[0], dict.fromkeys(METRICS)
        fold = folds[0]
        losses = None if fold.proba is None else row_losses(y_eval, fold.proba, fold.classes)
    else:
        metrics, spread = _mean_metrics(fold_metrics)
        losses = None
        if all(f.proba is not None for f in folds):
            losses = np.empty(len(train.y))
            for (_, eval_rows), fold in zip(splits, folds, strict=True):
                losses[eval_rows] = row_losses(train.y[eval_rows], fold.proba, fold.classes)
            losses = losses[scored]
    intervals, replicates = holdout_intervals(
        y_eval, predictions, n_classes, losses, n_boot=n_bootstrap, seed=random_state
    )
    if test is None:
        intervals = {
            m: None
            if pooled is None
            else cv_interval(
                [f[m] for f in fold_metrics], test_fraction, bounds=RANGES[m], pooled=pooled
            )
            for m, pooled in intervals.items()
        }
    notes = sorted({note for fold in folds for note in fold.notes})
    if any(fold.proba is None for fold in folds):
        proba = None
    elif test is not None:
        proba = _all_columns(folds[0], n_classes)
    else:  # each training row's probabilities from the fold that held it out
        proba = np.zeros((len(train.y), n_classes))
        for (_, eval_rows), fold in zip(splits, folds, strict=True):
            proba[eval_rows] = _all_columns(fold, n_classes)
        proba = proba[scored]
    row = Row(
        name=name,
        spec=spec,
        features=features,
        metrics=metrics,
        intervals=intervals,
        spread=spread,
        fold_metrics=fold_metrics if test is None else [],
        fit_seconds=float(np.mean([f.fit_seconds for f in folds])),
        predict_ms_per_1k=sum(f.predict_seconds for f in folds) / len(y_eval) * 1e6,
        tune_seconds=sum(f.tuning.seconds for f in folds if f.tuning is not None),
        tuning=[f.tuning for f in folds if f.tuning is not None],
        notes=notes,
        predictions=predictions,
        reused=all(f.reused for f in folds),
        calibration=calibration_report(spec, y_eval, proba, n_classes),
    )
    return row, replicates


def _all_columns(fold: _Fold, n_classes: int) -> np.ndarray:
    """A fold's probabilities with a column for every class (0 for one it never saw)."""
    proba = np.zeros((len(fold.proba), n_classes))
    proba[:, np.asarray(fold.classes, np.int64)] = fold.proba
    return proba


def _baseline_data(
    name: str, value: BaselineInput, reference: LabeledData, role: str
) -> LabeledData:
    if isinstance(value, np.ndarray):
        if len(value) != len(reference):
            raise HeadError(
                f"baseline {name!r} ({role}) has {len(value)} rows; the {role} cache has "
                f"{len(reference)}"
            )
        data = LabeledData.from_arrays(
            value,
            reference.y,
            ids=reference.ids,
            class_names=reference.class_names,
            source=f"baseline {name} ({role})",
        )
        return dataclasses.replace(data, source_rows=reference.source_rows, linked=reference.linked)
    data = as_data(value, what=f"baseline {name!r}")
    if data.class_names != reference.class_names:
        raise HeadError(
            f"baseline {name!r} ({role}, {data.space.source}) has class names "
            f"{data.class_names}; the {role} cache has {reference.class_names}"
        )
    if data.ids != reference.ids:
        mismatch = next(
            (i for i, (a, b) in enumerate(zip(data.ids, reference.ids, strict=False)) if a != b),
            min(len(data.ids), len(reference.ids)),
        )
        raise HeadError(
            f"baseline {name!r} ({role}, {data.space.source}) must hold the same images in the "
            f"same order as the {role} cache: {len(data.ids)} vs {len(reference.ids)} rows, "
            f"first difference at row {mismatch}"
        )
    if not np.array_equal(data.y, reference.y):
        raise HeadError(f"baseline {name!r} ({role}) has other labels than the {role} cache")
    return data


def _cache_summary(data: LabeledData) -> dict[str, Any]:
    return {
        "path": data.space.source,
        "fingerprint": data.fingerprint,
        "rows": len(data),
        "dim": data.space.dim,
        "base": data.space.base,
    }


def _origin(data: LabeledData) -> str:
    """The :func:`~bottleneck_transfer.features.sources.id_origin` of a cache's data."""
    if not Path(data.space.source).is_file():
        return ""
    with FeatureCache.open(data.space.source) as cache:
        return id_origin(cache.provenance.get("source", {}))


def _check_disjoint(train: LabeledData, test: LabeledData) -> None:
    """Refuse a test set holding training images: the same data, or shared ids of one source.

    Raises
    ------
    HeadError
        Naming some of the shared ids and how many there are.
    """
    if train.key == test.key:
        shared = test.ids
    elif (origin := _origin(train)) and origin == _origin(test):
        seen = set(train.ids)
        shared = [i for i in test.ids if i in seen]
    else:
        return
    if shared:
        raise HeadError(
            f"the test cache {test.space.source} holds {len(shared)} of the training images "
            f"of {train.space.source} (e.g. {', '.join(shared[:3])}): scores on images a head "
            "was fitted on are no test; extract other images for --test, or use --cv K or "
            "--val-split F"
        )


def _check_setup(
    specs: list[str], test: object, cv: int | None, baseline_heads: str, val_split: float | None
) -> int | None:
    if sum(x is not None for x in (test, cv, val_split)) > 1:
        raise HeadError(
            "give only one of a test cache, --cv K or --val-split F. Received: "
            f"test={test!s}, cv={cv}, val_split={val_split}"
        )
    if test is None and val_split is None:
        cv = 5 if cv is None else cv
        if cv < 2:
            raise HeadError(f"--cv needs at least 2 folds. Received: cv={cv}")
    if not specs:
        raise HeadError("no heads to compare")
    for spec in specs:
        make_head(spec)
    if len(set(specs)) != len(specs):
        raise HeadError(f"each head may be listed once. Received: heads={specs}")
    if baseline_heads not in BASELINE_HEADS:
        raise HeadError(
            f"baseline_heads must be one of {', '.join(BASELINE_HEADS)}. "
            f"Received: baseline_heads={baseline_heads!r}"
        )
    return cv


def _baseline_sets(
    baselines: Mapping[str, tuple[BaselineInput, BaselineInput | None]],
    train: LabeledData,
    test: LabeledData | None,
) -> list[tuple[str, LabeledData, LabeledData | None]]:
    sets = []
    for name, (base_train, base_test) in baselines.items():
        if test is not None and base_test is None:
            raise HeadError(
                f"baseline {name!r} needs a test feature set too when comparing on a test cache"
            )
        fit_data = _baseline_data(name, base_train, train, "train")
        eval_data = None if test is None else _baseline_data(name, base_test, test, "test")
        for data in [d for d in (fit_data, eval_data) if d is not None]:
            check_features(data.X, data.ids, data.space.source)
        sets.append((name, fit_data, eval_data))
    return sets


def compare_heads(
    train: DataInput,
    test: DataInput | None = None,
    *,
    heads: Sequence[str] = DEFAULT_HEADS,
    cv: int | None = None,
    tune: bool = False,
    baselines: Mapping[str, tuple[BaselineInput, BaselineInput | None]] | None = None,
    baseline_heads: str = "winner",
    n_bootstrap: int = 1000,
    random_state: int = 0,
    n_jobs: int | None = -1,
    memo: FitMemo | None = None,
    val_split: float | None = None,
    progress: bool | None = None,
    metric: str | None = None,
    memory_budget: str | int | None = None,
    out_of_core: bool = False,
) -> Comparison:
    """Fit every head on the same splits and compare them honestly.

    Parameters
    ----------
    train : FeatureCache, path, LabeledData or arrays (X, y)
        Training cache (:func:`~bottleneck_transfer.heads.training.as_data`); its features
        are read once.
    test : FeatureCache, path, LabeledData or arrays (X, y), optional
        Held-out cache from the same base and classes. Without it, ``cv`` folds are used.
    heads : sequence of str
        Head specs, e.g. ``("logreg", "dense:hidden=256")``.
    cv : int, optional
        Number of stratified folds (default 5 when there is no ``test``).
    tune : bool, default=False
        Tune each head on a validation split of its training rows only (nested in CV).
    baselines : mapping, optional
        ``name -> (train, test)`` feature sets of the same images in the same order (caches,
        LabeledData, or feature arrays); ``test`` is None in CV mode.
    baseline_heads : {"winner", "all"}, default="winner"
        Run the winning head on each baseline (the classic transfer gain: same head, other
        features), or every head (the baseline's best head may differ; slower).
    n_bootstrap : int, default=1000
        Bootstrap resamples for the intervals of balanced accuracy, macro-F1 and log-loss.
    random_state : int, default=0
        Seeds folds, heads, tuning splits and the bootstrap.
    n_jobs : int or None, default=-1
        Cores for the fits: folds and heads go to worker processes when the features are
        large (:data:`.parallel.PARALLEL_MIN_VALUES`), else tuning trials run in parallel; -1 uses
        every core. Results do not depend on it.
    memo : FitMemo, optional
        Where fits and their predictions are stored by key: a row whose every fit was stored
        before is not refitted (``Row.reused``).
    val_split : float, optional
        Without a test cache: hold out this share of each class of ``train`` (stratified,
        seeded by ``random_state``), fit on the rest and score as a holdout. The split is
        recorded in ``Comparison.caches``.
    progress : bool, optional
        A progress bar over the fits (heads x folds, then baselines) with the time left
        (default: only on a terminal).
    metric : str, optional
        The metric that decides tuning, the choice of head and baseline, and the verdict
        (:data:`~bottleneck_transfer.heads.metrics.METRIC_NAMES`); default accuracy, or
        balanced accuracy when the training classes are unequal (said in the warnings).
    memory_budget : str or int, optional
        Above it (:func:`~bottleneck_transfer.heads.training.memory_plan`) every head streams
        the caches in chunks, splits kept as row indices; ``Comparison.memory`` says which
        path ran.
    out_of_core : bool, default=False
        Stream whatever the size.

    Returns
    -------
    Comparison

    Raises
    ------
    HeadError
        For incompatible caches, unusable labels or bad head specs.

    Examples
    --------
    >>> comparison = compare_heads(
    ...     "caches/fm-train.h5", test="caches/fm-test.h5", heads=["logreg", "linear-svm"]
    ... )
    >>> comparison.best.spec
    'logreg'
    >>> print(comparison.verdict)  # doctest: +SKIP
    logreg ranks first (accuracy 0.920), ...
    """
    start = time.perf_counter()
    specs = list(heads)
    cv = _check_setup(specs, test, cv, baseline_heads, val_split)
    plan = memory_plan(train, memory_budget, force=out_of_core)
    n_jobs = plan.jobs(n_jobs)  # each worker process holds its own copies: as the budget allows
    if plan.streaming:
        for spec in specs:
            check_streams(spec, "the features exceed the memory budget")
    train_data = as_data(train, what="train", plan=plan)
    test_data = as_data(test, what="test", plan=plan) if test is not None else None
    fit_rows = np.arange(len(train_data))
    split = None
    if val_split is not None:
        split = {"val_split": val_split, "seed": random_state}
        fit_rows, held = holdout_split(
            train_data.y, train_data.groups, val_split, random_state, linked=train_data.linked
        )
    messages = check_data(train_data, min_per_class=cv or 1)
    deciding, note = resolve_metric(
        metric, train_data.y[train_data.plain], len(train_data.class_names), specs
    )
    if note:
        messages.append(note)
    if test_data is not None:
        check_scorable(test_data)
    if test_data is not None:
        check_compatible(train_data.space, test_data.space, what="test cache")
        _check_disjoint(train_data, test_data)
        check_data(test_data, min_classes=1)
    messages += warn_duplicates(train_data, test_data)
    baseline_sets = _baseline_sets(baselines or {}, train_data, test_data)
    if split is not None:
        # only predicted on, a block at a time: the held-out rows are not copied
        test_data = train_data.take(held, copy=False)
        baseline_sets = [(n, d, d.take(held, copy=False)) for n, d, _ in baseline_sets]
    if test_data is None:
        splits = stratified_folds(
            train_data.y, train_data.groups, cv, random_state, linked=train_data.linked
        )
        scored = plain_rows(train_data.groups)
        eval_folds = [np.searchsorted(scored, e) for _, e in splits]
        test_fraction = float(np.mean([len(e) / (len(scored) - len(e)) for e in eval_folds]))
    else:
        splits = [(fit_rows, np.arange(len(test_data)))]
        scored = eval_folds = test_fraction = None
    per_baseline = len(specs) if baseline_heads == "all" else 1
    bar = tqdm(
        total=len(splits) * (len(specs) + per_baseline * len(baseline_sets)),
        unit="fit",
        desc="compare",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    fitting = _Fitting(tune, random_state, n_jobs, memo, deciding.name)
    choosing = {"metric": deciding, "tune": tune, "random_state": random_state, "memo": memo}

    def choose_on(calls: list[tuple[list[Candidate], np.ndarray]]) -> list[Choice]:
        # Streamed features stay in one process: one reader of the file at a time.
        in_memory = train_data.chunk_rows is None
        return _choices(calls, choosing, n_jobs, train_data.X.size if in_memory else 0)

    def evaluate(tasks: list[Task]) -> list[tuple[Row, dict[str, np.ndarray]]]:
        folds = _fit_tasks(tasks, splits, fitting, bar)
        return [
            _evaluate(
                task,
                task_folds,
                splits,
                scored=scored,
                random_state=random_state,
                n_bootstrap=n_bootstrap,
                test_fraction=test_fraction,
            )
            for task, task_folds in zip(tasks, folds, strict=True)
        ]

    with bar:
        results = evaluate([(spec, "main", train_data, test_data) for spec in specs])
        choices = choose_on([([(s, s, train_data) for s in specs], fit) for fit, _ in splits])
        winner_name = _most_chosen(choices)
        chosen_specs = list(dict.fromkeys(c.chosen for c in choices))
        baseline_specs = specs if baseline_heads == "all" else chosen_specs
        tasks = [
            (spec, name, fit_data, eval_data)
            for name, fit_data, eval_data in baseline_sets
            for spec in baseline_specs
        ]
        if tasks:
            results += evaluate(tasks)
        baseline_choices = choose_on(
            [
                (
                    [
                        (f"{spec}@{name}", spec, data)
                        for name, data, _ in baseline_sets
                        for spec in (specs if baseline_heads == "all" else [choice.chosen])
                    ],
                    fit,
                )
                for choice, (fit, _) in zip(choices, splits, strict=True)
                if baseline_sets
            ]
        )
    by_name = {row.name: row for row, _ in results}
    _set_validation(by_name, [*choices, *baseline_choices])
    winner = by_name[winner_name]
    baseline_name = _most_chosen(baseline_choices) if baseline_choices else None
    rows = _rank([row for row, _ in results], deciding, {winner_name, baseline_name})
    cv_mode = test_data is None
    if cv_mode:
        eval_ids, eval_labels = take_ids(train_data.ids, scored), train_data.y[scored]
    else:
        eval_ids, eval_labels = test_data.ids, test_data.y
    _test_against(winner, rows, eval_labels, eval_folds, test_fraction)
    main_rows = [r for r in rows if not r.is_baseline]
    selected = _selected(by_name, choices, eval_folds)
    majority = majority_rate(eval_labels)
    verdict = _verdict(winner, selected, main_rows[1:], majority, deciding, choices)
    transfer = selected_baseline = None
    if baseline_choices:
        selected_baseline = _selected(by_name, baseline_choices, eval_folds)
        transfer = _transfer(selected, selected_baseline, eval_labels, eval_folds, test_fraction)
        if transfer["verdict"] == "negative":
            warnings.warn(transfer["sentence"], NegativeTransferWarning, stacklevel=2)
    caches = {"train": _cache_summary(train_data)}
    if test_data is not None:
        caches["test"] = _cache_summary(test_data)
    if split is not None:
        caches["train"].update(rows=len(fit_rows), split={**split, "part": "train"})
        caches["test"]["split"] = {**split, "part": "val"}
    for name, fit_data, eval_data in baseline_sets:
        caches[f"baseline:{name}"] = {
            "train": _cache_summary(fit_data),
            "test": None if eval_data is None else _cache_summary(eval_data),
        }
    return Comparison(
        mode="cv" if cv_mode else "holdout",
        n_folds=cv,
        class_names=train_data.class_names,
        caches=caches,
        splits=splits,
        eval_ids=eval_ids,
        eval_labels=eval_labels,
        rows=rows,
        winner=winner.name,
        verdict=verdict,
        transfer=transfer,
        warnings=messages,
        seconds=time.perf_counter() - start,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        tuned=tune,
        eval_folds=eval_folds,
        test_fraction=test_fraction,
        metric=deciding.name,
        choices=choices,
        baseline_choices=baseline_choices,
        selected=selected,
        selected_baseline=selected_baseline,
        majority_rate=majority,
        memory=plan.measure().to_dict(),
    )


def _most_chosen(choices: list[Choice]) -> str:
    """The candidate chosen in most splits (the first chosen among equals)."""
    return Counter(c.chosen for c in choices).most_common(1)[0][0]


def _set_validation(by_name: dict[str, Row], choices: list[Choice]) -> None:
    """Each row's mean validation score over the splits whose choice scored it."""
    for name, row in by_name.items():
        values = [c.scores.get(name) for c in choices if name in c.scores]
        if values and all(v is not None for v in values):
            row.validation = float(np.mean(values))


def _rank(rows: list[Row], metric: Metric, chosen: set[str | None]) -> list[Row]:
    """Main rows first, the chosen row first within each part, then by validation score
    (rows never scored on validation keep their order): no test score decides."""

    def key(row: Row) -> tuple:
        return (row.is_baseline, row.name not in chosen, metric.sort_key(row.validation))

    ranked = sorted(rows, key=key)
    for rank, row in enumerate(ranked, start=1):
        row.rank = rank
    return ranked


def _selected(
    by_name: dict[str, Row], choices: list[Choice], eval_folds: list[np.ndarray] | None
) -> Row:
    """The chosen row, scored on rows no choice saw: holdout, the chosen row itself; CV, each
    fold's chosen head on that fold (a row of its own when the folds chose differently)."""
    names = [c.chosen for c in choices]
    first = by_name[names[0]]
    if len(set(names)) == 1:
        return first
    predictions = first.predictions.copy()
    fold_metrics = []
    for k, (name, positions) in enumerate(zip(names, eval_folds, strict=True)):
        predictions[positions] = by_name[name].predictions[positions]
        fold_metrics.append(by_name[name].fold_metrics[k])
    metrics, spread = _mean_metrics(fold_metrics)
    counted = ", ".join(f"{name} x{n}" for name, n in Counter(names).most_common())
    return dataclasses.replace(
        first,
        name=f"chosen per fold ({counted})",
        metrics=metrics,
        spread=spread,
        fold_metrics=fold_metrics,
        predictions=predictions,
        test=None,
        validation=float(np.mean([c.score for c in choices if c.score is not None] or [np.nan])),
    )


def held_out_text(row: Row, key: str) -> str:
    """``value [low, high]`` (holdout) or ``value ± std`` (CV) of one metric of a row."""
    value = row.metrics.get(key)
    if value is None:
        return "n/a"
    bounds, spread = row.intervals.get(key), row.spread.get(key)
    if bounds:
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"
    return f"{value:.3f} ± {spread:.3f}" if spread is not None else f"{value:.3f}"


def _choice_text(winner: Row, choices: list[Choice], metric: Metric) -> str:
    """How the winner was chosen: on which rows, by which score (its validation score)."""
    if len(choices) == 1:
        choice = choices[0]
        if choice.score is None:
            return f"{winner.name} is reported ({choice.reason})"
        return f"{winner.name} was chosen on training rows only ({choice.reason})"
    n = sum(c.chosen == winner.name for c in choices)
    return (
        f"{winner.name} was chosen in {n} of {len(choices)} folds, each on its fold's training "
        f"rows only (mean validation {metric.name} "
        + ("n/a" if winner.validation is None else f"{winner.validation:.3f}")
        + ")"
    )


def _test_against(
    winner: Row,
    rows: list[Row],
    labels: np.ndarray,
    eval_folds: list[np.ndarray] | None,
    test_fraction: float | None,
) -> None:
    """Test the winner against every other row (:func:`.stats.family_tests`), Holm-adjusted
    within each of :data:`FAMILIES`: the other heads on the main features, and the baseline
    rows."""
    correct = winner.predictions == labels
    heads = [row for row in rows if row is not winner and not row.is_baseline]
    baselines = [row for row in rows if row.is_baseline]
    for family, others in zip(FAMILIES, (heads, baselines), strict=True):
        pairs = [(correct, other.predictions == labels) for other in others]
        tests = family_tests(pairs, family, eval_folds, test_fraction)
        for other, test in zip(others, tests, strict=True):
            other.test = test


def _gap(test: dict[str, Any]) -> tuple[float, str, list[float]]:
    """Accuracy gap in points, its interval text, and the interval, of one paired test (one
    computation gives the gap, the interval and the p)."""
    low, high = test["interval_points"]
    text = f"{100 * test['level']:.4g}% CI {low:+.1f} to {high:+.1f}"
    return test["gap_points"], text, [low, high]


def _verdict(
    winner: Row,
    selected: Row,
    others: list[Row],
    majority: float,
    metric: Metric,
    choices: list[Choice],
) -> str:
    held = (
        f"{metric.name} {held_out_text(selected, metric.key)}"
        + (f", accuracy {selected.metrics['accuracy']:.3f}" if metric.key != "accuracy" else "")
        + f"; majority-class rate {majority:.3f}"
    )
    if not others:
        return f"Only one head was compared: {winner.name} ({held}, on rows no choice saw)."
    runner = others[0]
    gap, gap_text, _ = _gap(runner.test)
    who = "the chosen heads" if selected is not winner else "it"
    lead = (
        f"{_choice_text(winner, choices, metric)}. On rows that played no part in any choice "
        f"{who} scored {held}; {winner.name} is {gap:+.1f} accuracy points vs "
        f"{runner.name} ({gap_text})"
    )
    tied = [row.name for row in others if row.test["p_holm"] >= ALPHA]
    p, method = runner.test["p_holm"], runner.test["method"]
    if gap < 0 and p < ALPHA:
        return (
            f"{lead}. On these rows {runner.name} does significantly better ({method} p = "
            f"{p:.2g}, Holm-adjusted): the choice on training rows did not carry over."
        )
    if not tied:
        rest = " and every other head is significantly worse" if len(others) > 1 else ""
        return f"{lead}. The lead is real: {method} p = {p:.2g} (Holm-adjusted){rest}."
    verb = "is" if len(tied) == 1 else "are"
    return (
        f"{lead}. The {'lead' if gap >= 0 else 'difference'} is NOT significant: "
        f"{', '.join(tied)} {verb} statistically tied "
        f"with {winner.name} ({method}, Holm-adjusted p = {p:.2g} vs {runner.name} ≥ {ALPHA}); "
        "pick among them on speed or simplicity."
    )


#: The transfer verdict's words when the base does not beat the baseline by more than its
#: interval, and when the baseline is significantly better.
NO_HELP = "this base does not help on this data"
NEGATIVE = "negative transfer"


def _transfer(
    winner: Row,
    best_baseline: Row,
    labels: np.ndarray,
    eval_folds: list[np.ndarray] | None,
    test_fraction: float | None,
) -> dict[str, Any]:
    """The chosen head against the chosen baseline row, both chosen on training rows: one
    test, the "transfer" family of its own (no choice among baselines is made on these rows)."""
    (test,) = family_tests(
        [(winner.predictions == labels, best_baseline.predictions == labels)],
        FAMILIES[1],
        eval_folds,
        test_fraction,
    )
    gap, gap_text, bounds = _gap(test)
    p, method = test["p_holm"], test["method"]
    significant = p < ALPHA
    chosen = "both chosen on training rows only"
    if significant and gap > 0:
        verdict = "gain"
        sentence = (
            f"Transfer gain: {winner.name} beats the baseline {best_baseline.name} by "
            f"{gap:.1f} accuracy points ({gap_text}; {method} p = {p:.2g}; {chosen})."
        )
    elif significant:
        verdict = "negative"
        sentence = (
            f"{NEGATIVE.capitalize()}: the baseline {best_baseline.name} beats {winner.name} by "
            f"{-gap:.1f} accuracy points ({gap_text}; {method} p = {p:.2g}; {chosen}); "
            "the transferred features hurt on this data."
        )
    else:
        verdict = "inconclusive"
        sentence = (
            f"No transfer gain: {NO_HELP} ({winner.name} vs the baseline "
            f"{best_baseline.name}: {gap:+.1f} accuracy points, {gap_text}; {method} "
            f"p = {p:.2g}, not significant; {chosen})."
        )
    return {
        "baseline": best_baseline.name,
        "gain_points": gap,
        "interval_points": bounds,
        "interval_kind": f"{100 * test['level']:.4g}% CI of the {test['method']} test",
        "p": p,
        "p_unadjusted": test["p"],
        "family_size": test["family_size"],
        "verdict": verdict,
        "sentence": sentence,
    }
