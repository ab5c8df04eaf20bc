"""The closed-form probe: penalty chosen on training rows only, baselines on the same folds."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.splits import stratified_folds
from bottleneck_transfer.heads.training import LabeledData
from bottleneck_transfer.rank.probe import (
    TRANSFER_FAMILY,
    probe,
    ridge_predictions,
    transfer_test,
)

EVAL_FOLDS = [np.arange(k, 200, 5) for k in range(5)]


def _blobs(n_per_class: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    return np.eye(3)[y] @ rng.normal(size=(3, 8)) * 3 + spread * rng.normal(size=(len(y), 8)), y


def test_held_rows_labels_never_reach_their_fold():
    X, y = _blobs(20, 1.5)
    splits = stratified_folds(y, np.arange(len(y)), 4, 0)
    before = ridge_predictions(X, y, splits)
    for _, held in splits:
        scrambled = y.copy()
        scrambled[held] = (y[held] + 1) % 3  # only the scored rows' labels change
        after = ridge_predictions(X, scrambled, splits)
        assert np.array_equal(after[held], before[held])
    assert (before == y).mean() > 0.9


def test_probe_scores_every_row_once_with_an_interval():
    X, y = _blobs(20, 1.0)
    got = probe(LabeledData.from_arrays(X, y), {}, linked=None, cv=4)
    assert len(got.correct) == 60 and len(got.fold_accuracy) == 4
    assert sorted(np.concatenate(got.eval_folds).tolist()) == list(range(60))
    low, high = got.interval
    assert low <= got.accuracy <= high and got.accuracy > 0.9
    assert got.transfer is None and got.to_dict()["probe"].startswith("ridge probe")


def test_probe_refuses_a_sample_smaller_than_its_folds():
    X, y = _blobs(3, 1.0)
    with pytest.raises(HeadError, match="class 0 has 3 images; raise --sample"):
        probe(LabeledData.from_arrays(X, y), {}, linked=None, cv=4)


def test_transfer_gain_needs_every_baseline_beaten_holm_within_its_family():
    strong = np.arange(200) % 100 < 95
    weak = np.arange(200) % 100 < 50
    close = (np.arange(200) + 7) % 100 < 93
    gain = transfer_test(strong, {"raw-pixels": weak}, EVAL_FOLDS, 0.25)
    assert gain["verdict"] == "gain" and gain["baseline"] == "raw-pixels"
    assert gain["gain_points"] == pytest.approx(45.0)
    both = transfer_test(strong, {"raw-pixels": weak, "random-base": close}, EVAL_FOLDS, 0.25)
    assert both["verdict"] == "inconclusive" and both["baseline"] == "random-base"
    assert {t["family"] for t in both["tests"].values()} == {TRANSFER_FAMILY}
    assert both["tests"]["raw-pixels"]["family_size"] == 2
    lost = transfer_test(weak, {"raw-pixels": strong, "random-base": weak}, EVAL_FOLDS, 0.25)
    assert lost["verdict"] == "negative"
    assert lost["sentence"].startswith("raw-pixels beats it: -45.0 accuracy points")
