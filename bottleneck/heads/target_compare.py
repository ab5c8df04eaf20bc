"""Comparing heads on binary, multi-label and regression targets (class targets:
:mod:`~bottleneck_transfer.heads.compare`).

Every head of the registry that fits the cache's target kind
(:func:`~bottleneck_transfer.heads.registry.default_heads`) is fitted on the same folds (or on
the training cache, scored on a test cache) beside the *baseline* every head must beat: the
mean predictor (regression: the training rows' mean value), the prevalence predictor
(binary, multi-label: each tag's share of positive training rows, a constant score).

Inside each fold's training rows, 3 inner folds give every row an out-of-fold score. They
decide, on training rows only: the tuning grid's values (``tune``: the kind's coarse grid),
the threshold of binary and multi-label heads (:func:`~.target_metrics.choose_threshold`,
by F1 or ``cost_ratio``), and the validation score that chooses the winner. The head is then
fitted on all the fold's training rows and scores its held-out rows, which no choice saw.
Metrics (:data:`~.declared.TARGET_DECLARED`) come with 95% bootstrap intervals over the
scored rows (pooled over CV folds), and each head's difference from the baseline with a paired
bootstrap interval: it *beats the baseline* when that interval lies on the good side of 0.
Every split, outer and inner, keeps copies of one picture and declared groups
(:func:`~bottleneck_transfer.features.duplicates.cache_duplicates`) on one side.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.duplicates import cache_duplicates
from bottleneck_transfer.features.targets import Target
from bottleneck_transfer.heads.declared import Metric, target_metric
from bottleneck_transfer.heads.registry import (
    default_heads,
    head_kind,
    make_head,
    set_random_state,
    single_threaded,
)
from bottleneck_transfer.heads.splits import stratified_folds
from bottleneck_transfer.heads.target_metrics import (
    bootstrap_scores,
    choose_threshold,
    interval,
    per_tag_auc,
    point_scores,
)

BASELINES = {
    "regression": "mean predictor",
    "binary": "prevalence predictor",
    "multilabel": "prevalence predictor",
}
#: Inner folds of the training rows: out-of-fold scores for tuning, thresholds, the winner.
INNER_FOLDS = 3
#: Bins of a regression value that stratify the folds.
VALUE_BINS = 5


@dataclass
class TargetData:
    """Features, targets (labels, tag indicators or values) and target of one cache."""

    X: np.ndarray
    y: np.ndarray
    target: Target
    ids: list[str]
    #: Each row's group label (copies of one picture, declared groups), kept whole by every
    #: split; None when no two rows are tied.
    linked: np.ndarray | None = None

    @classmethod
    def read(cls, cache: FeatureCache | str | Path) -> TargetData:
        """A cache's rows; refuses class targets, views and unlabelled binary rows."""
        if not isinstance(cache, FeatureCache):
            with FeatureCache.open(cache) as opened:
                return cls.read(opened)
        target = cache.target
        if target.kind == "class":
            raise HeadError(f"{cache.path} has class targets: compare them with compare_heads")
        if cache.has_views:
            raise HeadError(f"{cache.path} holds augmented views: extract it without --augment")
        y = cache.targets
        if target.kind == "binary" and (y < 0).any():
            row = int(np.flatnonzero(y < 0)[0])
            raise HeadError(f"{cache.path}: row {row} ({cache.ids[row]}) has no binary label")
        X = cache.features
        return cls(X, y, target, cache.ids, cache_duplicates(cache, X)[1])


@dataclass
class Fold:
    """One fit of one head: rows, held-out scores, thresholds and what chose them."""

    train: np.ndarray
    test: np.ndarray
    score: np.ndarray
    thresholds: np.ndarray | None
    #: The rows (of the training data) whose out-of-fold scores chose the thresholds.
    threshold_rows: np.ndarray
    params: dict[str, Any]
    validation: float
    seconds: float
    #: The head fitted on all of ``train`` (what an export of it holds).
    head: Any = field(default=None, repr=False)


