"""Hyper-parameter search for heads, following published linear-probe practice.

CLIP's linear probes (Radford et al., 2021, appendix A.3) pick the L2 strength on a
validation split with a coarse log grid and then repeatedly halve the step around the best
value. :func:`tune_head` does the same for every head: it evaluates the coarse grid of each
searched parameter (the kind's ``search_space`` in the registry), then refines every
parameter that has a ``finest_step`` by halving its step in decades around the current best
until the step reaches ``finest_step``. Each round's trials are scored by
:class:`~sklearn.model_selection.GridSearchCV` on a single stratified train/validation split
carved from the training rows only, over worker processes (``n_jobs=-1``,
:mod:`~bottleneck_transfer.heads.parallel`: their warnings come back to be counted) when the
data is large; a kind whose search space is not ``parallel`` (the Keras ``dense`` head, Keras
already uses every core) runs its few trials one after another. Parameters fixed in the spec
(``"logreg:C=0.1"``) are not searched.

Above the memory budget (:mod:`heads.budget`) the same search streams
(:func:`streamed_trials`): the split is two index sets of the training rows, and each trial
is a streamed fit on one and a chunked prediction on the other; no other row is read.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.declared import Metric, metric_named
from bottleneck_transfer.heads.parallel import run_calls, use_workers
from bottleneck_transfer.heads.registry import (
    Axis,
    head_kind,
    make_head,
    parse_spec,
    set_random_state,
)
from bottleneck_transfer.heads.splits import shuffle_split
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV

#: Fraction of the training rows held out (stratified) to score each trial.
VAL_FRACTION = 0.2


@dataclass
class TuneResult:
    """What :func:`tune_head` tried and chose.

    ``train_indices`` and ``val_indices`` index the rows of the ``X`` given to
    :func:`tune_head`; no other row was used.
    """

    spec: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]
    train_indices: np.ndarray
    val_indices: np.ndarray
    seconds: float
    searched: list[str] = field(default_factory=list)
    metric: str = "accuracy"

    @classmethod
    def from_dict(
        cls, summary: dict[str, Any], train_indices: np.ndarray, val_indices: np.ndarray
    ) -> TuneResult:
        """Rebuild a result from :meth:`to_dict` and the split's row indices."""
        return cls(
            spec=summary["spec"],
            best_params=summary["best_params"],
            best_score=summary["best_validation_score"],
            trials=summary["trials"],
            train_indices=train_indices,
            val_indices=val_indices,
            seconds=summary["seconds"],
            searched=summary["searched"],
            metric=summary["metric"],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (indices as counts, trials with their validation score).

        ``best_validation_score`` is a selection score: the best of the trials on the rows
        that chose it, so optimistic; never a held-out estimate.
        """
        return {
            "spec": self.spec,
            "searched": self.searched,
            "metric": self.metric,
            "best_params": self.best_params,
            "best_validation_score": self.best_score,
            "score_kind": "selection (best of the trials, on the rows that chose it)",
            "n_trials": len(self.trials),
            "trials": self.trials,
            "n_tune_train": len(self.train_indices),
            "n_tune_validation": len(self.val_indices),
            "seconds": self.seconds,
        }


def validation_split(
    y: np.ndarray,
    val_fraction: float,
    random_state: int,
    groups: np.ndarray | None = None,
    linked: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (train, validation) split of the rows of ``y``.

    With augmented views (``groups``: each row's image, see :mod:`heads.splits`), images
    are split: every view goes to its image's side and only plain rows are validation rows;
    with ``linked`` (copies of one picture, declared groups), each group stays whole.

    Raises
    ------
    HeadError
        If a class has fewer than 2 rows or the validation slice cannot hold every class.
    """
    groups = np.arange(len(y)) if groups is None else groups
    try:
        return shuffle_split(y, groups, val_fraction, random_state, linked=linked)
    except ValueError as exc:
        raise HeadError(
            f"cannot carve a stratified validation split ({val_fraction:.0%}) for tuning from "
            f"{len(y)} training rows: {exc}; add data or run without --tune"
        ) from exc


def tune_head(
    spec: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    val_fraction: float = VAL_FRACTION,
    random_state: int = 0,
    n_jobs: int | None = -1,
    groups: np.ndarray | None = None,
    linked: np.ndarray | None = None,
    metric: str = "accuracy",
    chunk_rows: int | None = None,
) -> TuneResult:
    """Search a head's hyper-parameters on a validation split of ``X`` (training rows only).

    Parameters
    ----------
    spec : str
        Head spec; parameters it sets are kept fixed.
    X : ndarray of shape (n_samples, n_features), or a streaming source
        Training features. Never pass test rows: everything here is for selection. With
        ``chunk_rows``, a source sliced like an array (the cache's HDF5 dataset, a
        :class:`~heads.rows.RowSubset` of it) that is never read whole.
    y : ndarray of shape (n_samples,)
        Training labels.
    val_fraction : float, default=0.2
        Fraction of ``X`` held out (stratified) to score each trial.
    random_state : int, default=0
        Seeds the split and the heads.
    n_jobs : int or None, default=-1
        Parallel trials (joblib); -1 uses every core.
    groups : ndarray, optional
        Augmented views: each row's image (see :func:`validation_split`).
    linked : ndarray, optional
        Each row's group (copies, declared groups), kept whole (see :func:`validation_split`).
    metric : str, default="accuracy"
        The declared metric that scores each trial
        (:data:`~bottleneck_transfer.heads.metrics.DECLARED`).
    chunk_rows : int, optional
        Stream: each trial is fitted by
        :func:`~bottleneck_transfer.heads.streaming.fit_streaming_head` on the split's
        training rows and scored on its validation rows, both kept as index sets
        (:func:`streamed_trials`), one trial after another.

    Returns
    -------
    TuneResult
        Best parameters (by the validation ``metric``), every trial, and the row indices
        used.

    Raises
    ------
    HeadError
        If no trial could be fitted, or the split is impossible.
    """
    start = time.perf_counter()
    fixed = parse_spec(spec)[1]
    make_head(spec)  # validates the spec before any work
    space = head_kind(spec).search_space
    axes = [axis for axis in space.axes if axis.param not in fixed]
    scoring = metric_named(metric)
    train_idx, val_idx = validation_split(y, val_fraction, random_state, groups, linked)
    if not axes:
        return TuneResult(spec, {}, math.nan, [], train_idx, val_idx, 0.0, metric=scoring.name)
    scale = {a.param: (1.0 / X.shape[1] if a.per_feature else 1.0) for a in axes}
    split = (train_idx, val_idx)
    if chunk_rows is None:
        trials = _searched_trials(spec, X, y, split, scoring, random_state, n_jobs, space.parallel)
    else:
        trials = streamed_trials(spec, X, y, split, scoring, random_state, chunk_rows)
    search = _Search(spec, axes, scale, trials, scoring)
    search.evaluate(_product([a.grid for a in axes]))
    search.refine()
    return search.result(split, start)


@dataclass
class _Search:
    """One search's trials by point (a value per searched axis): ``scores``, greater is
    better, and ``values``, in the metric's own units."""

    spec: str
    axes: list[Axis]
    scale: dict[str, float]
    trials: Trials
    scoring: Metric
    scores: dict[tuple, float] = field(default_factory=dict)
    values: dict[tuple, float] = field(default_factory=dict)

    @property
    def best(self) -> tuple:
        """The point with the greatest score (the first tried among equals)."""
        return max(self.scores, key=self.scores.__getitem__)

    def result(self, split: tuple[np.ndarray, np.ndarray], start: float) -> TuneResult:
        """The best point's parameters and every trial, the search having begun at ``start``
        (:func:`time.perf_counter`)."""
        best = self.best
        return TuneResult(
            spec=self.spec,
            best_params=_params(self.axes, self.scale, best),
            best_score=self.values[best],
            trials=[
                {"params": _params(self.axes, self.scale, p), "validation_score": self.values[p]}
                for p in self.scores
            ],
            train_indices=split[0],
            val_indices=split[1],
            seconds=time.perf_counter() - start,
            searched=[a.param for a in self.axes],
            metric=self.scoring.name,
        )

    def evaluate(self, points: list[tuple]) -> None:
        """Score the points not tried yet, in one round of trials."""
        points = [p for p in dict.fromkeys(points) if p not in self.scores]
        if not points:
            return
        params = [_params(self.axes, self.scale, p) for p in points]
        found = np.asarray(self.trials(params), dtype=float)
        if np.isnan(found).all():
            raise HeadError(f"tuning {self.spec!r}: no trial could be fitted")
        for point, score in zip(points, found, strict=True):
            # scikit-learn negates losses (greater is better); report them as themselves
            value = score if self.scoring.higher_is_better else -score
            self.scores[point] = -math.inf if np.isnan(score) else float(score)
            self.values[point] = math.nan if np.isnan(score) else float(value)

    def refine(self) -> None:
        """Halve each refined axis's step (in decades) around the best point, a round at a
        time, until every step reaches the axis's ``finest_step``."""
        axes = self.axes
        steps = [
            math.log10(a.grid[1] / a.grid[0]) if a.finest_step and len(a.grid) > 1 else 0.0
            for a in axes
        ]
        while any(a.finest_step and s > a.finest_step for a, s in zip(axes, steps, strict=True)):
            best = self.best
            candidates = []
            for i, axis in enumerate(axes):
                if axis.finest_step and steps[i] > axis.finest_step:
                    steps[i] /= 2
                    for sign in (-1, 1):
                        moved = list(best)
                        moved[i] = float(f"{best[i] * 10 ** (sign * steps[i]):.6g}")
                        candidates.append(tuple(moved))
            self.evaluate(candidates)


#: Scores of trials (parameter dicts), greater is better, NaN for a trial that failed.
Trials = Callable[[list[dict[str, Any]]], list[float]]


def _searched_trials(
    spec: str,
    X: np.ndarray,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    scoring: Metric,
    random_state: int,
    n_jobs: int | None,
    parallel: bool,
) -> Trials:
    """Trials in memory: each round's grid scored by
    :class:`~sklearn.model_selection.GridSearchCV`, one trial per worker call when the data
    is large and the kind's search space is ``parallel`` (:mod:`heads.parallel`: the
    workers' warnings come back to be counted)."""
    # the estimator's parameters, judged by accuracy, which the calibration fitted after
    # tuning leaves alone (temperature scaling keeps the arg-max) or barely moves
    base = set_random_state(make_head(spec, calibrate=False), random_state)
    search_jobs = n_jobs if parallel else 1

    def trials(points: list[dict[str, Any]]) -> list[float]:
        grid = [{f"clf__{name}": [value] for name, value in p.items()} for p in points]
        workers = use_workers(len(grid), search_jobs, X.size)
        chunks = [[g] for g in grid] if workers else [grid]
        found = run_calls(
            _scores,
            [(base, chunk, X, y, [split], scoring.scorer()) for chunk in chunks],
            n_jobs=search_jobs,
            workers=workers,
        )
        return list(np.concatenate(list(found)))

    return trials


def streamed_trials(
    spec: str,
    source: Any,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    scoring: Metric,
    random_state: int,
    chunk_rows: int,
) -> Trials:
    """Trials that stream: each fitted on the split's training rows and scored on its
    validation rows, both :class:`~heads.rows.RowSubset` index sets of ``source``
    (no other row is read), one after another (one reader of the file)."""
    from bottleneck_transfer.heads.metrics import score
    from bottleneck_transfer.heads.rows import RowSubset
    from bottleneck_transfer.heads.streaming import fit_streaming_head, predict_source

    train_idx, val_idx = split
    fit_rows, val_rows = RowSubset(source, train_idx), RowSubset(source, val_idx)
    classes = np.unique(y)

    def trial(params: dict[str, Any]) -> float:
        head = fit_streaming_head(
            spec,
            fit_rows,
            y[train_idx],
            chunk_rows=chunk_rows,
            random_state=random_state,
            classes=classes,
            **params,
        )
        predicted, proba = predict_source(head, val_rows, chunk_rows, proba=scoring.needs_proba)
        value = score(y[val_idx], predicted, proba, head.classes_, only=[scoring.key])
        value = value[scoring.key]
        if value is None:
            return math.nan
        return value if scoring.higher_is_better else -value

    return lambda points: [trial(p) for p in points]


def _scores(
    base: Any, grid: list[dict], X: np.ndarray, y: np.ndarray, cv: list, scorer: Any
) -> np.ndarray:
    """The validation score of each point of ``grid``: NaN where its fit failed."""
    search = GridSearchCV(base, grid, scoring=scorer, cv=cv, refit=False, error_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        try:
            search.fit(X, y)
        except ValueError:  # raised when every trial failed
            return np.full(len(grid), np.nan)
    return search.cv_results_["mean_test_score"]


def _params(axes: list[Axis], scale: dict[str, float], point: tuple) -> dict[str, Any]:
    return {
        a.param: (value * scale[a.param] if a.per_feature else value)
        for a, value in zip(axes, point, strict=True)
    }


def _product(grids: list[tuple[float, ...]]) -> list[tuple]:
    points: list[tuple] = [()]
    for grid in grids:
        points = [(*p, v) for p in points for v in grid]
    return points
