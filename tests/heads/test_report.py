"""The report folder: JSON, Markdown, PNG charts and misclassified rows with cache ids."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.report import format_markdown, format_table, write_report
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import digits_caches
from matplotlib.image import imread


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def holdout(caches):
    train, test = (LabeledData.from_cache(p) for p in caches)
    rng = np.random.default_rng(0)
    noise = (rng.normal(size=(len(train), 8)), rng.normal(size=(len(test), 8)))
    return compare_heads(
        train,
        test,
        heads=[
            "logreg",
            "linear-svm:calibrate=false",  # scores, not probabilities: no log-loss
            "rbf-svm:max_exact_samples=500,n_components=200",
        ],
        baselines={"noise": noise},
        n_bootstrap=300,
    )


def test_report_files_exist_and_parse(holdout, caches, tmp_path):
    paths = write_report(holdout, tmp_path / "run1")
    assert sorted(p.name for p in paths.values()) == sorted(
        [
            "report.json",
            "report.md",
            "accuracy.png",
            "confusion.png",
            "reliability.png",
            "per_class.png",
            "misclassified.csv",
            "report.html",
            "map.png",
        ]
    )
    report = json.loads(paths["report.json"].read_text())
    assert report["winner"] == holdout.winner and report["mode"] == "holdout"
    assert [r["name"] for r in report["rows"]] == [r.name for r in holdout.rows]
    best = report["rows"][0]
    assert best["metrics"]["accuracy"] == holdout.best.metrics["accuracy"]
    assert len(best["intervals_95"]["accuracy"]) == 2
    assert report["rows"][1]["vs_winner"]["method"] == "exact McNemar"
    assert report["rows"][1]["vs_winner"]["family"] == "heads vs winner"
    markdown = paths["report.md"].read_text()
    assert "| # | head | accuracy |" in markdown and holdout.verdict in markdown
    assert "![accuracy](accuracy.png)" in markdown and "Nyström" in markdown
    assert holdout.transfer["sentence"] in markdown and f"{holdout.winner}@noise" in markdown
    assert report["transfer"]["verdict"] == "gain"
    for name in ("accuracy.png", "confusion.png"):
        image = imread(paths[name])
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 0.05, f"{name} is not blank"


def test_misclassified_rows_use_cache_ids(holdout, caches, tmp_path):
    paths = write_report(holdout, tmp_path / "run2")
    test = LabeledData.from_cache(caches[1])
    with open(paths["misclassified.csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    wrong = np.flatnonzero(holdout.best.predictions != test.y)
    assert len(rows) == len(wrong) > 0
    by_id = dict(zip(test.ids, test.y, strict=True))
    for row, index in zip(rows, wrong, strict=True):
        assert row["id"] == test.ids[index]
        assert row["true"] == test.class_names[by_id[row["id"]]]
        assert row["predicted"] == test.class_names[holdout.best.predictions[index]]
        assert row["true"] != row["predicted"]


def test_table_marks_winner_intervals_and_undefined_log_loss(holdout):
    text = format_table(holdout)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("#"))
    for column in ("accuracy", "bal. accuracy", "macro-F1", "log-loss", "p vs best", "fit s"):
        assert column in header
    winner_line = next(line for line in lines if f"{holdout.winner} *" in line)
    assert winner_line.lstrip().startswith("1") and "best" in winner_line
    svm_line = next(line for line in lines if line.split()[1:2] == ["linear-svm:calibrate=false"])
    assert svm_line.count("n/a") == 3  # log-loss, Brier, ECE
    low, high = holdout.best.intervals["accuracy"]
    assert f"[{low:.3f}, {high:.3f}]" in winner_line
    assert "[1] Nyström" in text and holdout.verdict in text


def test_cv_report_shows_the_corrected_interval_over_folds(caches, tmp_path):
    comparison = compare_heads(caches[0], cv=3, heads=["logreg", "knn"])
    text = format_markdown(comparison)
    row = comparison.best
    low, high = row.intervals["accuracy"]
    assert f"{row.metrics['accuracy']:.3f} [{low:.3f}, {high:.3f}]" in text
    assert "Nadeau–Bengio corrected t-interval over the folds" in text
    assert "±" not in text
    assert "3-fold stratified cross-validation" in text
    paths = write_report(comparison, tmp_path / "cv")
    with open(paths["misclassified.csv"], newline="") as handle:
        ids = [r["id"] for r in csv.DictReader(handle)]
    train = LabeledData.from_cache(caches[0])
    assert set(ids) <= set(train.ids)
    assert len(ids) == int(np.sum(row.predictions != train.y))
