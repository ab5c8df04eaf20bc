"""Scores of heads and the statistics that compare them.

* :data:`~bottleneck_transfer.heads.declared.DECLARED` (the one list of metrics a user may
  declare to decide, with their directions) is re-exported here with :data:`METRICS`.
* :func:`score`: accuracy, balanced accuracy, macro-F1, log-loss and top-k accuracy
  (scikit-learn's own metric functions); :func:`row_losses` gives the per-row cross-entropy.
* :func:`bootstrap` and :func:`interval`: paired bootstrap replicates and percentile
  intervals.
* :func:`mcnemar` and :func:`holm`: the paired test of two heads on the same rows, and the
  Holm–Bonferroni adjustment over several such tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from bottleneck_transfer.heads.declared import DECLARED, METRICS, TOP_K
from scipy.stats import binomtest, chi2
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    top_k_accuracy_score,
)

#: McNemar's test is exact (binomial) below this many discordant rows, chi-square above.
EXACT_BELOW = 25


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


def _resamples(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    losses: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of each metric over resampled rows.

    The same ``seed`` draws the same resamples, so replicates of two heads scored on the same
    rows are paired (their differences give intervals for the gap). Labels are class indices
    ``0..n_classes-1``; macro-F1 and balanced accuracy follow scikit-learn's definitions on
    each resample.

    Returns
    -------
    dict
        Metric name → array of ``n_boot`` values (``log_loss`` only when ``losses`` is given).
    """
    cells = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    out: dict[str, list[np.ndarray]] = {
        m: [] for m in ("accuracy", "balanced_accuracy", "macro_f1")
    }
    if losses is not None:
        out["log_loss"] = []
    k2 = n_classes * n_classes
    for idx in _resamples(len(cells), n_boot, seed):
        offsets = np.arange(len(idx))[:, None] * k2
        flat = np.bincount((cells[idx] + offsets).ravel(), minlength=len(idx) * k2)
        cm = flat.reshape(len(idx), n_classes, n_classes).astype(np.float64)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        actual, predicted = cm.sum(axis=2), cm.sum(axis=1)
        out["accuracy"].append(tp.sum(axis=1) / cm.sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(actual > 0, tp / actual, np.nan)
            present = (actual + predicted) > 0
            f1 = np.where(present, 2 * tp / (actual + predicted), np.nan)
        out["balanced_accuracy"].append(np.nanmean(recall, axis=1))
        out["macro_f1"].append(np.nanmean(f1, axis=1))
        if losses is not None:
            out["log_loss"].append(losses[idx].mean(axis=1))
    return {name: np.concatenate(values) for name, values in out.items()}


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Paired test of two classifiers on the same rows.

    ``b`` counts rows only A gets right, ``c`` rows only B gets right. With fewer than 25
    discordant rows the two-sided exact binomial test is used, otherwise the chi-square
    test with continuity correction.
    """
    b = int(np.count_nonzero(correct_a & ~correct_b))
    c = int(np.count_nonzero(~correct_a & correct_b))
    n = b + c
    if n == 0:
        return {"b": b, "c": c, "p": 1.0, "method": "no discordant rows"}
    if n < EXACT_BELOW:
        return {"b": b, "c": c, "p": float(binomtest(b, n, 0.5).pvalue), "method": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / n
    return {"b": b, "c": c, "p": float(chi2.sf(statistic, 1)), "method": "chi2"}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    order = np.argsort(pvalues)
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted.tolist()
