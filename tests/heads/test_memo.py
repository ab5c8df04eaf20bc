"""Fits are memoized like features: by data, rows, head with all parameters, tuning and seed."""

from __future__ import annotations

import bottleneck_transfer.heads.memo as memo_module
import numpy as np
import pytest
from bottleneck_transfer.errors import StoreEntryWarning
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.memo import FitMemo
from bottleneck_transfer.heads.report import format_table
from bottleneck_transfer.heads.training import LabeledData, train_head
from heads_fixtures import digits_caches


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


def _numbers(comparison):
    return [(r.name, r.metrics, r.intervals, r.predictions.tolist()) for r in comparison.rows]


def test_a_second_comparison_fits_nothing_and_prints_the_same_numbers(caches, tmp_path, fits):
    memo = FitMemo(tmp_path / "fits")
    first = compare_heads(*caches, heads=["logreg", "knn"], n_bootstrap=200, memo=memo)
    # each head on the training rows, and on part of them for the choice of the winner
    assert sorted(fits) == ["KNeighborsClassifier"] * 2 + ["LogisticRegression"] * 2
    assert not any(row.reused for row in first.rows)
    fits.clear()

    def never(*args, **kwargs):
        raise AssertionError("a stored fit with stored predictions is not even loaded")

    memo.load_head = never
    second = compare_heads(*caches, heads=["logreg", "knn"], n_bootstrap=200, memo=memo)
    assert fits == []
    assert all(row.reused for row in second.rows)
    assert _numbers(second) == _numbers(first)
    assert [(r.fit_seconds, r.predict_ms_per_1k) for r in second.rows] == [
        (r.fit_seconds, r.predict_ms_per_1k) for r in first.rows
    ]
    table = format_table(second)
    assert "reused" in table and "reused" not in format_table(first)
    assert table.split("\n")[2].rstrip().endswith("fit")
    assert {p.suffix for p in memo.root.iterdir()} == {".skops", ".json", ".npz"}


def test_adding_a_head_or_changing_one_fits_only_what_is_new(caches, tmp_path, fits):
    memo = FitMemo(tmp_path / "fits")
    train, test = caches
    compare_heads(train, test, heads=["logreg"], n_bootstrap=100, memo=memo)
    fits.clear()
    more = compare_heads(train, test, heads=["logreg", "knn"], n_bootstrap=100, memo=memo)
    # knn, and both on the choice's rows (one head alone needs no choice)
    assert sorted(fits) == ["KNeighborsClassifier", "KNeighborsClassifier", "LogisticRegression"]
    assert more.row("logreg").reused and not more.row("knn").reused
    fits.clear()
    changed = compare_heads(train, test, heads=["logreg:C=0.5", "knn"], n_bootstrap=100, memo=memo)
    assert fits == ["LogisticRegression"] * 2 and changed.row("knn").reused
    fits.clear()
    compare_heads(train, test, heads=["knn"], n_bootstrap=100, random_state=1, memo=memo)
    compare_heads(train, heads=["knn"], cv=3, memo=memo)
    assert fits == ["KNeighborsClassifier"] * 4, "another seed; the rows of three folds"


def test_tuned_fits_are_reused_with_their_search(caches, tmp_path, fits):
    memo = FitMemo(tmp_path / "fits")
    args = {"heads": ["knn"], "cv": 3, "tune": True, "n_jobs": 1, "memo": memo}
    first = compare_heads(caches[0], **args)
    fits.clear()
    second = compare_heads(caches[0], **args)
    assert fits == [] and second.row("knn").reused
    for old, new in zip(first.row("knn").tuning, second.row("knn").tuning, strict=True):
        assert new.best_params == old.best_params and new.trials == old.trials
        np.testing.assert_array_equal(new.train_indices, old.train_indices)
        np.testing.assert_array_equal(new.val_indices, old.val_indices)


def test_train_reuses_the_fit_a_holdout_comparison_made(caches, tmp_path, fits):
    memo = FitMemo(tmp_path / "fits")
    train, test = caches
    comparison = compare_heads(train, test, heads=["knn"], tune=True, n_jobs=1, memo=memo)
    fits.clear()
    trained = train_head(LabeledData.from_cache(train), "knn", tune=True, n_jobs=1, memo=memo)
    assert fits == [] and trained.metadata["reused"]
    assert trained.metadata["tuning"] == comparison.row("knn").tuning[0].to_dict()
    predictions = trained.estimator.predict(LabeledData.from_cache(test).X)
    np.testing.assert_array_equal(predictions, comparison.row("knn").predictions)


def test_an_edit_of_this_package_s_estimators_refits_them(caches, tmp_path, fits, monkeypatch):
    memo = FitMemo(tmp_path / "fits")
    args = {"heads": ["linear-svm", "logreg"], "n_bootstrap": 100, "memo": memo}
    compare_heads(*caches, **args)
    fits.clear()
    monkeypatch.setattr(memo_module, "_module_digest", lambda module: "sha256:edited")
    compare_heads(*caches, **args)
    assert fits == ["LinearSVM"] * 2, "scikit-learn's classes are covered by its version"


def test_a_fit_whose_head_is_gone_or_whose_metadata_is_damaged_is_fitted_again(
    caches, tmp_path, fits
):
    memo = FitMemo(tmp_path / "fits")
    train_head(caches[0], "logreg", memo=memo)
    (head,) = memo.root.glob("*.skops")
    head.unlink()  # e.g. pruned between the metadata and the head
    fits.clear()
    with pytest.warns(StoreEntryWarning, match=r"\.skops is missing"):
        again = train_head(caches[0], "logreg", memo=memo)
    assert fits == ["LogisticRegression"] and head.is_file()
    (meta,) = (p for p in memo.root.glob("*.json") if not p.name.endswith(".manifest.json"))
    meta.write_text("{not json")
    fits.clear()
    with pytest.warns(StoreEntryWarning, match="is not used"):
        third = train_head(caches[0], "logreg", memo=memo)
    assert fits == ["LogisticRegression"]
    np.testing.assert_array_equal(
        third.estimator.predict(LabeledData.from_cache(caches[1]).X),
        again.estimator.predict(LabeledData.from_cache(caches[1]).X),
    )