@dataclass
class TargetRow:
    """One head (or the baseline) scored on the held-out rows."""

    name: str
    scores: dict[str, float]
    intervals: dict[str, tuple[float, float] | None]
    validation: float | None
    folds: list[Fold] = field(repr=False)
    #: Each scored row's score (pooled over the folds): what the report plots.
    predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    versus_baseline: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: scores, intervals, validation score, thresholds, params and times."""
        thresholds = [None if f.thresholds is None else f.thresholds.tolist() for f in self.folds]
        return {
            "name": self.name,
            "scores": self.scores,
            "intervals": {k: None if v is None else list(v) for k, v in self.intervals.items()},
            "validation": self.validation,
            "versus_baseline": self.versus_baseline,
            "thresholds": thresholds,
            "params": [f.params for f in self.folds],
            "fit_seconds": round(sum(f.seconds for f in self.folds), 3),
            **self.details,
        }


@dataclass(repr=False)
class TargetComparison(Display):
    """Heads compared on a binary, multi-label or regression target."""

    target: Target
    metric: Metric
    mode: str
    rows: list[TargetRow]
    baseline: TargetRow
    winner: str
    verdict: str
    seconds: float
    y: np.ndarray = field(repr=False)

    def row(self, name: str) -> TargetRow:
        """The row of head (or baseline) ``name``."""
        for row in [*self.rows, self.baseline]:
            if row.name == name:
                return row
        raise KeyError(name)

    def _display_summary(self) -> dict[str, Any]:
        return {
            "target": self.target.describe(),
            "metric": self.metric.name,
            "mode": self.mode,
            "winner": self.winner,
            "verdict": self.verdict,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        out = []
        for row in [*self.rows, self.baseline]:
            line: dict[str, Any] = {"head": row.name}
            for key, value in row.scores.items():
                line[key] = value
                line[f"{key}_ci"] = row.intervals.get(key)
            line["validation"] = row.validation
            beats = (row.versus_baseline or {}).get("beats")
            line["beats_baseline"] = beats
            line["fit_s"] = round(sum(f.seconds for f in row.folds), 3)
            out.append(line)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``compare --json``)."""
        return {
            "target": self.target.to_dict(),
            "metric": self.metric.name,
            "mode": self.mode,
            "winner": self.winner,
            "verdict": self.verdict,
            "baseline": self.baseline.to_dict(),
            "rows": [row.to_dict() for row in self.rows],
            "seconds": round(self.seconds, 3),
        }


def strata(y: np.ndarray, target: Target) -> np.ndarray:
    """Labels that stratify folds: the binary label, a multi-label row's rarest tag (0 for
    none), a regression value's quantile bin."""
    if target.kind == "binary":
        return y.astype(np.int64)
    if target.kind == "multilabel":
        rarity = np.where(y > 0, y.sum(axis=0)[None, :], np.inf)
        return np.where(np.isfinite(rarity).any(1), rarity.argmin(axis=1) + 1, 0)
    edges = np.quantile(y, np.linspace(0, 1, VALUE_BINS + 1)[1:-1])
    return np.searchsorted(edges, y, side="right")


