"""compare_heads: same splits, numbers equal to scikit-learn's, honest tests, guards."""

from __future__ import annotations

import bottleneck_transfer.heads.training as training_module
import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError, SmallDataWarning
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.heads.compare import NegativeTransferWarning, compare_heads
from bottleneck_transfer.heads.registry import make_head, set_random_state
from bottleneck_transfer.heads.stats import (
    _resamples,
    bootstrap,
    clopper_pearson,
    cv_interval,
    holm,
    paired_test,
)
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import BASE, blobs, digits_caches, write_cache
from scipy.stats import binom, binomtest
from sklearn.datasets import load_digits
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
)
from sklearn.model_selection import StratifiedKFold


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def holdout(caches):
    train, test = caches
    return compare_heads(train, test, heads=["logreg", "linear-svm", "knn"], n_bootstrap=500)


def test_holdout_numbers_equal_scikit_learn_on_the_same_rows(holdout, caches):
    train, test = (LabeledData.from_cache(p) for p in caches)
    head = set_random_state(make_head("logreg"), 0).fit(train.X, train.y)
    predictions = head.predict(test.X)
    row = holdout.row("logreg")
    np.testing.assert_array_equal(row.predictions, predictions)
    assert row.metrics["accuracy"] == accuracy_score(test.y, predictions)
    assert row.metrics["balanced_accuracy"] == balanced_accuracy_score(test.y, predictions)
    assert row.metrics["macro_f1"] == f1_score(test.y, predictions, average="macro")
    # The same fit on another CPU (or BLAS thread count) sums float32 in another order:
    # equal to scikit-learn's log loss as a behaviour, not bit for bit.
    expected = log_loss(test.y, head.predict_proba(test.X))
    assert row.metrics["log_loss"] == pytest.approx(expected, rel=1e-5)
    svm = holdout.row("linear-svm")  # calibrated: its probabilities have a log-loss
    assert svm.metrics["log_loss"] > 0 and svm.calibration["method"] == "temperature"
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss"):
        low, high = row.intervals[metric]
        assert low <= row.metrics[metric] <= high
    assert holdout.mode == "holdout" and holdout.eval_ids == test.ids
    assert row.fit_seconds > 0 and row.predict_ms_per_1k > 0


def test_rows_are_ranked_and_tested_against_the_winner(holdout, caches):
    test = LabeledData.from_cache(caches[1])
    # Ranked by the validation score of the choice (training rows), never by test scores.
    validation = [r.validation for r in holdout.rows]
    assert validation == sorted(validation, reverse=True)
    assert validation[0] == holdout.choices[0].scores[holdout.winner]
    assert [r.rank for r in holdout.rows] == [1, 2, 3]
    assert holdout.winner == holdout.rows[0].name and holdout.best.test is None
    winner_right = holdout.best.predictions == test.y
    for row in holdout.rows[1:]:
        other_right = row.predictions == test.y
        b = int(np.sum(winner_right & ~other_right))
        c = int(np.sum(~winner_right & other_right))
        assert (row.test["b"], row.test["c"]) == (b, c)
    assert holdout.winner in holdout.verdict and "chosen on training rows" in holdout.verdict


def test_bootstrap_matches_scikit_learn_on_each_resample():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    replicates = bootstrap(y_true, y_pred, 4, n_boot=5, seed=3)
    (indices,) = list(_resamples(200, 5, 3))
    for k, idx in enumerate(indices):
        t, p = y_true[idx], y_pred[idx]
        assert replicates["accuracy"][k] == pytest.approx(accuracy_score(t, p))
        assert replicates["balanced_accuracy"][k] == pytest.approx(balanced_accuracy_score(t, p))
        assert replicates["macro_f1"][k] == pytest.approx(f1_score(t, p, average="macro"))


