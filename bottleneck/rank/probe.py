"""The quick linear probe of one candidate's sample, beside its baselines.

A logistic regression whose C is tuned on a validation split of each fold's training rows
only (``compare_heads(..., heads=["logreg"], tune=True)``), scored by stratified, grouped
cross-validation on the sample, with the Nadeau–Bengio intervals of :mod:`heads.stats`; the
same probe on the baselines' features of the same images (random weights of the same
architecture, raw pixels) and the transfer test against the better of them, so negative
transfer shows. Every candidate is scored on the same folds: the data carry one shared
grouping (:func:`shared_groups`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.duplicates import merge_labels
from bottleneck_transfer.heads.compare import Comparison, NegativeTransferWarning, compare_heads
from bottleneck_transfer.heads.memo import FitMemo
from bottleneck_transfer.heads.training import LabeledData

#: The probe: logistic regression, tuned on training rows only.
PROBE_HEAD = "logreg"


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


def _compare(
    main: LabeledData,
    others: dict[str, tuple[LabeledData, None]],
    cv: int,
    seed: int,
    memo: FitMemo | None,
    n_jobs: int | None,
) -> Comparison:
    """The tuned probe on ``main`` and on each baseline, on the same folds."""
    return compare_heads(
        main,
        heads=[PROBE_HEAD],
        cv=cv,
        tune=True,
        baselines=others,
        random_state=seed,
        memo=memo,
        n_jobs=n_jobs,
        progress=False,
        metric="accuracy",
    )


def probe(
    data: LabeledData,
    baselines: Mapping[str, LabeledData],
    *,
    linked: np.ndarray | None,
    cv: int = 5,
    seed: int = 0,
    memo: FitMemo | None = None,
    n_jobs: int | None = -1,
) -> Probe:
    """Probe ``data`` (and ``baselines``, the same images) by ``cv``-fold cross-validation
    grouped by ``linked``."""
    main = dataclasses.replace(data, linked=linked)
    others = {name: (dataclasses.replace(d, linked=linked), None) for name, d in baselines.items()}
    with warnings.catch_warnings():  # the verdict reports negative transfer itself
        warnings.simplefilter("ignore", NegativeTransferWarning)
        try:
            comparison = _compare(main, others, cv, seed, memo, n_jobs)
        except HeadError as exc:
            raise HeadError(
                f"the sample is too small for a {cv}-fold probe tuned on its training folds "
                f"({len(main)} images): raise --sample (e.g. 50/class) or lower --cv ({exc})"
            ) from exc
    row = comparison.row(PROBE_HEAD)
    labels = comparison.eval_labels
    rows = {name: comparison.row(f"{PROBE_HEAD}@{name}") for name in baselines}
    return Probe(
        accuracy=float(row.metrics["accuracy"]),
        interval=tuple(row.intervals["accuracy"]),
        fold_accuracy=[float(f["accuracy"]) for f in row.fold_metrics],
        correct=row.predictions == labels,
        eval_ids=list(comparison.eval_ids),
        eval_folds=list(comparison.eval_folds or []),
        test_fraction=float(comparison.test_fraction or 0.0),
        baselines={
            name: {
                "accuracy": float(r.metrics["accuracy"]),
                "interval_95": list(r.intervals["accuracy"]),
            }
            for name, r in rows.items()
        },
        transfer=comparison.transfer,
    )
