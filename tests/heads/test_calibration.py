"""Probabilities are probabilities: margin heads are calibrated on training rows only, and
compare reports how calibrated every head is (issue 22, part 2)."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from bottleneck_transfer.cli.head_cmds import COMMANDS
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.calibrated import HeldOutCalibration
from bottleneck_transfer.heads.calibration import (
    N_BINS,
    brier_score,
    calibration_folds,
    expected_calibration_error,
    reliability_bins,
)
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.declared import metric_named
from bottleneck_transfer.heads.linear_svm import LinearSVM
from bottleneck_transfer.heads.registry import (
    CALIBRATION_HELD_ROWS,
    calibration_method,
    classifier,
    has_proba,
    head_kind,
    make_head,
    without_calibration,
)
from bottleneck_transfer.heads.report import write_report
from bottleneck_transfer.heads.selection import choice_calibrates
from bottleneck_transfer.heads.training import (
    LabeledData,
    fit_head,
    load_head,
    save_head,
    train_head,
)
from click.testing import CliRunner
from heads_fixtures import digits_caches
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def overlapping():
    """Four overlapping classes: a linear SVM's margins are far from probabilities here."""
    X, y = make_classification(
        n_samples=1600,
        n_features=20,
        n_informative=8,
        n_classes=4,
        n_clusters_per_class=1,
        random_state=0,
    )
    return X.astype(np.float32), y


def test_brier_and_ece_by_hand():
    proba = np.array([[1.0, 0.0], [0.6, 0.4]])
    y = np.array([0, 1])
    classes = np.array([0, 1])
    assert brier_score(y, proba, classes) == pytest.approx((0 + 0.6**2 + 0.6**2) / 2)
    # row 1: confidence 1.0, right (last bin); row 2: confidence 0.6, wrong
    assert expected_calibration_error(y, proba, classes) == pytest.approx(0.5 * 0.6)
    bins = reliability_bins(y, proba, classes)
    assert [(b["rows"], b["accuracy"]) for b in bins] == [(1, 0.0), (1, 1.0)]
    assert bins[-1]["high"] == 1.0 and bins[0]["high"] - bins[0]["low"] == pytest.approx(1 / N_BINS)


def test_the_registry_declares_which_heads_are_calibrated_and_how():
    assert {
        name: head_kind(name).calibration for name in ("logreg", "dense", "knn")
    } == dict.fromkeys(("logreg", "dense", "knn"))
    assert head_kind("linear-svm").calibration == head_kind("rbf-svm").calibration == "temperature"
    assert calibration_method("linear-svm:calibrate=false") is None
    assert calibration_method("knn:calibrate=true") == "temperature"
    assert calibration_method("logreg:calibrate=sigmoid") == "sigmoid"
    with pytest.raises(HeadError, match="calibrate must be true, false or one of"):
        make_head("linear-svm:calibrate=platt")
    assert without_calibration("rbf-svm") == "rbf-svm:calibrate=false"
    head = make_head("linear-svm:C=0.5")
    assert isinstance(head[-1], CalibratedClassifierCV) and head[-1].ensemble is False
    assert classifier(head).C == 0.5 and has_proba(head)
    assert not has_proba(make_head("linear-svm:C=0.5,calibrate=false"))


def test_calibrated_linear_svm_has_a_lower_ece_than_its_softmax_of_scores(overlapping):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:1000], y[:1000])
    classes = np.arange(4)
    raw = head_scores(fit_head("linear-svm:calibrate=false", data).estimator, X[1000:])
    calibrated = fit_head("linear-svm", data).estimator
    proba = calibrated.predict_proba(X[1000:])
    raw_ece = expected_calibration_error(y[1000:], raw, classes)
    ece = expected_calibration_error(y[1000:], proba, classes)
    assert raw_ece > 0.1 and ece < raw_ece / 3, (raw_ece, ece)
    assert brier_score(y[1000:], proba, classes) < brier_score(y[1000:], raw, classes)
    # temperature scaling keeps the SVM's predictions
    np.testing.assert_array_equal(proba.argmax(1), raw.argmax(1))


