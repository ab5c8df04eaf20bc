"""Scores of heads: :func:`score` gives accuracy, balanced accuracy, macro-F1 and log-loss
(scikit-learn's own metric functions); :func:`row_losses` gives the per-row cross-entropy;
:func:`per_class_scores`, each class's precision, recall and F1 from a confusion matrix.

* :data:`~bottleneck_transfer.heads.declared.DECLARED` (the one list of metrics a user may
  declare to decide, with their directions) is re-exported here with :data:`METRICS`;
  :func:`score` also gives top-k accuracy.

Their intervals and the tests that compare heads are in :mod:`~bottleneck_transfer.heads.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from bottleneck_transfer.heads.declared import DECLARED, METRICS, TOP_K
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    top_k_accuracy_score,
)


def _top_k(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray | None) -> float | None:
    if proba.shape[1] <= TOP_K:
        return None
    return float(top_k_accuracy_score(y_true, proba, k=TOP_K, labels=labels))


#: Each metric's function of (y_true, y_pred, proba, labels), by key.
_FUNCTIONS: dict[str, Callable[..., float | None]] = {
    "accuracy": lambda y, pred, proba, labels: float(accuracy_score(y, pred)),
    "balanced_accuracy": lambda y, pred, proba, labels: float(balanced_accuracy_score(y, pred)),
    "macro_f1": lambda y, pred, proba, labels: float(
        f1_score(y, pred, average="macro", zero_division=0)
    ),
    "log_loss": lambda y, pred, proba, labels: float(log_loss(y, proba, labels=labels)),
    "top_k": lambda y, pred, proba, labels: _top_k(y, proba, labels),
}


def score(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    only: Sequence[str] = METRICS,
) -> dict[str, float | None]:
    """The metrics of :data:`DECLARED` (or those keys ``only`` names); those that need
    probabilities are None without them, top-k is None with at most :data:`TOP_K` classes.

    ``labels`` are the classes of the columns of ``proba`` (the head's ``classes_``).
    """
    needs = {metric.key: metric.needs_proba for metric in DECLARED}
    return {
        key: None
        if proba is None and needs[key]
        else _FUNCTIONS[key](y_true, y_pred, proba, labels)
        for key in only
    }


def row_losses(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy, clipped as :func:`sklearn.metrics.log_loss` does."""
    column = np.searchsorted(labels, y_true)
    eps = np.finfo(proba.dtype).eps
    return -np.log(np.clip(proba[np.arange(len(y_true)), column], eps, 1 - eps))


def proba_row_scores(
    y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's cross-entropy (:func:`row_losses`) and whether its class is among the
    :data:`TOP_K` most probable (None with at most ``TOP_K`` columns), as
    :func:`~sklearn.metrics.top_k_accuracy_score` ranks them: for scoring a chunk at a time."""
    losses = row_losses(y_true, proba, labels)
    if proba.shape[1] <= TOP_K:
        return losses, None
    column = np.searchsorted(labels, y_true)
    top = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :TOP_K]
    return losses, (top == column[:, None]).any(axis=1)


def confusion_of(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The ``n_classes`` square confusion matrix of class indices (rows: true), one
    ``bincount`` (no N-row temporaries beyond the cell of each row)."""
    cells = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores_of_rows(
    confusion: np.ndarray, losses: np.ndarray | None, top_hits: np.ndarray | None
) -> dict[str, float | None]:
    """:func:`score`'s metrics from a confusion matrix (scikit-learn's definitions: balanced
    accuracy over the classes with rows, macro-F1 over the classes true or predicted),
    per-row losses and top-k hits (:func:`proba_row_scores`; None where not given)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits, actual, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    present = (actual + predicted) > 0
    values = {
        "accuracy": float(hits.sum() / confusion.sum()),
        "balanced_accuracy": float(np.mean(hits[actual > 0] / actual[actual > 0])),
        "macro_f1": float(np.mean(2 * hits[present] / (actual + predicted)[present])),
        "log_loss": None if losses is None else float(np.mean(losses)),
        "top_k": None if top_hits is None else float(np.mean(top_hits)),
    }
    return {key: values[key] for key in METRICS}


def per_class_scores(confusion: np.ndarray, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and row count of each class, from a confusion matrix."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "rows": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    ]
