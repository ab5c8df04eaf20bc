"""How often the comparison's statistics say something false, on data whose truth is known.

``bottleneck bench --parts statistics`` runs each simulation below with a fixed seed and
prints each rate before (the rule compare used until now) and after
(:mod:`~bottleneck_transfer.heads.stats`). Each is small synthetic data, seconds each; the
tests run the same functions with fewer draws.

``cv-null`` (:func:`cv_null`)
    A null by construction: a nearest-centroid head on ``[X, noise1]`` against the same head
    on ``[X, noise2]``, 5-fold stratified CV (compare's folds). Before: McNemar on the
    predictions pooled from the five fold models, and the "gap ± SD over folds" band; after:
    the Nadeau–Bengio corrected t-test and its interval. Rates: rejections of the true null
    (nominal 5 %), bands that leave out 0, and draws where the sentence and the band disagree.
``holdout-null`` (:func:`holdout_null`)
    Two heads whose errors are exchangeable on a holdout: the exact McNemar test's rejections.
``accuracy-coverage`` (:func:`accuracy_coverage`)
    A test set of n rows, each right with probability p: how often the 95 % interval holds p.
    Before: the percentile bootstrap; after: Clopper–Pearson.
``curve-coverage`` (:func:`curve_coverage`)
    Learning-curve points: R draws (which images are labelled) scored on the same n
    evaluation rows drawn from a population, row ``i`` of draw ``r`` right with probability
    ``sigmoid(a_i + b_r)``; the truth is the population mean. Before: a t-interval over the
    draws; after: :func:`~bottleneck_transfer.heads.stats.draw_interval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bottleneck_transfer.heads.splits import stratified_folds
from bottleneck_transfer.heads.stats import (
    ALPHA,
    bootstrap,
    draw_interval,
    holdout_intervals,
    paired_test,
    percentile,
)
from scipy.stats import binomtest, chi2
from scipy.stats import t as student_t

#: The nominal rate of a test at ALPHA, and the coverage of a 95 % interval.
NOMINAL = ALPHA
COVERAGE = 1 - ALPHA


def _centroid_correct(X: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray):
    """Whether a nearest-centroid head fitted on ``fit`` rows gets each ``held`` row right."""
    classes = np.unique(y[fit])
    centres = np.stack([X[fit][y[fit] == k].mean(axis=0) for k in classes])
    distance = ((X[held][:, None, :] - centres[None]) ** 2).sum(axis=2)
    return classes[distance.argmin(axis=1)] == y[held]


def _pooled_mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """The test compare used before: McNemar on pooled predictions (exact below 25
    discordant rows, chi-square with continuity correction above)."""
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    if n < 25:
        return float(binomtest(only_a, n, 0.5).pvalue)
    return float(chi2.sf((abs(only_a - only_b) - 1) ** 2 / n, 1))


def cv_null(
    draws: int = 600, n: int = 120, folds: int = 5, noise_dims: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Rates of the CV tests under a true null (see the module text).

    Returns
    -------
    dict
        ``before``/``after``: ``rejected`` (the test's p < ALPHA), ``band_excludes_0`` and
        ``disagree`` (sentence and band contradict), each a share of ``draws``.
    """
    rng = np.random.default_rng(seed)
    counts = {k: 0 for k in ("old_p", "old_band", "old_disagree", "new_p", "new_disagree")}
    for _ in range(draws):
        y = np.arange(n) % 2
        signal = rng.normal(0, 1, (n, 2)) + 0.5 * y[:, None]
        a_x = np.hstack([signal, rng.normal(0, 1, (n, noise_dims))])
        b_x = np.hstack([signal, rng.normal(0, 1, (n, noise_dims))])
        splits = stratified_folds(y, np.arange(n), folds, int(rng.integers(2**31)))
        a, b = np.empty(n, bool), np.empty(n, bool)
        for fit, held in splits:
            a[held] = _centroid_correct(a_x, y, fit, held)
            b[held] = _centroid_correct(b_x, y, fit, held)
        eval_folds = [held for _, held in splits]
        per_fold = np.asarray([100 * (a[e].mean() - b[e].mean()) for e in eval_folds])
        old_band = bool(abs(per_fold.mean()) > per_fold.std(ddof=1))
        old_p = _pooled_mcnemar(a, b) < ALPHA
        ratio = float(np.mean([len(e) / (n - len(e)) for e in eval_folds]))
        test = paired_test(a, b, eval_folds, ratio)
        low, high = test["interval_points"]
        new_band = low > 0 or high < 0
        counts["old_p"] += old_p
        counts["old_band"] += old_band
        counts["old_disagree"] += old_p != old_band
        counts["new_p"] += test["p"] < ALPHA
        counts["new_disagree"] += (test["p"] < ALPHA) != new_band
    share = {k: v / draws for k, v in counts.items()}
    return {
        "draws": draws,
        "rows": n,
        "folds": folds,
        "before": {
            "test": "McNemar on predictions pooled over folds; band: gap ± SD over folds",
            "rejected": share["old_p"],
            "band_excludes_0": share["old_band"],
            "disagree": share["old_disagree"],
        },
        "after": {
            "test": "Nadeau–Bengio corrected t-test and its 95% interval",
            "rejected": share["new_p"],
            "band_excludes_0": share["new_p"] if not counts["new_disagree"] else None,
            "disagree": share["new_disagree"],
        },
    }


