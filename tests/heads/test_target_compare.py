"""Heads per target from the registry, their metrics, thresholds and the baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli.app import cli
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads import target_compare
from bottleneck_transfer.heads.registry import default_heads, head_names, make_head
from bottleneck_transfer.heads.target_compare import compare_targets
from bottleneck_transfer.heads.target_metrics import choose_threshold, point_scores
from click.testing import CliRunner
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.multiclass import OneVsRestClassifier
from target_fixtures import regression_rows, write_target_cache


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A binary, a multi-label and a regression cache (and a binary test cache)."""
    folder = tmp_path_factory.mktemp("targets")
    X, y = make_classification(200, 10, n_informative=4, random_state=0)
    names = np.where(y == 1, "defect", "ok").tolist()
    M, tags = make_multilabel_classification(150, 10, n_classes=3, random_state=0)
    tag_texts = ["|".join("abc"[k] for k in np.flatnonzero(row)) or "a" for row in tags]
    R, values = regression_rows()
    return {
        "binary": write_target_cache(
            folder / "b.h5", X[:140], names[:140], "binary:positive=defect"
        ),
        "binary-test": write_target_cache(
            folder / "bt.h5", X[140:], names[140:], "binary:positive=defect"
        ),
        "multilabel": write_target_cache(folder / "m.h5", M, tag_texts, "multilabel"),
        "regression": write_target_cache(
            folder / "r.h5", R, [str(float(v)) for v in values], "regression:column=age"
        ),
    }


def test_registry_declares_the_targets_of_each_head():
    assert head_names() == ("logreg", "linear-svm", "rbf-svm", "dense", "nystroem", "knn")
    assert head_names("regression") == ("dense", "knn", "ridge", "linear-svr", "kernel-ridge")
    assert head_names("multilabel") == ("logreg", "dense")
    assert "ridge" in default_heads("regression") and "ridge" not in default_heads()
    ovr = make_head("logreg:C=0.5", target="multilabel")[-1]
    assert isinstance(ovr, OneVsRestClassifier) and ovr.estimator.C == 0.5
    with pytest.raises(HeadError, match=r"does not fit regression targets.*ridge"):
        make_head("rbf-svm", target="regression")


def test_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = rng.normal(size=300) + y
    decided = (score >= 0.4).astype(int)
    got = point_scores("binary", y, score, decided)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, score), rel=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, score), rel=1e-9)
    assert got["f1"] == pytest.approx(f1_score(y, decided), rel=1e-12)
    Y = rng.integers(0, 2, (300, 4))
    S = rng.normal(size=(300, 4)) + Y
    D = (S > 0.5).astype(int)
    got = point_scores("multilabel", Y, S, D)
    aps = [average_precision_score(Y[:, k], S[:, k]) for k in range(4)]
    assert got["map"] == pytest.approx(np.mean(aps), rel=1e-9)
    assert got["micro_f1"] == pytest.approx(f1_score(Y, D, average="micro"), rel=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(Y, D, average="macro"), rel=1e-12)
    v = rng.normal(size=300)
    p = v + rng.normal(0, 0.5, 300)
    got = point_scores("regression", v, p, None)
    assert got["r2"] == pytest.approx(r2_score(v, p), rel=1e-12)
    assert got["mae"] == pytest.approx(mean_absolute_error(v, p), rel=1e-12)


def test_threshold_by_f1_and_by_cost_ratio():
    y = np.array([0, 0, 1, 0, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.7, 0.9])
    by_f1 = choose_threshold(y, score)
    assert f1_score(y, score >= by_f1) == max(f1_score(y, score >= t) for t in score)
    # A missed positive costing 10 false alarms: every positive is caught.
    assert (score[y == 1] >= choose_threshold(y, score, cost_ratio=10)).all()
    assert choose_threshold(y, score, cost_ratio=0.1) > 0.4


