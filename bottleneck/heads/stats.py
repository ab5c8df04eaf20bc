"""Intervals, paired tests and their families: the one place for the statistics.

compare, learning curves, layer sweeps, evaluate and the benchmarks all read their intervals
and p-values from here, so each kind is computed, and described, once.

Intervals (always inside the metric's range, never a point on a small sample):

* accuracy on held-out rows: the Clopper–Pearson (exact binomial) interval
  (:func:`clopper_pearson`), whose coverage is at least its level for every n and accuracy;
* balanced accuracy, macro-F1, log-loss (no closed form): the percentile bootstrap over the
  rows (:func:`bootstrap`, :func:`percentile`); where every resample gives the same value
  (every row right, or every row wrong) the bootstrap says nothing, and the accuracy's
  Clopper–Pearson interval stands in;
* cross-validation (:func:`cv_interval`): the Nadeau–Bengio corrected resampled t-interval
  over the folds (the expected score of the head fitted on a training set of the folds'
  size), never narrower than the pooled rows' own interval above;
* repeated draws on fixed evaluation rows (learning curves, the views benchmark):
  :func:`draw_interval`, a t-interval over the draws widened by the evaluation rows' own
  sampling variance.

Paired tests of two heads on the same rows (:func:`paired_test`): the gap, its interval and
its p-value come from one computation, so the interval leaves out 0 exactly when p < 1 -
level:

* holdout: the exact McNemar test (conditional binomial on the discordant rows, two-sided by
  doubling the smaller tail), with the Clopper–Pearson interval of the discordant split
  mapped to accuracy points;
* cross-validation: the Nadeau–Bengio corrected resampled t-test on the per-fold
  differences (McNemar on predictions pooled from several fold models is not valid: the
  folds' models differ).

Families (:func:`family_tests`): p-values are Holm-adjusted within one family only (heads
against the winner; transfer: the winner against the baselines; layers against the best
layer), so adding a baseline never changes a head-vs-head p.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from bottleneck_transfer.heads.metrics import METRICS
from scipy.stats import beta, binom
from scipy.stats import t as student_t

#: The metrics a confusion matrix gives, bootstrapped from resampled cells.
CONFUSION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
LEVEL = 0.95
ALPHA = 0.05
#: The range of each metric: intervals are clipped to it.
RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "balanced_accuracy": (0.0, 1.0),
    "macro_f1": (0.0, 1.0),
    "log_loss": (0.0, math.inf),
}
#: What each kind of interval is, in the words the reports print.
HOLDOUT_INTERVALS = (
    "95% intervals: accuracy Clopper–Pearson (exact binomial), the other metrics percentile "
    "bootstrap over the scored rows"
)
CV_INTERVALS = (
    "95% intervals: Nadeau–Bengio corrected t-interval over the folds (the expected score of "
    "a head fitted on a fold's training rows), never narrower than the pooled rows' own "
    "interval"
)
HOLDOUT_TEST = (
    "exact McNemar test (binomial on the rows only one head gets right) with its exact "
    "interval of the gap"
)
CV_TEST = (
    "Nadeau–Bengio corrected resampled t-test on the per-fold differences, with its "
    "t-interval of the gap"
)


def clopper_pearson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a proportion: ``successes`` of ``n``.

    Its coverage is at least ``level`` for every n and true proportion; it never collapses
    to a point and stays within [0, 1].

    Examples
    --------
    >>> [round(v, 3) for v in clopper_pearson(20, 20)]
    [0.832, 1.0]
    """
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - tail, successes + 1, n - successes))
    return low, high


