"""Reports people look at: labelled bars, a confusion matrix whose numbers are its colours,
a gallery of misclassified images, caches and per-class scores as tables."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.report import (
    BAR_COLOURS,
    GALLERY,
    accuracy_figure,
    confusion_figure,
    format_evaluation,
    format_markdown,
    misclassified_figure,
    per_class_scores,
    write_report,
)
from bottleneck_transfer.heads.training import LabeledData, evaluate_head, train_head
from heads_fixtures import digits_caches
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    train, test = digits_caches(tmp_path_factory.mktemp("digits"))
    rng = np.random.default_rng(0)
    train_data = LabeledData.from_cache(train)
    noise = (rng.normal(size=(len(train_data), 8)), None)
    comparison = compare_heads(
        train_data, heads=["logreg", "knn"], cv=3, baselines={"noise": noise}
    )
    return comparison, train, test


@pytest.fixture(scope="module")
def npz_cache(tmp_path_factory):
    """A cache of an NPZ array source: blurry 12x12 images of 3 classes, some confusable."""
    folder = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    images = rng.integers(0, 120, size=(60, 12, 12), dtype=np.uint8)
    for k, label in enumerate(labels):
        images[k, 4 * label : 4 * label + 4] += 100  # a bright band per class ...
    images[::7] = rng.integers(0, 220, size=(len(images[::7]), 12, 12), dtype=np.uint8)
    np.savez(folder / "shapes.npz", images=images, labels=labels, class_names=["a", "b", "c"])
    cache = extract(folder / "shapes.npz", "pixels", folder / "shapes.h5", image_size=12)
    return folder / "shapes.npz", cache.path


def test_accuracy_bars_carry_values_a_legend_and_a_full_axis(digits):
    comparison = digits[0]
    figure = accuracy_figure(comparison)
    axes = figure.axes[0]
    assert axes.get_xlim()[0] == 0.0  # no cut axis: small gaps look small
    printed = sorted(t.get_text() for t in axes.texts)
    assert printed == sorted(f"{r.metrics['accuracy']:.3f}" for r in comparison.rows)
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [label for _, label in BAR_COLOURS.values()]


def test_confusion_cells_print_the_share_their_colour_shows_and_the_count(digits):
    comparison = digits[0]
    figure = confusion_figure(comparison)
    axes = figure.axes[0]
    counts = confusion_matrix(comparison.eval_labels, comparison.best.predictions)
    share = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(axes.images[0].get_array(), share)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axes.texts}
    for (i, j), text in texts.items():
        assert text.get_text() == f"{share[i, j]:.0%}\n({counts[i, j]})"
    assert len(texts) == counts.size
    assert figure.axes[1].get_ylabel() == "share of the true class"


def test_per_class_scores_equal_scikit_learn(digits):
    comparison = digits[0]
    labels, predicted = comparison.eval_labels, comparison.best.predictions
    scores = per_class_scores(confusion_matrix(labels, predicted), comparison.class_names)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted)
    np.testing.assert_allclose([s["precision"] for s in scores], precision)
    np.testing.assert_allclose([s["recall"] for s in scores], recall)
    np.testing.assert_allclose([s["f1"] for s in scores], f1)
    assert [s["rows"] for s in scores] == support.tolist()
    assert [s["class"] for s in scores] == comparison.class_names


def test_report_md_has_tables_not_json(digits):
    comparison = digits[0]
    text = format_markdown(comparison)
    assert f"## Per class: {comparison.winner}" in text
    assert "| class | precision | recall | F1 | rows |" in text
    assert "| role | file | rows | features | base | fingerprint |" in text
    assert "| baseline:noise train |" in text
    assert '{"' not in text  # no raw JSON


def test_evaluate_prints_per_class_scores(digits):
    _, train, test = digits
    evaluation = evaluate_head(train_head(train, "logreg"), test)
    text = format_evaluation(evaluation)
    assert "Per class:" in text
    first = per_class_scores(evaluation.confusion, evaluation.class_names)[0]
    assert f"{first['precision']:.3f}" in text.split("Per class:")[1]


def test_gallery_shows_misclassified_array_images_with_their_classes(npz_cache, tmp_path):
    _, cache = npz_cache
    comparison = compare_heads(cache, heads=["knn:n_neighbors=1"], cv=2)
    wrong = np.flatnonzero(comparison.best.predictions != comparison.eval_labels)
    assert len(wrong) > 0
    paths = write_report(comparison, tmp_path / "report")
    assert paths[GALLERY].exists() and f"]({GALLERY})" in paths["report.md"].read_text()
    figure = misclassified_figure(comparison)
    with open(paths["misclassified.csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    titles = [a.get_title() for a in figure.axes]
    assert titles == [f"{r['true']}\n→ {r['predicted']}" for r in rows][: len(titles)]
    assert len(titles) == min(len(rows), 24)
    first = int(rows[0]["id"].removeprefix("array:"))
    with np.load(npz_cache[0]) as source:
        image = source["images"][first]
    shown = np.asarray(figure.axes[0].images[0].get_array())
    np.testing.assert_array_equal(shown[..., 0], image)  # the image itself, as the base saw it


def test_report_without_reachable_source_says_why(npz_cache, tmp_path):
    source, cache = npz_cache
    comparison = compare_heads(cache, heads=["knn:n_neighbors=1"], cv=2)
    moved = source.rename(tmp_path / "moved.npz")
    try:
        paths = write_report(comparison, tmp_path / "report")
    finally:
        moved.rename(source)
    assert GALLERY not in paths and not (tmp_path / "report" / GALLERY).exists()
    assert "No gallery of misclassified images: the images cannot be reopened" in (
        paths["report.md"].read_text()
    )
