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
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.declared import metric_named
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
) -> TuneResult:
    """Search a head's hyper-parameters on a validation split of ``X`` (training rows only).

    Parameters
    ----------
    spec : str
        Head spec; parameters it sets are kept fixed.
    X : ndarray of shape (n_samples, n_features)
        Training features. Never pass test rows: everything here is for selection.
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
    # the estimator's parameters, judged by accuracy, which the calibration fitted after
    # tuning leaves alone (temperature scaling keeps the arg-max) or barely moves
    base = set_random_state(make_head(spec, calibrate=False), random_state)
    search_jobs = n_jobs if space.parallel else 1
    scores: dict[tuple, float] = {}  # greater is better
    values: dict[tuple, float] = {}  # in the metric's own units

    def evaluate(points: list[tuple]) -> None:
        points = [p for p in dict.fromkeys(points) if p not in scores]
        if not points:
            return
        grid = [
            {f"clf__{name}": [value] for name, value in _params(axes, scale, p).items()}
            for p in points
        ]
        cv = [(train_idx, val_idx)]
        workers = use_workers(len(grid), search_jobs, X.size)
        chunks = [[g] for g in grid] if workers else [grid]  # one trial per worker call
        found = run_calls(
            _scores,
            [(base, chunk, X, y, cv, scoring.scorer()) for chunk in chunks],
            n_jobs=search_jobs,
            workers=workers,
        )
        trial_scores = np.concatenate(list(found))
        if np.isnan(trial_scores).all():
            raise HeadError(f"tuning {spec!r}: no trial could be fitted")
        for point, score in zip(points, trial_scores, strict=True):
            # scikit-learn negates losses (greater is better); report them as themselves
            value = score if scoring.higher_is_better else -score
            scores[point] = -math.inf if np.isnan(score) else float(score)
            values[point] = math.nan if np.isnan(score) else float(value)

    evaluate(_product([a.grid for a in axes]))
    steps = [
        math.log10(a.grid[1] / a.grid[0]) if a.finest_step and len(a.grid) > 1 else 0.0
        for a in axes
    ]
    while any(a.finest_step and step > a.finest_step for a, step in zip(axes, steps, strict=True)):
        best = max(scores, key=scores.__getitem__)
        candidates = []
        for i, axis in enumerate(axes):
            if axis.finest_step and steps[i] > axis.finest_step:
                steps[i] /= 2
                for sign in (-1, 1):
                    moved = list(best)
                    moved[i] = float(f"{best[i] * 10 ** (sign * steps[i]):.6g}")
                    candidates.append(tuple(moved))
        evaluate(candidates)
    best = max(scores, key=scores.__getitem__)
    trials = [
        {"params": _params(axes, scale, point), "validation_score": values[point]}
        for point in scores
    ]
    return TuneResult(
        spec=spec,
        best_params=_params(axes, scale, best),
        best_score=values[best],
        trials=trials,
        train_indices=train_idx,
        val_indices=val_idx,
        seconds=time.perf_counter() - start,
        searched=[a.param for a in axes],
        metric=scoring.name,
    )


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
