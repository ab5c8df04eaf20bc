"""Scores of heads: :func:`score` gives accuracy, balanced accuracy, macro-F1 and log-loss
(scikit-learn's own metric functions); :func:`row_losses` gives the per-row cross-entropy.

Their intervals and the tests that compare heads are in :mod:`~bottleneck_transfer.heads.stats`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


def score(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro-F1 and log-loss (None without probabilities).

    ``labels`` are the classes of the columns of ``proba`` (the head's ``classes_``).
    """
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "log_loss": None if proba is None else float(log_loss(y_true, proba, labels=labels)),
    }


def row_losses(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy, clipped as :func:`sklearn.metrics.log_loss` does."""
    column = np.searchsorted(labels, y_true)
    eps = np.finfo(proba.dtype).eps
    return -np.log(np.clip(proba[np.arange(len(y_true)), column], eps, 1 - eps))
