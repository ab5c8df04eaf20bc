"""heads.stats on known truth: tests fire at their nominal rate, intervals cover, families.

The simulations are those of ``bottleneck bench --parts statistics`` (bench/statistics.py)
with fewer draws and a fixed seed. Tolerances are about three binomial standard errors of
the simulated rate at these draw counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.bench.statistics import (
    accuracy_coverage,
    curve_coverage,
    cv_null,
    holdout_null,
)
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.stats import (
    ALPHA,
    clopper_pearson,
    cv_interval,
    family_tests,
    holdout_intervals,
    holm,
    paired_test,
)
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import blobs

#: A test under a true null may fire at most this much above ALPHA in these simulations.
NULL_TOLERANCE = 0.03


def test_cv_test_fires_at_most_nominally_under_a_true_null_and_agrees_with_its_band():
    rates = cv_null(draws=200, seed=1)
    assert rates["after"]["rejected"] <= ALPHA + NULL_TOLERANCE
    assert rates["after"]["disagree"] == 0.0, "sentence and interval come from one computation"


def test_holdout_test_fires_at_most_nominally_and_agrees_with_its_interval():
    rates = holdout_null(draws=600, seed=2)
    assert rates["rejected"] <= ALPHA + NULL_TOLERANCE
    assert rates["disagree"] == 0.0


def test_accuracy_intervals_cover_at_least_90_percent_even_small_and_near_one():
    report = accuracy_coverage(
        sizes=(20, 60), rates=(0.5, 0.9, 0.995), draws=200, n_bootstrap=100, seed=3
    )
    for row in report["rows"]:
        assert row["after"] >= 0.90, row
        assert row["points_after"] == 0.0, "never a zero-width interval"
    near_one = next(r for r in report["rows"] if r["n"] == 20 and r["p"] == 0.995)
    assert near_one["before"] < 0.5, "the percentile bootstrap collapsed to 1.000 [1.000, 1.000]"


def test_learning_curve_intervals_cover_95_percent_within_4_5_points():
    coverage = curve_coverage(draws=200, seed=4)
    assert abs(coverage["after"] - 0.95) <= 0.045
    assert coverage["before"] < 0.85, "over the draws alone the test rows' noise is left out"


def test_intervals_stay_in_range_and_never_collapse():
    y = np.array([0, 1] * 10)
    intervals, _ = holdout_intervals(y, y, 2, np.full(20, 0.01), n_boot=200)
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        low, high = intervals[metric]
        assert 0.0 <= low < high == 1.0, metric
    assert intervals["accuracy"] == clopper_pearson(20, 20)
    assert intervals["log_loss"][0] >= 0.0
    same = paired_test(y == 0, y == 0)  # identical heads: no row tells them apart
    assert same["p"] == 1.0 and same["interval_points"][0] < 0 < same["interval_points"][1]
    low, high = cv_interval([0.98, 1.0, 1.0], 0.5)
    assert high == 1.0 and low < 0.98
    assert cv_interval([1.0, 1.0], 1.0, pooled=clopper_pearson(10, 10))[0] < 1.0


def test_cv_interval_is_the_nadeau_bengio_corrected_t_interval():
    values = [0.80, 0.84, 0.78, 0.86, 0.82]
    low, high = cv_interval(values, 0.25)
    half = 2.776445 * np.sqrt((1 / 5 + 0.25) * np.var(values, ddof=1))  # t(0.975, 4)
    assert (low, high) == pytest.approx((0.82 - half, 0.82 + half))


def test_holm_families_are_adjusted_within_themselves_only():
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.8
    pairs = [(a, a ^ (rng.random(300) < q)) for q in (0.05, 0.1, 0.2)]
    tests = family_tests(pairs, "heads vs winner")
    raw = [paired_test(x, y)["p"] for x, y in pairs]
    assert [t["p"] for t in tests] == pytest.approx(raw)
    assert [t["p_holm"] for t in tests] == pytest.approx(holm(raw))
    assert {t["family"] for t in tests} == {"heads vs winner"} and tests[0]["family_size"] == 3
    for test in tests:  # each interval at its Holm step's level agrees with its p
        low, high = test["interval_points"]
        assert (test["p"] < 1 - test["level"]) == (low > 0 or high < 0)
    assert sorted(t["level"] for t in tests) == pytest.approx([0.95, 0.975, 1 - ALPHA / 3])


@pytest.fixture(scope="module")
def blob_data():
    X, y = blobs(n=400, dim=6, centers=3, std=8.0, seed=5)
    train = LabeledData.from_arrays(X[:250], y[:250], class_names=list("abc"), source="tr")
    test = LabeledData.from_arrays(X[250:], y[250:], class_names=list("abc"), source="te")
    return train, test


def test_adding_baselines_leaves_the_head_family_alone(blob_data):
    train, test = blob_data
    heads = ["logreg", "knn", "knn:n_neighbors=1"]
    rng = np.random.default_rng(0)
    baselines = {
        name: (train.X + rng.normal(0, s, train.X.shape), test.X + rng.normal(0, s, test.X.shape))
        for name, s in (("noisy", 4.0), ("noisier", 8.0))
    }
    alone = compare_heads(train, test, heads=heads, n_bootstrap=100, progress=False)
    both = compare_heads(
        train, test, heads=heads, baselines=baselines, n_bootstrap=100, progress=False
    )
    assert all(0.1 < row.test["p_holm"] < 1 for row in alone.rows[1:])
    for row in alone.rows[1:]:
        assert both.row(row.name).test["p_holm"] == pytest.approx(row.test["p_holm"])
        assert both.row(row.name).test["family"] == "heads vs winner"
    baseline_rows = [row for row in both.rows if row.is_baseline]
    assert {row.test["family"] for row in baseline_rows} == {"transfer"}
    raw = [row.test["p"] for row in baseline_rows]
    assert [row.test["p_holm"] for row in baseline_rows] == pytest.approx(holm(raw))
    # The transfer sentence sets the chosen head against the baseline row chosen on training
    # rows: no choice among the baselines is made on the scored rows, so it is one test.
    transfer, labels = both.transfer, both.eval_labels
    assert transfer["baseline"] == both.selected_baseline.name
    (expected,) = family_tests(
        [(both.selected.predictions == labels, both.selected_baseline.predictions == labels)],
        "transfer",
    )
    assert transfer["family_size"] == 1
    assert transfer["p"] == pytest.approx(expected["p"])
    assert f"p = {transfer['p']:.2g}" in transfer["sentence"]


def test_cv_sentence_and_interval_come_from_one_test(blob_data):
    train, _ = blob_data
    comparison = compare_heads(
        train, cv=5, heads=["logreg", "knn"], n_bootstrap=100, progress=False
    )
    runner = comparison.rows[1]
    test = runner.test
    assert test["method"] == "Nadeau–Bengio corrected t"
    low, high = test["interval_points"]
    assert f"95% CI {low:+.1f} to {high:+.1f}" in comparison.verdict
    assert ("The lead is real" in comparison.verdict) == (low > 0)
    per_fold = [r["accuracy"] for r in comparison.best.fold_metrics]
    gap = 100 * (np.mean(per_fold) - np.mean([r["accuracy"] for r in runner.fold_metrics]))
    assert test["gap_points"] == pytest.approx(gap)
    assert comparison.test_fraction == pytest.approx(0.25, abs=0.01)