def test_cv_uses_the_same_stratified_folds_for_every_head(caches):
    comparison = compare_heads(caches[0], cv=4, heads=["logreg", "knn"], random_state=3)
    data = LabeledData.from_cache(caches[0])
    expected = StratifiedKFold(4, shuffle=True, random_state=3).split(data.X, data.y)
    for (fit_rows, eval_rows), (want_fit, want_eval) in zip(
        comparison.splits, expected, strict=True
    ):
        np.testing.assert_array_equal(fit_rows, want_fit)
        np.testing.assert_array_equal(eval_rows, want_eval)
    row = comparison.row("logreg")
    per_fold = []
    for fit_rows, eval_rows in comparison.splits:
        head = set_random_state(make_head("logreg"), 3).fit(data.X[fit_rows], data.y[fit_rows])
        per_fold.append(accuracy_score(data.y[eval_rows], head.predict(data.X[eval_rows])))
        assert accuracy_score(data.y[eval_rows], row.predictions[eval_rows]) == per_fold[-1]
    assert [f["accuracy"] for f in row.fold_metrics] == per_fold
    assert row.metrics["accuracy"] == pytest.approx(np.mean(per_fold))
    assert row.spread["accuracy"] == pytest.approx(np.std(per_fold, ddof=1))
    assert comparison.n_folds == 4
    n = len(data.y)
    ratio = np.mean([len(e) / (n - len(e)) for _, e in comparison.splits])
    pooled = clopper_pearson(int((row.predictions == data.y).sum()), n)
    assert row.intervals["accuracy"] == pytest.approx(cv_interval(per_fold, ratio, pooled=pooled))
    np.testing.assert_array_equal(comparison.eval_labels, data.y)


def test_tuning_never_sees_the_evaluation_rows(caches, monkeypatch):
    seen = []
    real = training_module.tune_head

    def spy(spec, X, y, **kwargs):
        seen.append(X)
        return real(spec, X, y, **kwargs)

    monkeypatch.setattr(training_module, "tune_head", spy)
    comparison = compare_heads(caches[0], cv=3, heads=["logreg"], tune=True, n_jobs=1)
    tunings = comparison.row("logreg").tuning
    assert len(tunings) == 3
    for (fit_rows, eval_rows), tuning in zip(comparison.splits, tunings, strict=True):
        used = np.concatenate([tuning.train_indices, tuning.val_indices])
        assert set(used) == set(fit_rows)
        assert not set(used) & set(eval_rows)
    # Holdout: tuning only ever receives rows of the training cache.
    seen.clear()
    train, test = (LabeledData.from_cache(p) for p in caches)
    holdout = compare_heads(train, test, heads=["logreg"], tune=True, n_jobs=1)
    assert len(seen) == 1 and np.array_equal(seen[0], train.X)
    tuning = holdout.row("logreg").tuning[0]
    assert max(tuning.train_indices.max(), tuning.val_indices.max()) < len(train)
    assert "C" in tuning.best_params


def test_features_are_read_once_per_cache(caches, monkeypatch):
    reads = []
    original = FeatureCache.features

    def counting(self):
        reads.append(self.path.name)
        return original.fget(self)

    monkeypatch.setattr(FeatureCache, "features", property(counting))
    compare_heads(caches[0], caches[1], heads=["logreg", "knn", "linear-svm"], n_bootstrap=100)
    assert sorted(reads) == ["digits-test.h5", "digits-train.h5"]


def test_refuses_caches_from_another_base_size_or_class_list(caches, tmp_path):
    X, y = load_digits(return_X_y=True)
    names = [str(i) for i in range(10)]
    other_base = write_cache(
        tmp_path / "other.h5", X[:300], y[:300], class_names=names, base={**BASE, "layer": "x"}
    )
    with pytest.raises(HeadError, match=r"another base \(differs in: base\.layer\)"):
        compare_heads(caches[0], other_base, heads=["logreg"])
    smaller = write_cache(tmp_path / "dim.h5", X[:300, :32], y[:300], class_names=names)
    with pytest.raises(HeadError, match="feature size is 32, expected 64"):
        compare_heads(caches[0], smaller, heads=["logreg"])
    renamed = write_cache(
        tmp_path / "names.h5", X[:300], y[:300], class_names=[f"c{i}" for i in range(10)]
    )
    with pytest.raises(HeadError, match="class names are"):
        compare_heads(caches[0], renamed, heads=["logreg"])