def test_thresholds_are_chosen_on_training_rows_only(caches, monkeypatch):
    seen = []
    real = target_compare.choose_threshold

    def spy(y, score, cost_ratio=None):
        seen.append(len(y))
        return real(y, score, cost_ratio)

    monkeypatch.setattr(target_compare, "choose_threshold", spy)
    result = compare_targets(caches["binary"], heads=["logreg"], cv=4, n_bootstrap=100)
    row = result.row("logreg")
    for fold in row.folds:
        assert not np.isin(fold.threshold_rows, fold.test).any()
        np.testing.assert_array_equal(fold.threshold_rows, fold.train)
    assert set(seen) <= {len(f.train) for f in row.folds}
    tested = np.sort(np.concatenate([f.test for f in row.folds]))
    np.testing.assert_array_equal(tested, np.arange(140))


def test_the_rows_whose_scores_choose_thresholds_are_training_rows(caches, monkeypatch):
    """On indices: every score a threshold is chosen from (the inner folds' out-of-fold
    scores) is of a row of the fold's training rows, and together they are all of them; the
    held-out rows are scored once, after, by the head fitted on the training rows."""
    from bottleneck_transfer.features.cache import FeatureCache

    with FeatureCache.open(caches["binary"]) as cache:
        index = {row.tobytes(): i for i, row in enumerate(cache.features)}
    scored: list[np.ndarray] = []
    real = target_compare.predict_scores

    def spy(head, X, kind):
        scored.append(np.array([index[row.tobytes()] for row in np.asarray(X, np.float32)]))
        return real(head, X, kind)

    monkeypatch.setattr(target_compare, "predict_scores", spy)
    result = compare_targets(caches["binary"], heads=["logreg"], cv=4, n_bootstrap=50)
    folds = [*result.baseline.folds, *result.row("logreg").folds]
    calls = target_compare.INNER_FOLDS + 1  # the inner folds' validation rows, then the test
    assert len(scored) == calls * len(folds)
    for k, fold in enumerate(folds):
        *inner, held = scored[k * calls : (k + 1) * calls]
        chose = np.concatenate(inner)
        assert not np.isin(chose, fold.test).any()
        np.testing.assert_array_equal(np.sort(chose), np.sort(fold.train))
        np.testing.assert_array_equal(held, fold.test)


def test_every_metric_has_its_interval(caches):
    for kind, heads in (("binary", ["logreg"]), ("multilabel", ["logreg"])):
        result = compare_targets(caches[kind], heads=heads, cv=3, n_bootstrap=200)
        for row in (result.row("logreg"), result.baseline):
            assert set(row.intervals) == set(row.scores), kind
            for key, (low, high) in ((k, v) for k, v in row.intervals.items() if v):
                assert low - 1e-12 <= row.scores[key] <= high + 1e-12, (kind, key)


def test_test_rows_never_move_the_threshold(caches, tmp_path):
    """Holdout: flipping every test label changes the scores, never the thresholds."""
    from bottleneck_transfer.features.cache import FeatureCache

    with FeatureCache.open(caches["binary-test"]) as cache:
        X, y = cache.features, cache.targets
    names = np.where(y == 1, "ok", "defect").tolist()  # every label flipped
    flipped = write_target_cache(tmp_path / "flip.h5", X, names, "binary:positive=defect")
    runs = [
        compare_targets(caches["binary"], test, heads=["logreg"], n_bootstrap=100)
        for test in (caches["binary-test"], flipped)
    ]
    first, second = (run.row("logreg").folds[0] for run in runs)
    assert first.thresholds[0] == second.thresholds[0]
    aucs = [run.row("logreg").scores["roc_auc"] for run in runs]
    assert aucs[0] > 0.5 > aucs[1] and aucs[1] == pytest.approx(1 - aucs[0], rel=1e-9)


def test_regression_has_the_mean_predictor_baseline(caches):
    result = compare_targets(
        caches["regression"], heads=["ridge", "knn"], cv=3, n_bootstrap=200, metric="mae"
    )
    baseline = result.baseline
    assert baseline.name == "mean predictor"
    for fold in baseline.folds:
        expected = result.y[fold.train].astype(np.float64).mean()
        np.testing.assert_allclose(fold.score, expected, rtol=1e-12)
    ridge = result.row("ridge")
    assert ridge.scores["r2"] > 0.9 and ridge.versus_baseline["beats"]
    assert ridge.intervals["mae"][0] <= ridge.scores["mae"] <= ridge.intervals["mae"][1]
    assert result.winner == "ridge" and "beats the mean predictor" in result.verdict


