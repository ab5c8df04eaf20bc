"""The quick linear probe of one candidate's sample, beside its baselines.

A closed-form linear probe: ridge regression on one-vs-rest targets (scikit-learn's
``RidgeClassifierCV``) on features standardised by each fold's training rows, its penalty
chosen from :data:`ALPHAS` by exact leave-one-out on that fold's training rows only (one
eigendecomposition per fold serves every penalty and every class: no iterative fit, no inner
split). It is scored by stratified, grouped cross-validation on the sample
(:func:`~bottleneck_transfer.heads.splits.stratified_folds`), with the Nadeau–Bengio
intervals of :mod:`heads.stats`. The same probe runs on the baselines' features of the same
images (random weights of the same architecture, raw pixels), on the same folds, and the
candidate is tested against each (Holm within the family :data:`TRANSFER_FAMILY`), so
negative transfer shows. Every candidate is scored on the same folds: the data carry one
shared grouping (:func:`shared_groups`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.duplicates import merge_labels
from bottleneck_transfer.heads.splits import Split, plain_rows, stratified_folds
from bottleneck_transfer.heads.stats import ALPHA, clopper_pearson, cv_interval, family_tests
from bottleneck_transfer.heads.training import LabeledData
from bottleneck_transfer.rank.logme import one_blas_thread

#: The ridge penalties the probe chooses from on each fold's training rows (standardised
#: features; ``alpha = 1/C`` in logistic-regression terms).
ALPHAS = tuple(np.logspace(-2, 4, 7))
#: The probe, as reports name it.
PROBE = "ridge probe (penalty chosen by leave-one-out on training folds)"
#: The family of the candidate's tests against its baselines (Holm-adjusted within it).
TRANSFER_FAMILY = "candidate vs its baselines"


@dataclass
class Probe:
    """One candidate's probe: accuracy, interval, per-fold scores and the baselines' rows.

    ``correct`` says, for each scored row (the same rows, in the same order, for every
    candidate), whether the probe got it right; ``eval_folds`` and ``test_fraction`` are the
    folds' positions among those rows and n_test/n_train (for paired tests across bases).
    """

    accuracy: float
    interval: tuple[float, float]
    fold_accuracy: list[float]
    correct: np.ndarray
    eval_ids: list[str]
    eval_folds: list[np.ndarray]
    test_fraction: float
    baselines: dict[str, dict[str, Any]]
    transfer: dict[str, Any] | None

    @property
    def negative(self) -> bool:
        """Whether a baseline beats the candidate significantly (negative transfer)."""
        return bool(self.transfer and self.transfer["verdict"] == "negative")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without per-row results)."""
        return {
            "probe": PROBE,
            "accuracy": self.accuracy,
            "interval_95": list(self.interval),
            "fold_accuracy": self.fold_accuracy,
            "baselines": self.baselines,
            "transfer": self.transfer,
            "negative_transfer": self.negative,
        }


def shared_groups(
    datas: list[LabeledData], declared: np.ndarray | None = None
) -> np.ndarray | None:
    """One grouping for every candidate's data of one sample: the copies any of them found
    (:func:`~bottleneck_transfer.features.duplicates.cache_duplicates`) joined with
    ``declared`` (the source's copies and manifest groups), so all share one set of folds."""
    return merge_labels(declared, *(data.linked for data in datas))


def ridge_predictions(X: np.ndarray, y: np.ndarray, splits: list[Split]) -> np.ndarray:
    """Each scored row's prediction by the ridge probe fitted on its fold's training rows.

    Features are standardised by the training rows' mean and spread (constant columns kept
    as they are); the penalty is chosen among :data:`ALPHAS` by leave-one-out on the training
    rows. Rows no fold scores keep -1.
    """
    from sklearn.linear_model import RidgeClassifierCV

    predictions = np.full(len(y), -1, dtype=np.int64)
    for fit, held in splits:
        train = np.asarray(X[fit], dtype=np.float64)
        mean, scale = train.mean(axis=0), train.std(axis=0)
        scale[scale == 0] = 1.0
        with one_blas_thread():
            model = RidgeClassifierCV(alphas=ALPHAS).fit((train - mean) / scale, y[fit])
        predictions[held] = model.predict((np.asarray(X[held], dtype=np.float64) - mean) / scale)
    return predictions


def _check_size(y: np.ndarray, cv: int) -> None:
    counts = np.bincount(y[y >= 0])
    small = [int(k) for k in np.flatnonzero(counts < cv)]
    if small:
        raise HeadError(
            f"the sample is too small for a {cv}-fold probe: class {small[0]} has "
            f"{int(counts[small[0]])} images; raise --sample (e.g. 50/class) or lower --cv"
        )