def test_calibration_folds_partition_the_rows_and_keep_views_with_their_image():
    y = np.repeat([0, 1, 2], 6)
    groups = np.arange(18)
    groups = np.concatenate([groups, [0, 0, 7, 13]])  # views of images 0, 7 and 13
    y = np.concatenate([y, y[[0, 0, 7, 13]]])
    folds = calibration_folds(y, groups, 5, seed=0)
    assert len(folds) == 5
    held = np.concatenate([h for _, h in folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(len(y)))  # a partition
    for fit, held_rows in folds:
        assert not set(groups[fit]) & set(groups[held_rows])  # no image on both sides
    with pytest.raises(ValueError, match="at least 2 images of every class"):
        calibration_folds(np.array([0, 0, 1]), np.arange(3), 5, seed=0)


def test_calibration_is_fitted_on_the_training_rows_of_each_fold_only(overlapping, monkeypatch):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:300], y[:300])
    seen: list[tuple[np.ndarray, list]] = []
    original = HeldOutCalibration.fit

    def spy(self, X_fit, y_fit):
        seen.append((X_fit, list(self.cv)))
        return original(self, X_fit, y_fit)

    monkeypatch.setattr(HeldOutCalibration, "fit", spy)
    comparison = compare_heads(data, heads=["linear-svm"], cv=3, n_jobs=1, progress=False)
    assert len(seen) == 3
    for (fit_rows, eval_rows), (X_fit, folds) in zip(comparison.splits, seen, strict=True):
        assert not set(fit_rows) & set(eval_rows)
        # exactly the fold's training rows (scaled by the head's scaler), no evaluation row
        expected = StandardScaler().fit_transform(data.X[fit_rows])
        np.testing.assert_allclose(X_fit, expected, rtol=1e-6, atol=1e-6)
        # its folds split those rows only: every one held out once
        held = np.concatenate([h for _, h in folds])
        np.testing.assert_array_equal(np.sort(held), np.arange(len(fit_rows)))
        assert all(not set(f) & set(h) for f, h in folds)


def test_a_saved_calibrated_head_loads_back_through_the_trust_check(overlapping, tmp_path):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:200], y[:200])
    for spec in ("linear-svm", "knn:calibrate=sigmoid"):
        trained = train_head(data, spec)
        path = save_head(trained, tmp_path / f"{spec.split(':')[0]}.skops")
        loaded = load_head(path)
        assert loaded.metadata["params"]["calibrate"] == calibration_method(spec)
        np.testing.assert_allclose(
            loaded.estimator.predict_proba(X[200:]), trained.estimator.predict_proba(X[200:])
        )
    assert train_head(data, "linear-svm:calibrate=false").metadata["params"]["calibrate"] is False


def test_compare_reports_log_loss_brier_and_ece_for_every_head_and_draws_reliability(
    overlapping, tmp_path
):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:300], y[:300])
    test = LabeledData.from_arrays(X[300:600], y[300:600], source="test")
    heads = ["logreg", "linear-svm", "knn", "linear-svm:calibrate=false"]
    comparison = compare_heads(data, test, heads=heads, n_jobs=1, progress=False)
    paths = write_report(comparison, tmp_path / "report")
    report = json.loads(paths["report.json"].read_text())
    rows = {row["name"]: row for row in report["rows"]}
    for name in heads[:3]:
        calibration = rows[name]["calibration"]
        assert rows[name]["metrics"]["log_loss"] > 0
        assert 0 < calibration["brier"] < 2 and 0 <= calibration["ece"] < 1
        assert calibration["n_bins"] == N_BINS
        assert sum(b["rows"] for b in calibration["bins"]) == 300
    assert rows["linear-svm"]["calibration"]["method"] == "temperature"
    assert rows["logreg"]["calibration"]["method"] is None
    scores = rows["linear-svm:calibrate=false"]
    assert scores["metrics"]["log_loss"] is None and scores["calibration"]["ece"] is None
    png = paths["reliability.png"]
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["report.md"].read_text()
    assert "(reliability.png)" in markdown and "| Brier | ECE |" in markdown