def test_guards_single_class_unlabeled_and_too_few_for_cv(tmp_path):
    X, y = blobs(n=120, dim=4, centers=3)
    one = write_cache(tmp_path / "one.h5", X, np.zeros(120, int), class_names=["a", "b"])
    with pytest.raises(HeadError, match=r"single class \('a'\)"):
        compare_heads(one, heads=["logreg"])
    unlabeled = write_cache(tmp_path / "unl.h5", X, np.full(120, -1), class_names=["a", "b"])
    with pytest.raises(HeadError, match="120 of 120 rows are unlabeled"):
        compare_heads(unlabeled, heads=["logreg"])
    y_small = y.copy()
    y_small[y_small == 2] = 0
    y_small[:3] = 2
    few = write_cache(tmp_path / "few.h5", X, y_small, class_names=["a", "b", "c"])
    with pytest.raises(HeadError, match=r"5-fold cross-validation in class 'c' \(3\)"):
        compare_heads(few, cv=5, heads=["logreg"])
    with pytest.raises(HeadError, match="only one of a test cache, --cv K"):
        compare_heads(few, few, cv=3)
    with pytest.raises(HeadError, match="listed once"):
        compare_heads(few, cv=3, heads=["logreg", "logreg"])


def test_small_or_imbalanced_data_warns(tmp_path):
    X, y = blobs(n=45, dim=4, centers=3)
    small = write_cache(tmp_path / "small.h5", X, y, class_names=["a", "b", "c"])
    with pytest.warns(SmallDataWarning, match="fewer than 20 rows in class 'a'"):
        result = compare_heads(small, cv=3, heads=["logreg"])
    assert any("fewer than 20" in w for w in result.warnings)
    X, y = blobs(n=1100, dim=4, centers=2)
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:40]])
    skewed = write_cache(tmp_path / "skewed.h5", X[keep], y[keep], class_names=["a", "b"])
    with pytest.warns(SmallDataWarning, match=r"imbalanced 13\.8:1 .*warned from 3:1"):
        compare_heads(skewed, cv=3, heads=["logreg"])


def test_exact_mcnemar_agrees_with_its_interval_and_holm():
    a = np.array([True] * 10 + [False] * 2 + [True] * 50)
    b = np.array([False] * 10 + [True] * 2 + [True] * 50)
    small = paired_test(a, b)
    assert (small["b"], small["c"], small["method"]) == (10, 2, "exact McNemar")
    assert small["p"] == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert small["gap_points"] == pytest.approx(100 * 8 / 62)
    low, high = small["interval_points"]
    assert 0 < low < small["gap_points"] < high  # p < 0.05 and the interval leaves out 0
    big = paired_test(
        np.r_[np.ones(40, bool), np.zeros(10, bool)], np.r_[np.zeros(40, bool), np.ones(10, bool)]
    )
    assert big["p"] == pytest.approx(2 * binom.cdf(10, 50, 0.5))
    assert paired_test(a, a)["p"] == 1.0
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_verdict_says_whether_the_lead_is_real(tmp_path):
    X, y = blobs(n=900, dim=10, centers=3, std=6.0, seed=2)
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.4
    train_path = write_cache(
        tmp_path / "tr.h5", X[~test], y[~test], class_names=list("abc"), source="train"
    )
    test_path = write_cache(tmp_path / "te.h5", X[test], y[test], class_names=list("abc"))
    strong = compare_heads(train_path, test_path, heads=["logreg", "knn:n_neighbors=1"])
    assert strong.winner == "logreg"
    assert "The lead is real" in strong.verdict
    assert strong.row("knn:n_neighbors=1").test["p_holm"] < 0.05
    tied = compare_heads(train_path, test_path, heads=["logreg", "logreg:C=0.5"])
    assert "NOT significant" in tied.verdict and "statistically tied" in tied.verdict


def test_nystroem_rows_say_so(caches):
    comparison = compare_heads(
        caches[0], caches[1], heads=["rbf-svm:max_exact_samples=500,n_components=300"]
    )
    (note,) = comparison.rows[0].notes
    assert "Nyström" in note and "> max_exact_samples=500" in note
    assert comparison.rows[0].metrics["accuracy"] > 0.9