def _accuracy(correct: np.ndarray, eval_folds: list[np.ndarray], test_fraction: float):
    """Accuracy, its interval (corrected t over folds, joined with the pooled rows' exact
    interval) and the per-fold accuracies."""
    folds = [float(correct[e].mean()) for e in eval_folds]
    pooled = clopper_pearson(int(correct.sum()), len(correct))
    interval = cv_interval(folds, test_fraction, pooled=pooled)
    return float(correct.mean()), (float(interval[0]), float(interval[1])), folds


def transfer_test(
    correct: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    eval_folds: list[np.ndarray],
    test_fraction: float,
) -> dict[str, Any] | None:
    """The candidate's paired test against each baseline (Holm within
    :data:`TRANSFER_FAMILY`), summarised against the strongest baseline: ``verdict`` is
    ``negative`` when a baseline is significantly better, ``gain`` when the candidate beats
    every baseline significantly, else ``inconclusive``; ``sentence`` says it."""
    if not baselines:
        return None
    names = list(baselines)
    tests = family_tests(
        [(correct, baselines[n]) for n in names], TRANSFER_FAMILY, eval_folds, test_fraction
    )
    by_name = dict(zip(names, tests, strict=True))
    strongest = max(names, key=lambda n: float(baselines[n].mean()))
    test = by_name[strongest]
    lost = [n for n, t in by_name.items() if t["gap_points"] < 0 and t["p_holm"] < ALPHA]
    won = all(t["gap_points"] > 0 and t["p_holm"] < ALPHA for t in tests)
    low, high = test["interval_points"]
    gap = f"{test['gap_points']:+.1f} accuracy points vs {strongest} ({low:+.1f} to {high:+.1f}"
    gap += f", Holm-adjusted p = {test['p_holm']:.2g})"
    if lost:
        verdict = "negative"
        sentence = f"{', '.join(lost)} beat{'s' if len(lost) == 1 else ''} it: {gap}."
    elif won:
        verdict, sentence = "gain", f"it beats every baseline: {gap}."
    else:
        verdict, sentence = "inconclusive", f"no significant gain over the baselines: {gap}."
    return {
        "baseline": strongest,
        "gain_points": test["gap_points"],
        "interval_points": [low, high],
        "p_holm": test["p_holm"],
        "tests": by_name,
        "verdict": verdict,
        "sentence": sentence,
    }


def probe(
    data: LabeledData,
    baselines: Mapping[str, LabeledData],
    *,
    linked: np.ndarray | None,
    cv: int = 5,
    seed: int = 0,
    probed: dict[str, np.ndarray] | None = None,
) -> Probe:
    """Probe ``data`` (and ``baselines``, the same images) by ``cv``-fold cross-validation
    grouped by ``linked``.

    ``probed`` keeps each cache's per-row results by its fingerprint, so features several
    candidates share (raw pixels of one size, a candidate that is another's baseline) are
    fitted once; share one dict only between probes of one sample with the same ``linked``,
    ``cv`` and ``seed`` (the same folds).

    Raises
    ------
    HeadError
        When a class has fewer than ``cv`` images.
    """
    _check_size(data.y[data.plain], cv)
    splits = stratified_folds(data.y, data.groups, cv, seed, linked=linked)
    scored = plain_rows(data.groups)
    eval_folds = [np.searchsorted(scored, held) for _, held in splits]
    test_fraction = float(np.mean([len(e) / (len(scored) - len(e)) for e in eval_folds]))
    labels = data.y[scored]

    known = {} if probed is None else probed

    def correct_of(features: LabeledData) -> np.ndarray:
        key = features.fingerprint
        if key and key in known:
            return known[key]
        right = ridge_predictions(features.X, features.y, splits)[scored] == labels
        if key:
            known[key] = right
        return right

    correct = correct_of(data)
    accuracy, interval, folds = _accuracy(correct, eval_folds, test_fraction)
    baseline_correct = {name: correct_of(d) for name, d in baselines.items()}
    summaries = {}
    for name, right in baseline_correct.items():
        value, (low, high), _ = _accuracy(right, eval_folds, test_fraction)
        summaries[name] = {"accuracy": value, "interval_95": [low, high]}
    return Probe(
        accuracy=accuracy,
        interval=interval,
        fold_accuracy=folds,
        correct=correct,
        eval_ids=[data.ids[i] for i in scored],
        eval_folds=eval_folds,
        test_fraction=test_fraction,
        baselines=summaries,
        transfer=transfer_test(correct, baseline_correct, eval_folds, test_fraction),
    )