def folds(
    labels: np.ndarray, n_folds: int, seed: int, linked: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of the rows (:func:`~.splits.stratified_folds`: ``linked`` groups
    kept whole), strata too small for ``n_folds`` merged into the most common one."""
    counts = np.bincount(labels)
    merged = np.where(counts[labels] < n_folds, int(np.argmax(counts)), labels)
    if np.bincount(merged).max() < n_folds:
        raise HeadError(f"{len(labels)} rows are too few for {n_folds} folds")
    return stratified_folds(merged, np.arange(len(labels)), n_folds, seed, linked=linked)


def predict_scores(head: Any, X: np.ndarray, kind: str) -> np.ndarray:
    """A fitted head's scores: the positive's probability (or decision value), tag
    probabilities, predicted values."""
    if kind == "regression":
        return np.asarray(head.predict(X), np.float64).reshape(len(X))
    if kind == "binary":
        if hasattr(head, "predict_proba"):
            return np.asarray(head.predict_proba(X), np.float64)[:, 1]
        return np.asarray(head.decision_function(X), np.float64)
    return np.asarray(head.predict_proba(X), np.float64)


def thresholds_for(
    y: np.ndarray, score: np.ndarray, kind: str, cost_ratio: float | None
) -> np.ndarray | None:
    """The chosen threshold (binary: shape (1,); multi-label: one per tag), None for values."""
    if kind == "regression":
        return None
    if kind == "binary":
        return np.asarray([choose_threshold(y, score, cost_ratio)])
    return np.asarray(
        [choose_threshold(y[:, k], score[:, k], cost_ratio) for k in range(y.shape[1])]
    )


def decide(score: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray | None:
    """0/1 decisions at the thresholds (None for values)."""
    if thresholds is None:
        return None
    return (score >= (thresholds[0] if score.ndim == 1 else thresholds[None, :])).astype(np.int64)


def candidates(spec: str, tune: bool, n_features: int) -> list[dict[str, Any]]:
    """The parameter sets tried: the spec's own; with ``tune`` the kind's coarse grid."""
    axes = head_kind(spec).search_space.axes if tune else ()
    grids = [[v / n_features if axis.per_feature else v for v in axis.grid] for axis in axes]
    return [
        dict(zip([a.param for a in axes], values, strict=True))
        for values in itertools.product(*grids)
    ] or [{}]


def _fit(spec: str, kind: str, params: dict, X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    if spec == "baseline":
        return _Baseline(kind).fit(X, y)
    head = set_random_state(make_head(spec, target=kind, **params), seed)
    with single_threaded():
        return head.fit(X, y)


class _Baseline:
    """The prediction without features: the mean value, or each tag's prevalence."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Baseline:
        self.mean_ = np.asarray(y, np.float64).mean(axis=0)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), float(self.mean_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        positive = np.broadcast_to(self.mean_, (len(X), *np.shape(self.mean_)))
        return np.stack([1 - positive, positive], axis=1) if self.kind == "binary" else positive


def fit_fold(
    spec: str,
    data: TargetData,
    rows: tuple[np.ndarray, np.ndarray],
    metric: Metric,
    *,
    tune: bool,
    seed: int,
    cost_ratio: float | None,
    test: TargetData | None = None,
) -> Fold:
    """Choose parameters and thresholds on ``train``'s out-of-fold scores, fit on all of
    ``train``, score ``test`` (rows of ``data``, or every row of the test data)."""
    started = time.perf_counter()
    train, held = rows
    kind = data.target.kind
    X, y = data.X[train], data.y[train]
    linked = None if data.linked is None else data.linked[train]
    inner = folds(strata(y, data.target), INNER_FOLDS, seed + 1, linked)
    best: tuple[float, dict, np.ndarray] | None = None
    for params in candidates(spec, tune, X.shape[1]) if spec != "baseline" else [{}]:
        oof = np.zeros(y.shape, np.float64)
        for fit_rows, val_rows in inner:
            head = _fit(spec, kind, params, X[fit_rows], y[fit_rows], seed)
            oof[val_rows] = predict_scores(head, X[val_rows], kind)
        chosen = thresholds_for(y, oof, kind, cost_ratio)
        value = point_scores(kind, y, oof, decide(oof, chosen))[metric.key]
        if best is None or metric.better(value, best[0]):
            best = (value, params, oof)
    assert best is not None
    value, params, oof = best
    thresholds = thresholds_for(y, oof, kind, cost_ratio)
    head = _fit(spec, kind, params, X, y, seed)
    scored = data.X[held] if test is None else test.X
    return Fold(
        train,
        held,
        predict_scores(head, scored, kind),
        thresholds,
        train,
        params,
        value,
        time.perf_counter() - started,
        head,
    )


def _pooled(fits: list[Fold], n: int, kind: str, shape: tuple) -> tuple[np.ndarray, Any]:
    """Every scored row's score and decision, each from the fold that held it out."""
    score = np.zeros((n, *shape[1:]), np.float64)
    decided = None if kind == "regression" else np.zeros(score.shape, np.int64)
    for fit in fits:
        score[fit.test] = fit.score
        if decided is not None:
            decided[fit.test] = decide(fit.score, fit.thresholds)
    return score, decided


def _scored_row(
    name: str, fits: list[Fold], y: np.ndarray, target: Target, n_boot: int, seed: int
) -> tuple[TargetRow, dict[str, np.ndarray]]:
    kind = target.kind
    score, decided = _pooled(fits, len(y), kind, y.shape)
    replicates = bootstrap_scores(kind, y, score, decided, n_boot, seed)
    details: dict[str, Any] = {}
    if kind == "multilabel":
        details["per_tag_auc"] = per_tag_auc(y, score, list(target.names))
    row = TargetRow(
        name,
        point_scores(kind, y, score, decided),
        {key: interval(values) for key, values in replicates.items()},
        float(np.mean([f.validation for f in fits])),
        fits,
        score,
        details=details,
    )
    return row, replicates


def _versus(metric: Metric, head: np.ndarray, baseline: np.ndarray, point: float) -> dict[str, Any]:
    """The head's gain over the baseline (positive: better) with its paired interval."""
    sign = 1.0 if metric.higher_is_better else -1.0
    gained = interval(sign * (head - baseline))
    return {
        "gain": sign * point,
        "interval": None if gained is None else list(gained),
        "beats": gained is not None and gained[0] > 0,
    }


def check_in_memory(cache: str | Path, budget: str | int | None, force: bool = False) -> None:
    """Refuse a comparison whose features the memory ``budget`` would stream
    (:class:`~.budget.MemoryPlan`; ``force``: ``--out-of-core``): a target's comparison holds
    its features in memory.

    Raises
    ------
    HeadError
        One line naming the cache, its features' size and the budget, and what to do.
    """
    from bottleneck_transfer.heads.budget import MemoryPlan

    with FeatureCache.open(cache) as opened:
        kind, rows, dim = opened.target.kind, len(opened), opened.dim
    plan = MemoryPlan.choose(rows, dim, budget, force=force)
    if plan.streaming:
        why = "--out-of-core was given" if force else "they exceed the memory budget"
        raise HeadError(
            f"{cache}: its features ({plan.feature_bytes / 1e9:.2f} GB) would be streamed "
            f"({why}, {plan.budget / 1e9:.2f} GB), and a {kind} target is compared in memory "
            "only (streaming covers class targets): raise --memory-budget, or compare a sample"
        )


def _setup(
    train: Any, test: Any, heads: Sequence[str] | None, metric: str | None
) -> tuple[TargetData, TargetData | None, list[str], Metric]:
    data = TargetData.read(train)
    kind = data.target.kind
    held = None if test is None else TargetData.read(test)
    if held is not None and (held.target.kind, held.target.names) != (kind, data.target.names):
        raise HeadError(
            f"the test cache's target ({held.target.describe()}) is not the training "
            f"cache's ({data.target.describe()}); extract both with the same --target"
        )
    try:
        chosen = target_metric(kind, metric)
    except ValueError as exc:
        raise HeadError(str(exc)) from exc
    specs = list(heads or default_heads(kind))
    for spec in specs:
        make_head(spec, target=kind)  # an unknown head or one for another target: refused now
    return data, held, specs, chosen


def compare_targets(
    train: FeatureCache | str | Path,
    test: FeatureCache | str | Path | None = None,
    *,
    heads: Sequence[str] | None = None,
    cv: int | None = None,
    tune: bool = False,
    metric: str | None = None,
    cost_ratio: float | None = None,
    n_bootstrap: int = 1000,
    random_state: int = 0,
) -> TargetComparison:
    """Compare heads on a binary, multi-label or regression cache (see the module).

    Parameters
    ----------
    train, test : FeatureCache or path
        The training cache and an optional test cache of the same target; without ``test``,
        ``cv`` folds (default 5).
    heads : sequence of str, optional
        Head specs fitting the target (default: :func:`~.registry.default_heads` of it).
    tune : bool
        Search each head's coarse grid on its training rows' inner folds.
    metric : str, optional
        Decides tuning, the winner and the verdict (default: ROC-AUC, mAP, R²).
    cost_ratio : float, optional
        Thresholds minimise ``false positives + cost_ratio * false negatives`` instead of
        maximising F1.
    n_bootstrap, random_state
        Bootstrap resamples of the intervals; the seed of folds, heads and resamples.

    Raises
    ------
    HeadError
        A class-target cache, a head that does not fit the target, a metric of another
        target kind, a test cache of another target.

    Examples
    --------
    >>> result = compare_targets("ages.h5", heads=["ridge", "kernel-ridge"], cv=5)
    >>> result.row("ridge").scores["r2"] > result.baseline.scores["r2"]  # doctest: +SKIP
    True
    """
    started = time.perf_counter()
    data, held, specs, chosen = _setup(train, test, heads, metric)
    target, seed = data.target, random_state
    if held is not None:
        splits, y, mode = [(np.arange(len(data.y)), np.arange(len(held.y)))], held.y, "holdout"
    else:
        cv = cv or 5
        splits = folds(strata(data.y, target), cv, seed, data.linked)
        y, mode = data.y, f"cv{cv}"
    rows, replicates = [], []
    for spec in ["baseline", *specs]:
        fits = [
            fit_fold(
                spec, data, split, chosen, tune=tune, seed=seed, cost_ratio=cost_ratio, test=held
            )
            for split in splits
        ]
        name = BASELINES[target.kind] if spec == "baseline" else spec
        row, values = _scored_row(name, fits, y, target, n_bootstrap, seed)
        rows.append(row)
        replicates.append(values[chosen.key])
    baseline = rows.pop(0)
    for row, values in zip(rows, replicates[1:], strict=True):
        gain = row.scores[chosen.key] - baseline.scores[chosen.key]
        row.versus_baseline = _versus(chosen, values, replicates[0], gain)
    winner = min(rows, key=lambda r: chosen.sort_key(r.validation))
    return TargetComparison(
        target,
        chosen,
        mode,
        rows,
        baseline,
        winner.name,
        _verdict(winner, baseline, chosen),
        time.perf_counter() - started,
        y,
    )


def _verdict(winner: TargetRow, baseline: TargetRow, metric: Metric) -> str:
    """One sentence: the winner (chosen on training rows), its held-out score, and whether
    it beats the baseline."""
    key = metric.key
    low_high = winner.intervals.get(key)
    shown = "" if low_high is None else f" [{low_high[0]:.3f}, {low_high[1]:.3f}]"
    versus = winner.versus_baseline or {}
    gained = versus.get("interval")
    by = (
        ""
        if gained is None
        else f" (gain {versus['gain']:.3f}, 95% [{gained[0]:.3f}, {gained[1]:.3f}])"
    )
    beats = "beats" if versus.get("beats") else "does not beat"
    return (
        f"{winner.name}, chosen on training rows by {metric.name}, scores {metric.name} "
        f"{winner.scores[key]:.3f}{shown} on rows no choice saw; it {beats} the "
        f"{baseline.name} ({baseline.scores[key]:.3f}){by}."
    )
