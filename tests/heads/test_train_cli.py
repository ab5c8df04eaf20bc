"""train / evaluate / compare commands, saved heads (skops, allow-list), out-of-core training."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from bottleneck_transfer.cli.head_cmds import COMMANDS
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.heads.training import (
    AccuracyBelowMinimumError,
    LabeledData,
    evaluate_head,
    load_head,
    save_head,
    train_head,
)
from click.testing import CliRunner
from heads_fixtures import BASE, digits_caches, write_cache
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score


@pytest.fixture(scope="module")
def cli() -> click.Group:
    group = click.Group()
    for command in COMMANDS:
        group.add_command(command)
    return group


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


def run(cli, *args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("command", ["compare", "train", "evaluate"])
def test_every_command_has_help_with_an_example(cli, command):
    result = run(cli, command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output and f"bottleneck {command} " in result.output


def test_compare_prints_a_table_and_json(cli, caches):
    train, test = caches
    result = run(cli, "compare", train, "--test", test, "--heads", "logreg,knn", "--bootstrap", 200)
    assert result.exit_code == 0, result.output
    assert "chosen on training rows only" in result.output and " * " in result.output
    result = run(
        cli, "compare", train, "--test", test, "--heads", "logreg,knn", "--json", "--bootstrap", 200
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "holdout" and {r["name"] for r in data["rows"]} == {"logreg", "knn"}
    assert data["caches"]["test"]["path"] == str(test)


def test_compare_cv_with_report_and_baseline(cli, caches, tmp_path):
    train = LabeledData.from_cache(caches[0])
    pixels = write_cache(
        tmp_path / "px.h5",
        np.random.default_rng(0).normal(size=(len(train), 8)),
        train.y,
        ids=train.ids,
        class_names=train.class_names,
        base={"name": "raw-pixels"},
    )
    report = tmp_path / "reports" / "run1"
    result = run(
        cli,
        "compare",
        caches[0],
        "--cv",
        3,
        "--heads",
        "logreg",
        "--report",
        report,
        "--baseline-cache",
        f"raw-pixels={pixels}",
    )
    assert result.exit_code == 0, result.output
    assert "logreg@raw-pixels" in result.output and "Transfer gain" in result.output
    assert (report / "report.json").exists() and (report / "confusion.png").exists()
    assert json.loads((report / "report.json").read_text())["transfer"]["verdict"] == "gain"


def test_compare_prints_small_data_warnings_once(cli, tmp_path):
    X, y = load_digits(return_X_y=True)
    keep = np.flatnonzero(y < 3)[:45]
    small = write_cache(tmp_path / "small.h5", X[keep], y[keep], class_names=list("abc"))
    result = run(cli, "compare", small, "--cv", 3, "--heads", "logreg")
    assert result.exit_code == 0, result.output
    assert result.output.count("fewer than 20 rows in class") == 1
    assert "Warning: " in result.stdout and "SmallDataWarning" not in result.output


def test_compare_errors_are_bottleneck_errors(cli, caches):
    train, test = caches
    result = run(cli, "compare", train, "--heads", "logreg,foo")
    assert isinstance(result.exception, HeadError)
    assert "Received: head='foo'" in str(result.exception)
    result = run(cli, "compare", train, "--test", test, "--baseline-cache", f"px={train}")
    assert isinstance(result.exception, HeadError) and "needs its test cache" in str(
        result.exception
    )
    result = run(cli, "compare", train, "--baseline-cache", "nonsense")
    assert result.exit_code == 2 and "NAME=TRAIN.h5" in result.output


def test_assert_min_accuracy_exits_non_zero_below_the_threshold(cli, caches):
    train, test = caches
    args = ["compare", train, "--test", test, "--heads", "logreg", "--bootstrap", 100]
    assert run(cli, *args, "--assert-min-accuracy", 0.5).exit_code == 0
    result = run(cli, *args, "--assert-min-accuracy", 0.999)
    assert result.exit_code != 0
    assert isinstance(result.exception, AccuracyBelowMinimumError)
    assert "below the required minimum 0.9990" in str(result.exception)


def test_train_then_evaluate_round_trip(cli, caches, tmp_path):
    train, test = caches
    out = tmp_path / "heads" / "logreg.skops"
    result = run(cli, "train", train, "--head", "logreg:C=0.5", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in result.output
    trained = load_head(out)
    meta = trained.metadata
    with FeatureCache.open(train) as cache:
        assert meta["cache"]["fingerprint"] == cache.fingerprint
        assert meta["base"] == cache.identity["base"] and meta["dim"] == cache.dim
        assert meta["class_names"] == cache.class_names
    assert meta["head"] == "logreg:C=0.5" and meta["params"]["C"] == 0.5
    assert {"scikit-learn", "numpy", "skops", "python"} <= set(meta["versions"])
    result = run(cli, "evaluate", out, test, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    data = LabeledData.from_cache(test)
    expected = accuracy_score(data.y, trained.estimator.predict(data.X))
    assert scores["metrics"]["accuracy"] == expected > 0.9
    assert np.asarray(scores["confusion"]).sum() == len(data)
    text = run(cli, "evaluate", out, test).output
    assert "accuracy" in text and "accuracy Clopper–Pearson" in text


def test_evaluate_refuses_another_base_or_feature_size(caches, tmp_path):
    trained = train_head(LabeledData.from_cache(caches[0]), "logreg")
    path = save_head(trained, tmp_path / "h.skops")
    X, y = load_digits(return_X_y=True)
    names = [str(i) for i in range(10)]
    foreign = write_cache(
        tmp_path / "foreign.h5", X, y, class_names=names, base={**BASE, "weights_sha256": "b"}
    )
    with pytest.raises(HeadError, match=r"another base \(differs in: base\.weights_sha256\)"):
        evaluate_head(path, foreign)
    narrow = write_cache(tmp_path / "narrow.h5", X[:, :10], y, class_names=names)
    with pytest.raises(HeadError, match="feature size is 10, expected 64"):
        evaluate_head(path, narrow)
    unlabeled = write_cache(tmp_path / "unl.h5", X, np.full(len(y), -1), class_names=names)
    with pytest.raises(HeadError, match="unlabeled"):
        evaluate_head(path, unlabeled)


class Untrusted:
    """A type no allow-list includes."""


def test_load_refuses_types_outside_the_allow_list(tmp_path):
    import skops.io

    path = tmp_path / "evil.skops"
    skops.io.dump({"head": Untrusted(), "meta": "{}"}, path)
    with pytest.raises(HeadError, match=r"outside the allow-list.*Untrusted"):
        load_head(path)
    with pytest.raises(HeadError, match="not found"):
        load_head(tmp_path / "missing.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(HeadError, match="not a skops head file"):
        load_head(tmp_path / "junk.skops")


def test_dense_head_survives_save_and_load(caches, tmp_path):
    data = LabeledData.from_cache(caches[0])
    trained = train_head(data, "dense:hidden=16,epochs=5")
    restored = load_head(save_head(trained, tmp_path / "dense.skops"))
    np.testing.assert_allclose(
        restored.estimator.predict_proba(data.X), trained.estimator.predict_proba(data.X), atol=1e-6
    )


def test_train_with_tuning_records_the_search(cli, caches, tmp_path):
    result = run(cli, "train", caches[0], "--head", "knn", "--tune", "-o", tmp_path / "k.skops")
    assert result.exit_code == 0, result.output
    assert "Tuned n_neighbors" in result.output
    # Issue 23.7: the best of the trials on the rows that chose it is named as such.
    assert "selection score: the best validation accuracy of" in result.output
    tuning = load_head(tmp_path / "k.skops").metadata["tuning"]
    assert tuning["metric"] == "accuracy" and tuning["score_kind"].startswith("selection")
    assert tuning["n_tune_train"] + tuning["n_tune_validation"] == 1355


def test_train_guards(tmp_path, cli):
    X, _ = load_digits(return_X_y=True)
    single = write_cache(tmp_path / "one.h5", X[:50], np.zeros(50, int), class_names=["a", "b"])
    result = run(cli, "train", single, "-o", tmp_path / "x.skops")
    assert isinstance(result.exception, HeadError) and "single class" in str(result.exception)
    assert not (tmp_path / "x.skops").exists()


def _sorted_digits_cache(tmp_path):
    X, y = load_digits(return_X_y=True)
    order = np.argsort(y, kind="stable")  # class-folder sources come sorted by class
    return write_cache(tmp_path / "sorted.h5", X[order], y[order], class_names=list("0123456789"))


def test_streaming_training_never_loads_all_features(tmp_path, monkeypatch, caches):
    path = _sorted_digits_cache(tmp_path)

    def forbidden(self):
        raise AssertionError("out-of-core training must not read all features")

    monkeypatch.setattr(FeatureCache, "features", property(forbidden))
    with FeatureCache.open(path) as cache:
        head = train_head(cache, "logreg", out_of_core=True).estimator
        svm = train_head(cache, "linear-svm:C=0.5", out_of_core=True).estimator
    test = LabeledData.from_arrays(*load_digits(return_X_y=True))
    assert head.score(test.X, test.y) > 0.93
    assert svm.score(test.X, test.y) > 0.93
    assert hasattr(head, "predict_proba") and not hasattr(svm, "predict_proba")
    with FeatureCache.open(path) as cache, pytest.raises(HeadError, match="rbf-svm cannot"):
        train_head(cache, "rbf-svm", out_of_core=True)


def test_train_out_of_core_from_the_cli(cli, tmp_path):
    path = _sorted_digits_cache(tmp_path)
    out = tmp_path / "sgd.skops"
    result = run(cli, "train", path, "--head", "logreg", "--out-of-core", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["out_of_core"] is True and meta["cache"]["rows"] == 1797
    evaluation = evaluate_head(out, path)
    assert evaluation.metrics["accuracy"] > 0.93
    result = run(cli, "train", path, "--head", "rbf-svm", "--out-of-core", "-o", out, "--force")
    assert isinstance(result.exception, HeadError) and "nystroem" in str(result.exception)