def test_no_calibrate_on_the_command_line_trains_and_compares_scores(tmp_path):
    train_cache, test_cache = digits_caches(tmp_path)
    cli = click.Group(commands=COMMANDS)
    args = ["train", train_cache, "--head", "linear-svm", "--no-calibrate", "--json"]
    result = CliRunner().invoke(cli, [*map(str, args), "-o", str(tmp_path / "svm.skops")])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    assert meta["head"] == "linear-svm:calibrate=false" and meta["params"]["calibrate"] is False
    assert not has_proba(load_head(tmp_path / "svm.skops").estimator)
    args = ["compare", train_cache, "--test", test_cache, "--heads", "linear-svm,logreg"]
    result = CliRunner().invoke(cli, [*map(str, args), "--no-calibrate", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["rows"]}
    assert set(rows) == {"linear-svm:calibrate=false", "logreg"}
    assert rows["linear-svm:calibrate=false"]["calibration"]["ece"] is None
    assert rows["logreg"]["calibration"]["ece"] is not None


def test_a_calibrated_head_fits_once_per_held_fold_and_once_on_all_rows(overlapping, monkeypatch):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:1000], y[:1000])
    fitted: list[np.ndarray] = []
    original = LinearSVM.fit

    def spy(self, X_fit, y_fit):
        fitted.append(np.asarray(X_fit).copy())
        return original(self, X_fit, y_fit)

    monkeypatch.setattr(LinearSVM, "fit", spy)
    head = fit_head("linear-svm", data).estimator
    calibration = head[-1]
    folds = calibration.cv
    # 200 held rows per fold of 1,000 rows: the first 3 folds hold CALIBRATION_HELD_ROWS
    assert CALIBRATION_HELD_ROWS == 500 and len(folds) == 3
    assert calibration.n_fits_ == len(fitted) == 4
    assert [len(f) for f in fitted] == [800, 800, 800, 1000]
    held = calibration.held_rows_
    np.testing.assert_array_equal(held, np.concatenate([h for _, h in folds]))
    assert len(np.unique(held)) == len(held) == 600
    scaled = head[0].transform(data.X)
    for X_fit, (fit_rows, held_rows) in zip(fitted, folds, strict=False):
        assert not set(fit_rows) & set(held_rows)
        # the fold's fit saw none of its held rows (compared by content)
        seen = {row.tobytes() for row in X_fit}
        assert not seen & {row.tobytes() for row in scaled[held_rows]}
    proba = head.predict_proba(X[1000:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    ece = expected_calibration_error(y[1000:], proba, np.arange(4))
    assert ece < 0.05, ece


def test_small_training_sets_hold_every_row_out_once(overlapping):
    X, y = overlapping
    head = fit_head("linear-svm", LabeledData.from_arrays(X[:300], y[:300])).estimator
    assert head[-1].n_fits_ == 6
    np.testing.assert_array_equal(np.sort(head[-1].held_rows_), np.arange(300))


def test_held_out_calibration_refuses_a_row_held_twice(overlapping):
    X, y = overlapping
    folds = [(np.arange(100, 400), np.arange(100)), (np.arange(50, 400), np.arange(50))]
    head = HeldOutCalibration(LinearSVM(), method="temperature", cv=folds)
    with pytest.raises(ValueError, match="more than once"):
        head.fit(X[:400], y[:400])


@pytest.mark.parametrize(("metric", "calibrated_fits"), [("accuracy", 2), ("log-loss", 4)])
def test_choices_skip_a_calibration_that_cannot_change_their_score(
    overlapping, monkeypatch, metric, calibrated_fits
):
    X, y = overlapping
    data = LabeledData.from_arrays(X[:300], y[:300])
    calls: list[int] = []
    original = HeldOutCalibration.fit

    def spy(self, X_fit, y_fit):
        calls.append(len(X_fit))
        return original(self, X_fit, y_fit)

    monkeypatch.setattr(HeldOutCalibration, "fit", spy)
    comparison = compare_heads(
        data, heads=["logreg", "linear-svm"], cv=2, metric=metric, n_jobs=1, progress=False
    )
    # the 2 folds' fits are calibrated; the choices' fits only where log-loss reads proba
    assert len(calls) == calibrated_fits
    assert comparison.row("linear-svm").calibration["ece"] is not None
    assert choice_calibrates("linear-svm", metric_named(metric)) == (metric == "log-loss")
