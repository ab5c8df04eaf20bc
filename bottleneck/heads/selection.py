"""Choosing a head on training rows only, by one declared metric.

Every choice a comparison makes (the winning head, the baseline it is set against, the
layer of a sweep, the head of each learning-curve draw) is made here, on a validation split
carved from the fitting rows of that split only (:func:`~bottleneck_transfer.heads.splits.
holdout_split`: stratified, seeded, augmented views kept with their image). Each candidate
is fitted on the rest of those rows and scored on the validation rows with the declared
metric (:data:`~bottleneck_transfer.heads.metrics.DECLARED`); the best is chosen, the first
listed on ties. The rows the comparison then reports were never seen by the choice, so the
chosen head's score on them is no winner's curse.

:func:`resolve_metric` is the one place the deciding metric is chosen and checked: the
user's ``--metric``, else accuracy, or balanced accuracy where the classes are unequal
(:data:`UNEQUAL_RATIO`), saying so; a metric that cannot be computed for the target or a
head is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError, SourceError
from bottleneck_transfer.heads.declared import TOP_K, Metric, metric_named
from bottleneck_transfer.heads.memo import FitMemo, prediction_key
from bottleneck_transfer.heads.metrics import score
from bottleneck_transfer.heads.registry import calibration_method, has_proba, make_head
from bottleneck_transfer.heads.splits import groups_within, holdout_split
from bottleneck_transfer.heads.training import Fit, LabeledData, fit_head, predict_rows
from bottleneck_transfer.heads.tuning import VAL_FRACTION

#: Classes are "unequal" when the largest has this many times the rows of the smallest: then,
#: unless ``--metric`` says otherwise, balanced accuracy decides (accuracy would reward
#: favouring the larger classes).
UNEQUAL_RATIO = 1.5

#: A candidate for a choice: its name, its head spec, and the data its features come from.
Candidate = tuple[str, str, LabeledData]


def class_ratio(labels: np.ndarray, n_classes: int) -> float:
    """Rows of the largest class over rows of the smallest present class."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min())


def majority_rate(labels: np.ndarray) -> float:
    """The share of the largest class: the accuracy of always guessing it."""
    return float(np.bincount(np.asarray(labels)).max() / len(labels))


def resolve_metric(
    name: str | None, labels: np.ndarray, n_classes: int, specs: Sequence[str]
) -> tuple[Metric, str | None]:
    """The metric that decides, and a note when it was chosen for the user.

    Parameters
    ----------
    name : str or None
        The declared metric (``--metric``), or None: accuracy, or balanced accuracy when
        the training classes are unequal (ratio >= :data:`UNEQUAL_RATIO`).
    labels : ndarray
        Training labels (one per image).
    n_classes : int
        Number of classes.
    specs : sequence of str
        The heads the metric must be computable for.

    Raises
    ------
    HeadError
        For an unknown metric, log-loss or top-k with a head that has no probabilities, or
        top-k with too few classes.
    """
    note = None
    if name is None:
        ratio = class_ratio(labels, n_classes)
        name = "accuracy"
        if ratio >= UNEQUAL_RATIO:
            name = "balanced-accuracy"
            note = (
                f"classes are unequal (largest:smallest {ratio:.1f}:1), so balanced accuracy "
                "decides (accuracy rewards favouring the large classes); pass --metric "
                "accuracy to decide by accuracy"
            )
    try:
        metric = metric_named(name)
    except ValueError as exc:
        raise HeadError(f"--metric: {exc}. Received: metric={name!r}") from exc
    if n_classes < metric.min_classes:
        raise HeadError(
            f"--metric {metric.name} (top-{TOP_K} accuracy) needs more than {TOP_K} classes; "
            f"these data have {n_classes}: choose accuracy or balanced-accuracy"
        )
    if metric.needs_proba:
        without = [spec for spec in specs if not has_proba(make_head(spec))]
        if without:
            raise HeadError(
                f"--metric {metric.name} needs predicted probabilities, and "
                f"{', '.join(without)} has none: drop it from --heads or choose accuracy, "
                "balanced-accuracy or macro-f1"
            )
    return metric, note


