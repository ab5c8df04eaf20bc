"""How far a head's probabilities are from frequencies: Brier score, ECE, reliability bins.

A head's ``predict_proba`` is read as probabilities only when the head has a probabilistic
model (``logreg``, ``dense``, ``knn``'s neighbour fractions) or is calibrated (the margin
classifiers, see :data:`~bottleneck_transfer.heads.registry.HeadKind.calibration`). These
measures say how well those numbers match what happens:

* :func:`brier_score`: the multiclass Brier score, ``mean_i sum_k (p_ik - [y_i = k])^2``
  (0 is perfect, 2 the worst; Brier 1950), a proper scoring rule like the log-loss.
* :func:`reliability_bins` and :func:`expected_calibration_error`: the top-class confidence
  of each row (its largest probability) in :data:`N_BINS` equal-width bins of [0, 1]; in
  each bin the mean confidence against the accuracy of those rows. The ECE is the mean of
  ``|accuracy - confidence|`` over the bins, weighted by their rows (Guo et al. 2017).
  Equal-width bins on top-class confidence are the usual definition, so figures compare
  with published ones; 15 bins as Guo et al.

:func:`calibration_folds` gives the folds a calibrated head's calibrator is fitted on: its
training rows only, every view of an image on one side, as few folds as hold enough rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bottleneck_transfer.heads.registry import calibration_method
from bottleneck_transfer.heads.splits import Split, rows_of_images, stratified_folds

#: Equal-width bins of top-class confidence for the ECE and the reliability diagram.
N_BINS = 15


def _columns(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The column of each row's true class in ``proba`` (-1 where the head lacks it)."""
    classes = np.asarray(classes)
    column = np.searchsorted(classes, y)
    column = np.clip(column, 0, len(classes) - 1)
    return np.where(classes[column] == y, column, -1)


def brier_score(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of ``sum_k (p_k - [y = k])^2`` (0 to 2)."""
    proba = np.asarray(proba, np.float64)
    onehot = np.zeros_like(proba)
    column = _columns(np.asarray(y), proba, classes)
    known = column >= 0
    onehot[np.flatnonzero(known), column[known]] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def reliability_bins(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, n_bins: int = N_BINS
) -> list[dict[str, float]]:
    """Top-class confidence against accuracy in ``n_bins`` equal-width bins of [0, 1].

    Returns
    -------
    list of dict
        One per non-empty bin: ``low``, ``high`` (its edges), ``rows``, ``confidence``
        (mean top-class probability) and ``accuracy`` (share of rows whose top class is
        right). A confidence of exactly 1 falls in the last bin.
    """
    proba = np.asarray(proba, np.float64)
    confidence = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in np.unique(index):
        inside = index == b
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "rows": int(np.count_nonzero(inside)),
                "confidence": float(confidence[inside].mean()),
                "accuracy": float(correct[inside].mean()),
            }
        )
    return bins


def expected_calibration_error(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE: ``sum_b rows_b / N * |accuracy_b - confidence_b|`` over equal-width bins."""
    return _ece(reliability_bins(y, proba, classes, n_bins))


def _ece(bins: list[dict[str, float]]) -> float:
    total = sum(b["rows"] for b in bins)
    return float(sum(b["rows"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / total)


def calibration_summary(
    y: np.ndarray, proba: np.ndarray | None, classes: np.ndarray, n_bins: int = N_BINS
) -> dict[str, Any] | None:
    """Brier score, ECE and reliability bins of ``proba`` on ``y``; None without
    probabilities."""
    if proba is None:
        return None
    bins = reliability_bins(y, proba, classes, n_bins)
    return {
        "brier": brier_score(y, proba, classes),
        "ece": _ece(bins),
        "n_bins": n_bins,
        "bins": bins,
    }


def calibration_report(
    spec: str, y: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> dict[str, Any]:
    """What ``compare`` reports of one head's probabilities on its scored rows.

    ``method`` is the head's calibration (None when it has none); ``brier``, ``ece`` and
    ``bins`` (:func:`calibration_summary`, columns ``0..n_classes-1``) are None / empty when
    the head outputs scores, not probabilities (an uncalibrated margin head).
    """
    summary = calibration_summary(y, proba, np.arange(n_classes))
    return {
        "method": calibration_method(spec),
        "brier": None if summary is None else summary["brier"],
        "ece": None if summary is None else summary["ece"],
        "n_bins": N_BINS,
        "bins": [] if summary is None else summary["bins"],
    }


def calibration_folds(
    y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int, held_rows: int | None = None
) -> list[Split]:
    """Folds of training rows for a calibrator: ``(fit rows, held rows)`` index pairs.

    Stratified, shuffled folds of the images (:func:`~heads.splits.stratified_folds`, at
    most ``n_folds``, fewer when the smallest class has fewer images); the held side holds
    every row of its images, views too, so no image is on both sides and the held rows of
    different folds are disjoint. With ``held_rows``, only the first folds whose held rows
    together reach it (every fold when the rows are fewer): each fold costs the calibrated
    head one fit, and a one-parameter temperature needs a few hundred held-out rows, not
    every row (:class:`~bottleneck_transfer.heads.calibrated.HeldOutCalibration`).

    Raises
    ------
    ValueError
        If a class has fewer than 2 images.

    Examples
    --------
    >>> y = np.repeat([0, 1], 50)
    >>> [len(held) for _, held in calibration_folds(y, np.arange(100), 5, seed=0)]
    [20, 20, 20, 20, 20]
    >>> [len(held) for _, held in calibration_folds(y, np.arange(100), 5, 0, held_rows=30)]
    [20, 20]
    """
    y = np.asarray(y)
    images = groups == np.arange(len(groups))
    smallest = int(np.unique(y[images], return_counts=True)[1].min())
    if smallest < 2:
        raise ValueError(
            f"calibration needs at least 2 images of every class; the smallest class has {smallest}"
        )
    folds = [
        (fit, rows_of_images(groups, held))
        for fit, held in stratified_folds(y, groups, min(n_folds, smallest), seed)
    ]
    if held_rows is None:
        return folds
    sizes = np.cumsum([len(held) for _, held in folds])
    return folds[: int(np.searchsorted(sizes, held_rows)) + 1]