def holdout_null(draws: int = 2000, n: int = 200, discordant: float = 0.2, seed: int = 0):
    """Rejections of the exact McNemar test when the two heads' errors are exchangeable."""
    rng = np.random.default_rng(seed)
    rejected = disagree = 0
    for _ in range(draws):
        base = rng.random(n) < 0.7
        flip = rng.random(n) < discordant
        side = rng.random(n) < 0.5
        a = np.where(flip, side, base)
        b = np.where(flip, ~side, base)
        test = paired_test(a, b)
        low, high = test["interval_points"]
        rejected += test["p"] < ALPHA
        disagree += (test["p"] < ALPHA) != (low > 0 or high < 0)
    return {"draws": draws, "rows": n, "rejected": rejected / draws, "disagree": disagree / draws}


def accuracy_coverage(
    sizes: Sequence[int] = (20, 50, 200),
    rates: Sequence[float] = (0.5, 0.9, 0.97, 0.995),
    draws: int = 1000,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Coverage of the accuracy's 95 % interval for each test-set size and true accuracy.

    Returns ``rows``: ``n``, ``p``, ``before`` (percentile bootstrap) and ``after``
    (:func:`~bottleneck_transfer.heads.stats.holdout_intervals`, Clopper–Pearson), and
    ``points_before``/``points_after``: the share of zero-width intervals.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for p in rates:
            hits = {"before": 0, "after": 0}
            points = {"before": 0, "after": 0}
            for _ in range(draws):
                y = np.zeros(n, np.int64)
                pred = (rng.random(n) >= p).astype(np.int64)  # 1 is a wrong prediction
                reps = bootstrap(y, pred, 2, n_boot=n_bootstrap, seed=int(rng.integers(2**31)))
                old = percentile(reps["accuracy"])
                new = holdout_intervals(y, pred, 2, n_boot=10)[0]["accuracy"]
                for key, (low, high) in (("before", old), ("after", new)):
                    hits[key] += low <= p <= high
                    points[key] += low == high
            rows.append(
                {
                    "n": n,
                    "p": p,
                    "before": hits["before"] / draws,
                    "after": hits["after"] / draws,
                    "points_before": points["before"] / draws,
                    "points_after": points["after"] / draws,
                }
            )
    return {"draws": draws, "rows": rows}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def curve_coverage(
    rows: int = 1000,
    repeats: int = 10,
    draws: int = 400,
    row_sd: float = 2.0,
    draw_sd: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Coverage of a learning-curve point's 95 % interval (see the module text).

    The truth, ``E[sigmoid(a + b)]`` with ``a ~ N(1, row_sd)`` and ``b ~ N(0, draw_sd)``,
    is computed by Gauss–Hermite quadrature. The defaults make the evaluation rows, not the
    draws, the larger source of chance, as on real test sets.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    truth = float(weights @ _sigmoid(1 + math.hypot(row_sd, draw_sd) * nodes) / weights.sum())
    rng = np.random.default_rng(seed)
    t_value = float(student_t.ppf(0.975, repeats - 1))
    hits = {"before": 0, "after": 0}
    for _ in range(draws):
        difficulty = rng.normal(1, row_sd, rows)
        quality = rng.normal(0, draw_sd, repeats)
        scores = rng.random((repeats, rows)) < _sigmoid(difficulty[None] + quality[:, None])
        per_draw = scores.mean(axis=1)
        half = t_value * per_draw.std(ddof=1) / math.sqrt(repeats)
        hits["before"] += abs(per_draw.mean() - truth) <= half
        stats = draw_interval(scores)
        hits["after"] += stats["low"] <= truth <= stats["high"]
    return {
        "draws": draws,
        "rows": rows,
        "repeats": repeats,
        "truth": round(truth, 4),
        "before": float(hits["before"] / draws),
        "after": float(hits["after"] / draws),
    }


def bench_statistics(seed: int = 0) -> dict[str, Any]:
    """Every simulation above at its default size (about a minute on one core)."""
    return {
        "cv_null": cv_null(seed=seed),
        "holdout_null": holdout_null(seed=seed),
        "accuracy_coverage": accuracy_coverage(seed=seed),
        "curve_coverage": curve_coverage(seed=seed),
    }


def format_statistics(report: dict[str, Any]) -> list[str]:
    """Markdown lines of a :func:`bench_statistics` report: each rate before and after."""
    cv, holdout = report["cv_null"], report["holdout_null"]
    curve = report["curve_coverage"]
    lines = [
        "",
        f"Statistics on known truth (nominal: tests reject {NOMINAL:.0%} of true nulls, "
        f"intervals cover {COVERAGE:.0%}):",
        "",
        "| rate | before | after |",
        "|---|---|---|",
        f"| CV null rejected ({cv['draws']} draws, {cv['folds']} folds, {cv['rows']} rows) | "
        f"{cv['before']['rejected']:.1%} | {cv['after']['rejected']:.1%} |",
        f"| CV band leaves out 0 | {cv['before']['band_excludes_0']:.1%} | "
        f"{cv['after']['rejected']:.1%} |",
        f"| CV sentence and band disagree | {cv['before']['disagree']:.1%} | "
        f"{cv['after']['disagree']:.1%} |",
        f"| holdout null rejected, exact McNemar ({holdout['draws']} draws) | – | "
        f"{holdout['rejected']:.1%} |",
        f"| learning-curve point covers the truth ({curve['draws']} draws, {curve['repeats']} "
        f"repeats, {curve['rows']} rows) | {curve['before']:.1%} | {curve['after']:.1%} |",
    ]
    for row in report["accuracy_coverage"]["rows"]:
        lines.append(
            f"| accuracy interval covers p = {row['p']} at n = {row['n']} "
            f"(zero-width before: {row['points_before']:.0%}) | {row['before']:.1%} | "
            f"{row['after']:.1%} |"
        )
    return lines