def _predict(
    fit: Fit, data: LabeledData, rows: np.ndarray, memo: FitMemo | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A fit's predictions, probabilities (or None) and classes on ``rows``: stored in the
    memo by key, so a second run of the same choice neither fits nor loads a head."""
    key = prediction_key(fit.key, data.key, rows)
    stored = None if memo is None else memo.load_predictions(key)
    if stored is None:
        head = fit.estimator
        predictions, proba = predict_rows(head, data, rows)
        stored = {"predictions": predictions, "classes": head.classes_}
        if proba is not None:
            stored["proba"] = proba
        if memo is not None:
            memo.save_predictions(key, {}, **stored)
    return stored["predictions"], stored.get("proba"), stored["classes"]


@dataclass
class Choice:
    """One choice among candidates, made on ``val_rows`` after fitting on ``fit_rows``.

    Both index the data the candidates share; neither holds a row the comparison reports.
    ``scores`` holds each candidate's validation score (None: not computed).
    """

    chosen: str
    metric: str
    scores: dict[str, float | None]
    fit_rows: np.ndarray
    val_rows: np.ndarray
    reason: str

    @property
    def score(self) -> float | None:
        """The chosen candidate's validation score."""
        return self.scores.get(self.chosen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready choice (row indices as counts)."""
        return {
            "chosen": self.chosen,
            "metric": self.metric,
            "validation_scores": self.scores,
            "n_fit_rows": len(self.fit_rows),
            "n_validation_rows": len(self.val_rows),
            "reason": self.reason,
        }


def choice_calibrates(spec: str, metric: Metric) -> bool:
    """Whether a choice fits ``spec`` with its calibration: not when that cannot change the
    score (temperature scaling keeps every prediction, and ``metric`` reads predictions
    only), so the choice costs no calibration fits.

    Examples
    --------
    >>> from bottleneck_transfer.heads.declared import metric_named
    >>> choice_calibrates("linear-svm", metric_named("accuracy"))
    False
    >>> choice_calibrates("linear-svm", metric_named("log-loss"))
    True
    """
    return metric.needs_proba or calibration_method(spec) != "temperature"


def choose(
    candidates: Sequence[Candidate],
    rows: np.ndarray,
    metric: Metric,
    *,
    tune: bool = False,
    random_state: int = 0,
    n_jobs: int | None = -1,
    memo: FitMemo | None = None,
) -> Choice:
    """Choose among ``candidates`` using ``rows`` of their data only.

    A stratified, seeded :data:`~bottleneck_transfer.heads.tuning.VAL_FRACTION` of the
    images of ``rows`` is held out; each candidate is fitted (and tuned, with ``tune``, on
    the rest only) on the other rows (:func:`choice_calibrates`) and scored there with ``metric``.
    Where no validation split can be carved (a class with one image), the first candidate
    is taken and the reason says so.

    Parameters
    ----------
    candidates : sequence of (name, spec, data)
        Data sets of the same images in the same order (e.g. a feature set and its
        baselines).
    rows : ndarray
        The rows the choice may use (a split's fitting rows).
    metric : Metric
        Decides the choice.
    tune, random_state, n_jobs, memo
        As for :func:`~bottleneck_transfer.heads.training.fit_head`.

    Returns
    -------
    Choice
    """
    rows = np.asarray(rows)
    names = [name for name, _, _ in candidates]
    empty = np.empty(0, dtype=np.int64)
    if len(candidates) == 1:
        return Choice(names[0], metric.name, {names[0]: None}, rows, empty, "the only candidate")
    try:
        fit_rows, val_rows = _inner_split(candidates[0][2], rows, random_state)
    except (SourceError, ValueError) as exc:
        reason = (
            f"no validation split from {len(rows)} training rows ({exc}): took the first "
            "listed, not a choice"
        )
        return Choice(names[0], metric.name, dict.fromkeys(names), rows, empty, reason)
    fitting = _Fitting(tune, random_state, n_jobs, memo)
    scores, unfit = _validation_scores(candidates, fit_rows, val_rows, metric, fitting)
    chosen = _best(names, scores, metric)
    reason = (
        f"best validation {metric.name} {scores[chosen]:.3f} of {len(names)}, on "
        f"{len(val_rows)} training rows held out from their fits"
        if scores[chosen] is not None
        else f"no candidate has a validation {metric.name}: took the first listed"
    ) + "".join(f"; not a candidate ({why})" for why in unfit)
    return Choice(chosen, metric.name, scores, fit_rows, val_rows, reason)


def _inner_split(
    data: LabeledData, rows: np.ndarray, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into fitting and validation rows (stratified, seeded, groups kept)."""
    inner_fit, inner_val = holdout_split(
        data.y[rows],
        groups_within(data.groups, rows),
        VAL_FRACTION,
        random_state,
        linked=None if data.linked is None else data.linked[rows],
    )
    return rows[inner_fit], rows[inner_val]


@dataclass
class _Fitting:
    """How every candidate of a choice is fitted (:func:`~.training.fit_head`'s options)."""

    tune: bool
    random_state: int
    n_jobs: int | None
    memo: FitMemo | None


def _validation_scores(
    candidates: Sequence[Candidate],
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    metric: Metric,
    fitting: _Fitting,
) -> tuple[dict[str, float | None], list[str]]:
    """Each candidate's ``metric`` on ``val_rows`` after fitting on ``fit_rows`` (None where
    it cannot be fitted), and why those could not."""
    scores: dict[str, float | None] = {}
    unfit: list[str] = []
    for name, spec, candidate in candidates:
        try:
            fit = fit_head(
                spec,
                candidate,
                fit_rows,
                tune=fitting.tune,
                random_state=fitting.random_state,
                n_jobs=fitting.n_jobs,
                memo=fitting.memo,
                metric=metric.name,
                calibrate=choice_calibrates(spec, metric),
            )
        except HeadError as exc:  # e.g. knn with more neighbours than the inner fit rows
            scores[name] = None
            unfit.append(f"{name}: {exc}")
            continue
        predictions, proba, classes = _predict(fit, candidate, val_rows, fitting.memo)
        scored = score(candidate.y[val_rows], predictions, proba, classes, only=[metric.key])
        scores[name] = scored[metric.key]
    return scores, unfit


def _best(names: list[str], scores: dict[str, float | None], metric: Metric) -> str:
    """The name with the best score by ``metric`` (the first listed on ties or no scores)."""
    chosen = names[0]
    for name in names[1:]:
        value, best = scores[name], scores[chosen]
        if value is not None and (best is None or metric.better(value, best)):
            chosen = name
    return chosen