#: Resampled row indices drawn at once: up to 100 resamples, fewer of many rows (memory
#: stays flat in the rows: 2**22 int64 indices and their cells, 32 MB each).
RESAMPLE_VALUES = 2**22


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` resamples of ``n`` rows, in blocks of at most :data:`RESAMPLE_VALUES`."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(100, RESAMPLE_VALUES // max(n, 1)))
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
    rows are paired. Labels are class indices ``0..n_classes-1``; macro-F1 and balanced
    accuracy follow scikit-learn's definitions on each resample.

    Returns
    -------
    dict
        Metric name → array of ``n_boot`` values (``log_loss`` only when ``losses`` is given).
    """
    cells = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    out: dict[str, list[np.ndarray]] = {m: [] for m in CONFUSION_METRICS}
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


def percentile(
    values: np.ndarray, level: float = LEVEL, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, clipped to ``bounds``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(max(low, bounds[0])), float(min(high, bounds[1]))


def _clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    return float(max(low, bounds[0])), float(min(high, bounds[1]))


def holdout_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    losses: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[dict[str, tuple[float, float] | None], dict[str, np.ndarray]]:
    """Each metric's interval on scored rows (see the module text), and the bootstrap
    replicates it used (paired across heads by ``seed``).

    Returns
    -------
    intervals : dict
        Metric → ``(low, high)``, None for log-loss without ``losses``.
    replicates : dict
        As :func:`bootstrap`.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    replicates = bootstrap(y_true, y_pred, n_classes, losses, n_boot=n_boot, seed=seed)
    right = int(np.count_nonzero(y_true == y_pred))
    exact = clopper_pearson(right, len(y_true), level)
    intervals: dict[str, tuple[float, float] | None] = dict.fromkeys(METRICS)
    intervals["accuracy"] = exact
    for metric, values in replicates.items():
        if metric == "accuracy":
            continue
        low, high = percentile(values, level, RANGES[metric])
        if low == high and right in (0, len(y_true)):
            low, high = exact  # every row right (or wrong): the bootstrap cannot vary
        intervals[metric] = (low, high)
    return intervals, replicates


def _nb_factor(n_folds: int, test_fraction: float) -> float:
    """Nadeau–Bengio's variance factor: 1/J + n_test/n_train."""
    return 1.0 / n_folds + test_fraction


def cv_interval(
    fold_values: Sequence[float],
    test_fraction: float,
    level: float = LEVEL,
    bounds: tuple[float, float] = (0.0, 1.0),
    pooled: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Nadeau–Bengio corrected t-interval of the mean of per-fold scores.

    ``mean ± t(J-1) * sqrt((1/J + n_test/n_train) * s²)`` over the J folds, where
    ``test_fraction`` is n_test/n_train of a fold; the union with ``pooled`` (the pooled
    rows' own interval, so that folds that happen to agree give no point), clipped to
    ``bounds``.
    """
    values = np.asarray(fold_values, dtype=np.float64)
    mean = float(values.mean())
    var = float(values.var(ddof=1)) if len(values) > 1 else 0.0
    df = max(len(values) - 1, 1)
    half = float(student_t.ppf(0.5 + level / 2, df)) * math.sqrt(
        _nb_factor(len(values), test_fraction) * var
    )
    low, high = mean - half, mean + half
    if pooled is not None:
        low, high = min(low, pooled[0]), max(high, pooled[1])
    return _clip(low, high, bounds)


def _exact_mcnemar(b: int, c: int, n: int, level: float) -> dict[str, Any]:
    """Exact McNemar: b of the b + c discordant rows favour A; p by doubling the smaller
    binomial tail, so that p < 1 - level exactly when 0.5 is outside the Clopper–Pearson
    interval of b / (b + c), which gives the interval of the gap (b - c) / n. With no
    discordant row, the gap lies within ± the exact upper bound of the discordance rate."""
    discordant = b + c
    gap = 100 * (b - c) / n
    if discordant == 0:  # no row tells them apart: the gap is within the discordance bound
        bound = 100 * clopper_pearson(0, n, level)[1]
        return {"b": b, "c": c, "p": 1.0, "gap_points": 0.0, "interval_points": [-bound, bound]}
    tails = min(binom.cdf(b, discordant, 0.5), binom.sf(b - 1, discordant, 0.5))
    low, high = clopper_pearson(b, discordant, level)
    scale = 100 * discordant / n
    return {
        "b": b,
        "c": c,
        "p": float(min(1.0, 2 * tails)),
        "gap_points": gap,
        "interval_points": [scale * (2 * low - 1), scale * (2 * high - 1)],
    }


def _corrected_t(
    diffs: np.ndarray, floor: float, test_fraction: float, level: float
) -> dict[str, Any]:
    """Nadeau–Bengio corrected resampled t-test of per-fold differences (points).

    The variance over folds is floored by ``floor`` (the rows' own sampling variance of a
    fold's difference), so folds that happen to agree never give a zero-width interval.
    """
    n_folds = len(diffs)
    mean = float(diffs.mean())
    var = max(float(diffs.var(ddof=1)) if n_folds > 1 else 0.0, floor)
    se = math.sqrt(_nb_factor(n_folds, test_fraction) * var)
    df = max(n_folds - 1, 1)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        half = 0.0
    else:
        p = float(2 * student_t.sf(abs(mean) / se, df))
        half = float(student_t.ppf(0.5 + level / 2, df)) * se
    return {"p": p, "gap_points": mean, "interval_points": [mean - half, mean + half]}


def paired_test(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    eval_folds: Sequence[np.ndarray] | None = None,
    test_fraction: float | None = None,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Test of two heads on the same scored rows: gap (A - B, accuracy points), interval, p.

    Parameters
    ----------
    correct_a, correct_b : ndarray of bool
        Whether each head gets each scored row right.
    eval_folds : sequence of ndarray, optional
        Cross-validation: each fold's positions among the scored rows. Without it, the rows
        are one holdout.
    test_fraction : float, optional
        Cross-validation: a fold's scored rows over its fitting rows (n_test/n_train).
    level : float
        The interval's level; it leaves out 0 exactly when ``p < 1 - level``.

    Returns
    -------
    dict
        ``gap_points``, ``interval_points``, ``level``, ``p`` and ``method`` (with ``b``/``c``
        discordant counts for the holdout test).
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if eval_folds is None:
        only_a = int(np.count_nonzero(a & ~b))
        only_b = int(np.count_nonzero(~a & b))
        result = _exact_mcnemar(only_a, only_b, len(a), level)
        method = "exact McNemar"
    else:
        rows = 100 * (a.astype(np.float64) - b)
        diffs = np.asarray([rows[e].mean() for e in eval_folds])
        floor = float(np.mean([rows[e].var() / len(e) for e in eval_folds]))
        result = _corrected_t(diffs, floor, test_fraction or 0.0, level)
        method = "Nadeau–Bengio corrected t"
    return {**result, "level": level, "method": method}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    order = np.argsort(pvalues, kind="stable")
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted.tolist()


def family_tests(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    family: str,
    eval_folds: Sequence[np.ndarray] | None = None,
    test_fraction: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`paired_test` of each ``(correct_a, correct_b)`` pair, Holm-adjusted within
    this family only.

    Each test's interval is at its Holm step's level (``1 - ALPHA / (m - rank)``, the
    smallest p first), the level its adjusted p is judged at, so the interval and the
    Holm-adjusted verdict agree; ``p_holm``, ``family`` and ``family_size`` are added.
    """
    tests = [paired_test(a, b, eval_folds, test_fraction) for a, b in pairs]
    adjusted = holm([t["p"] for t in tests])
    m = len(tests)
    order = np.argsort([t["p"] for t in tests], kind="stable")
    for rank, index in enumerate(order):
        level = 1 - ALPHA / (m - rank)
        if level != LEVEL:
            a, b = pairs[index]
            tests[index] = paired_test(a, b, eval_folds, test_fraction, level)
        tests[index].update(p_holm=adjusted[index], family=family, family_size=m)
    return tests


def draw_interval(
    scores: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = LEVEL,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Mean of per-row scores over repeated draws on fixed rows, with an interval for both
    chances: which draw (e.g. which images were labelled) and which evaluation rows.

    Parameters
    ----------
    scores : ndarray of shape (R, n)
        Row ``r`` holds one draw's score of each evaluation row: 1/0 for correct, or the
        difference of two such (a paired comparison on the same draw).
    n_bootstrap, seed
        Row bootstrap resamples, and their seed (one draw only).
    confidence : float
        Coverage of the interval.
    bounds : tuple
        The score's range, to clip to: [0, 1] for 1/0 scores, [-1, 1] for differences.

    Returns
    -------
    dict
        ``mean``; ``low``/``high``: ``mean ± t(df) * sqrt(s²/R + v - e)``, where ``s²`` is
        the variance of the per-draw means, ``v`` the variance of the mean over resampled
        evaluation rows (in closed form: the variance of the per-row means over n) and ``e``
        the draw-by-row residual mean square over nR, which both other terms hold once
        (two-way random effects); never below ``s²/R`` or ``v``; ``df`` by
        Welch–Satterthwaite (R - 1 when the draws dominate, n - 1 when the rows do). With
        one draw the bootstrap percentile interval.
        ``draw_sd`` (``s``), ``test_sd`` (``sqrt(v)``) and ``per_draw`` show where the width
        comes from.

    Examples
    --------
    >>> draw_interval(np.array([[1, 1, 0, 1], [1, 0, 0, 1]]))["mean"]
    0.625
    """
    scores = np.asarray(scores, dtype=np.float64)
    draws, n = scores.shape
    per_draw = scores.mean(axis=1)
    per_row = scores.mean(axis=0)
    mean = float(per_draw.mean())
    draw_sd = float(per_draw.std(ddof=1)) if draws > 1 else 0.0
    test_sd = float(per_row.std(ddof=1 if n > 1 else 0) / np.sqrt(n))
    if draws > 1:
        residual = scores - per_draw[:, None] - per_row[None] + mean
        df_noise = (draws - 1) * max(n - 1, 1)
        parts = np.array(
            [draw_sd**2 / draws, test_sd**2, (residual**2).sum() / df_noise / n / draws]
        )
        dfs = np.array([draws - 1, max(n - 1, 1), df_noise])
        variance = max(parts[0] + parts[1] - parts[2], parts[0], parts[1])
        df = variance**2 / (parts**2 / dfs).sum() if variance > 0 else draws - 1
        half = float(student_t.ppf((1 + confidence) / 2, max(df, 1.0))) * math.sqrt(variance)
        low, high = _clip(mean - half, mean + half, bounds)
    else:
        weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), n_bootstrap)
        low, high = percentile(weights @ per_row / n, confidence, bounds)
    return {
        "mean": round(mean, 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
        "draw_sd": round(draw_sd, 4),
        "test_sd": round(test_sd, 4),
        "per_draw": [round(float(v), 4) for v in per_draw],
    }