def _baseline_features(data: LabeledData, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return data.X + rng.normal(0, noise, data.X.shape).astype(np.float32)


def test_baselines_measure_transfer_gain_with_the_same_head_set(caches, tmp_path):
    train, test = (LabeledData.from_cache(p) for p in caches)
    noisy_train = write_cache(
        tmp_path / "b-train.h5",
        _baseline_features(train, 12, 0),
        train.y,
        ids=train.ids,
        class_names=train.class_names,
        base={"name": "random"},
    )
    comparison = compare_heads(
        train,
        test,
        heads=["logreg", "knn"],
        baselines={"random-base": (noisy_train, _baseline_features(test, 12, 1))},
        baseline_heads="all",
    )
    names = [r.name for r in comparison.rows]
    assert names[:2] == sorted(names[:2], key=lambda n: -comparison.row(n).validation)
    assert set(names[2:]) == {"logreg@random-base", "knn@random-base"}
    assert all(r.is_baseline for r in comparison.rows[2:])
    transfer = comparison.transfer
    best_baseline = comparison.rows[2]  # the baseline row chosen on training rows
    assert transfer["baseline"] == best_baseline.name == comparison.baseline_choices[0].chosen
    gap = 100 * (comparison.best.metrics["accuracy"] - best_baseline.metrics["accuracy"])
    assert transfer["gain_points"] == pytest.approx(gap) and gap > 5
    low, high = transfer["interval_points"]
    assert low <= gap <= high
    assert transfer["verdict"] == "gain" and transfer["sentence"].startswith("Transfer gain")
    assert "baseline:random-base" in comparison.caches


def test_by_default_only_the_winner_runs_on_baselines(caches):
    train, test = (LabeledData.from_cache(p) for p in caches)
    comparison = compare_heads(
        train,
        test,
        heads=["logreg", "knn"],
        baselines={"a": (train.X[:, :8], test.X[:, :8]), "b": (train.X[:, 8:], test.X[:, 8:])},
    )
    baseline_names = {r.name for r in comparison.rows if r.is_baseline}
    assert baseline_names == {f"{comparison.winner}@a", f"{comparison.winner}@b"}
    assert comparison.caches["baseline:a"]["train"]["dim"] == 8
    with pytest.raises(HeadError, match="baseline_heads must be one of winner, all"):
        compare_heads(train, test, heads=["logreg"], baseline_heads="best")


def test_baseline_that_wins_is_reported_as_negative_transfer(caches):
    train, _ = (LabeledData.from_cache(p) for p in caches)
    degraded = LabeledData.from_arrays(
        _baseline_features(train, 15, 2),
        train.y,
        ids=train.ids,
        class_names=train.class_names,
        source="degraded",
    )
    with pytest.warns(NegativeTransferWarning, match="Negative transfer"):
        comparison = compare_heads(
            degraded, cv=3, heads=["logreg"], baselines={"clean": (train.X, None)}
        )
    assert comparison.transfer["verdict"] == "negative"
    assert comparison.transfer["gain_points"] < 0
    assert comparison.transfer["interval_kind"] == "95% CI of the Nadeau–Bengio corrected t test"


def test_baselines_must_hold_the_same_images_and_classes(caches, tmp_path):
    train = LabeledData.from_cache(caches[0])
    shuffled = write_cache(
        tmp_path / "shuffled.h5",
        train.X[::-1],
        train.y[::-1],
        ids=train.ids[::-1],
        class_names=train.class_names,
    )
    with pytest.raises(
        HeadError, match=r"same images in the same order.*first difference at row 0"
    ):
        compare_heads(train, cv=3, heads=["logreg"], baselines={"x": (shuffled, None)})
    renamed = write_cache(
        tmp_path / "renamed.h5",
        train.X,
        train.y,
        ids=train.ids,
        class_names=[f"k{i}" for i in range(10)],
    )
    with pytest.raises(HeadError, match=r"baseline 'x'.*class names"):
        compare_heads(train, cv=3, heads=["logreg"], baselines={"x": (renamed, None)})
    with pytest.raises(HeadError, match="needs a test feature set"):
        compare_heads(train, caches[1], heads=["logreg"], baselines={"x": (train.X, None)})
    with pytest.raises(HeadError, match="has 5 rows"):
        compare_heads(train, cv=3, heads=["logreg"], baselines={"x": (train.X[:5], None)})


def test_dense_head_takes_part_in_a_comparison(caches):
    comparison = compare_heads(caches[0], cv=2, heads=["dense:epochs=10", "logreg"])
    row = comparison.row("dense:epochs=10")
    assert row.metrics["accuracy"] > 0.85 and row.metrics["log_loss"] is not None
