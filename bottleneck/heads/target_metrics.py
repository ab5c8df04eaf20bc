"""Scores of binary, multi-label and regression heads, their bootstrap intervals and the
thresholds that turn scores into decisions.

Every metric is computed on *weighted* rows (:func:`weighted_scores`): weight 1 per row is the
point estimate; a bootstrap resample is the count of each row in it, so one vectorised pass
scores a chunk of resamples, and the same seed gives every head the same resamples (paired
differences, e.g. against the mean predictor).

* binary: ROC-AUC, PR-AUC (average precision), F1 and accuracy at the chosen threshold;
* multi-label: mAP (the mean over tags of their average precision), micro- and macro-F1 at
  each tag's threshold; per-tag ROC-AUC (:func:`per_tag_auc`);
* regression: R², MAE, RMSE.

Thresholds (:func:`choose_threshold`) are chosen on the scores of training rows the head did
not fit (out-of-fold), by F1 or by a cost ratio (a missed positive costs ``cost_ratio`` false
alarms), never on scored rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from bottleneck_transfer.heads.stats import LEVEL

#: Resamples scored at once (memory: ``chunk x rows`` weights).
_CHUNK = 50


def resample_weights(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of bootstrap weights (B, n): how often each row is in each resample (seeded)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        offsets = np.arange(size)[:, None] * n
        yield (
            np.bincount((idx + offsets).ravel(), minlength=size * n)
            .reshape(size, n)
            .astype(np.float64)
        )


def _average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted average precision (B,) of one column (ties in score broken by row order)."""
    order = np.argsort(-score, kind="stable")
    hits = w[:, order] * y[order]
    tp, seen = np.cumsum(hits, axis=1), np.cumsum(w[:, order], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (hits * tp / np.where(seen > 0, seen, 1)).sum(axis=1) / tp[:, -1]


def _roc_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC (B,): P(score of a positive > a negative's), ties counting half."""
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    pos = np.add.reduceat(w[:, order] * y[order], starts, axis=1)
    neg = np.add.reduceat(w[:, order] * (1 - y[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + neg / 2)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _f1(y: np.ndarray, decided: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted true positives, false positives and false negatives (B,) of one column."""
    return w @ (y * decided), w @ ((1 - y) * decided), w @ (y * (1 - decided))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_scores(
    kind: str, y: np.ndarray, score: np.ndarray, decided: np.ndarray | None, w: np.ndarray
) -> dict[str, np.ndarray]:
    """Each metric of ``kind`` (:data:`~.declared.TARGET_DECLARED`) under weights ``w``.

    ``y``: 0/1 (n,) (binary), 0/1 (n, K) (multi-label) or values (n,); ``score``: the
    positive's probability or decision value, tag probabilities, or predicted values;
    ``decided``: 0/1 decisions at the chosen thresholds (binary, multi-label).
    """
    if kind == "regression":
        total = w.sum(axis=1)
        err = score - y
        mean = (w @ y) / total
        spread = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
        sq = w @ (err**2)
        return {
            "r2": 1 - _ratio(sq, spread),
            "mae": (w @ np.abs(err)) / total,
            "rmse": np.sqrt(sq / total),
        }
    y = y.astype(np.float64)
    decided = np.asarray(decided, np.float64)
    if kind == "binary":
        tp, fp, fn = _f1(y, decided, w)
        right = w @ (y * decided + (1 - y) * (1 - decided))
        return {
            "roc_auc": _roc_auc(y, score, w),
            "pr_auc": _average_precision(y, score, w),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "accuracy": right / w.sum(axis=1),
        }
    per_tag = [_f1(y[:, k], decided[:, k], w) for k in range(y.shape[1])]
    tp, fp, fn = (np.stack(part, axis=1) for part in zip(*per_tag, strict=True))
    with np.errstate(invalid="ignore"):
        aps = np.stack(
            [_average_precision(y[:, k], score[:, k], w) for k in range(y.shape[1])], axis=1
        )
        return {
            "map": np.nanmean(np.where(np.isfinite(aps), aps, np.nan), axis=1),
            "micro_f1": _ratio(2 * tp.sum(1), (2 * tp + fp + fn).sum(1)),
            "macro_f1": np.nanmean(_ratio(2 * tp, 2 * tp + fp + fn), axis=1),
        }


def point_scores(
    kind: str, y: np.ndarray, score: np.ndarray, decided: np.ndarray | None
) -> dict[str, float]:
    """The metrics on the rows as they are (weight 1 each)."""
    values = weighted_scores(kind, y, score, decided, np.ones((1, len(y))))
    return {key: float(value[0]) for key, value in values.items()}


def bootstrap_scores(
    kind: str,
    y: np.ndarray,
    score: np.ndarray,
    decided: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap replicates of each metric; the same seed, the same resamples."""
    chunks = [
        weighted_scores(kind, y, score, decided, w) for w in resample_weights(len(y), n_boot, seed)
    ]
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile interval of replicates (resamples where a metric is undefined left out)."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def choose_threshold(y: np.ndarray, score: np.ndarray, cost_ratio: float | None = None) -> float:
    """The threshold (predict positive at ``score >= t``) that maximises F1 on these rows,
    or, with ``cost_ratio``, minimises ``false positives + cost_ratio * false negatives``.

    Examples
    --------
    >>> round(choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 3)
    0.225
    """
    order = np.argsort(-score, kind="stable")
    ranked, hits = score[order], y[order].astype(np.float64)
    cuts = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # last row of each score
    tp = np.cumsum(hits)[cuts]
    taken = cuts + 1.0
    fp, fn = taken - tp, hits.sum() - tp
    if cost_ratio is None:
        gain = _ratio(2 * tp, 2 * tp + fp + fn)
        best = int(np.nanargmax(np.where(np.isnan(gain), -1, gain)))
    else:
        best = int(np.argmin(fp + cost_ratio * fn))
    below = ranked[cuts[best] + 1] if cuts[best] + 1 < len(ranked) else ranked[cuts[best]] - 1
    return float((ranked[cuts[best]] + below) / 2)


def per_tag_auc(y: np.ndarray, score: np.ndarray, names: list[str]) -> dict[str, float | None]:
    """Each tag's ROC-AUC on these rows (None for a tag all or none of them have)."""
    ones = np.ones((1, len(y)))
    out: dict[str, float | None] = {}
    for k, name in enumerate(names):
        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(_roc_auc(y[:, k].astype(np.float64), score[:, k], ones)[0])
        out[name] = value if np.isfinite(value) else None
    return out