def test_multilabel_logreg_beats_the_prevalence_predictor(caches):
    result = compare_targets(caches["multilabel"], heads=["logreg"], cv=3, n_bootstrap=100)
    row = result.row("logreg")
    assert result.baseline.name == "prevalence predictor"
    assert row.scores["map"] > result.baseline.scores["map"]
    assert set(row.details["per_tag_auc"]) == {"a", "b", "c"}
    assert all(len(f.thresholds) == 3 for f in row.folds)


def test_heads_and_metrics_of_other_targets_are_refused(caches):
    with pytest.raises(HeadError, match="does not fit regression targets"):
        compare_targets(caches["regression"], heads=["logreg"])
    with pytest.raises(HeadError, match="'roc-auc' is not a metric of regression targets"):
        compare_targets(caches["regression"], heads=["ridge"], metric="roc-auc")
    with pytest.raises(HeadError, match="is not the training cache's"):
        compare_targets(caches["binary"], caches["regression"], heads=["logreg"])


def test_cli_compare_json_on_a_regression_cache(caches, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            str(caches["regression"]),
            "--heads",
            "ridge",
            "--cv",
            "3",
            "--bootstrap",
            "100",
            "--json",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["target"]["kind"] == "regression" and payload["metric"] == "r2"
    assert payload["baseline"]["name"] == "mean predictor"
    assert set(payload["rows"][0]["intervals"]) == {"r2", "mae", "rmse"}
    assert (out / "scatter.png").stat().st_size > 0 and (out / "report.md").is_file()
    refused = CliRunner().invoke(
        cli, ["compare", str(caches["regression"]), "--baseline", "raw-pixels"]
    )
    assert refused.exit_code == 1
    assert "--baseline apply to class targets only" in refused.output
    curve = CliRunner().invoke(cli, ["compare", str(caches["regression"]), "--learning-curve", "5"])
    assert curve.exit_code == 1 and "without learning curves" in curve.output


def test_what_would_stream_is_refused_in_one_line(caches):
    """A target's comparison holds its features in memory: the streaming path (a cache over
    the memory budget, or --out-of-core) is refused naming the cache, sizes and what to do."""
    target_compare.check_in_memory(caches["regression"], None)  # 120 x 8 floats: in memory
    with pytest.raises(HeadError, match=r"would be streamed \(they exceed the memory budget"):
        target_compare.check_in_memory(caches["regression"], 1000)
    refused = CliRunner().invoke(cli, ["compare", str(caches["regression"]), "--out-of-core"])
    assert refused.exit_code == 1, refused.output
    said = "would be streamed (--out-of-core was given"
    assert said in refused.output and "regression target is compared in memory" in refused.output
    assert "Traceback" not in refused.output


def test_copies_stay_on_one_side_of_every_split(tmp_path):
    X, values = regression_rows(n=60)
    X[30:40] = X[:10]  # rows 30-39 are copies of rows 0-9
    path = write_target_cache(
        tmp_path / "copies.h5", X, [str(float(v)) for v in values], "regression"
    )
    result = compare_targets(path, heads=["ridge"], cv=3, n_bootstrap=100)
    for fold in result.row("ridge").folds:
        held = set(fold.test.tolist())
        assert all((k in held) == (k + 30 in held) for k in range(10))


def test_head_best_compares_a_target_cache(caches):
    from bottleneck_transfer.heads.best import best_head

    spec, origin = best_head(caches["regression"], heads=["ridge", "knn"], metric="mae")
    assert spec == "ridge" and "validation mae" in origin


def test_train_refuses_a_regression_cache_in_one_line(caches, tmp_path):
    result = CliRunner().invoke(
        cli, ["train", str(caches["regression"]), "--head", "ridge", "-o", str(tmp_path / "h")]
    )
    assert result.exit_code == 1
    assert "has a regression target, not classes" in result.output
    assert len(result.output.strip().splitlines()) == 1
