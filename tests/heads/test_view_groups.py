"""Augmented views in the heads: grouped tuning split, plain rows scored, test views refused."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import LabeledData, fit_head
from bottleneck_transfer.heads.tuning import validation_split

BASE = "data/bases/fashion_mnist_0-4.keras"


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("view-groups")
    views, plain = folder / "views.h5", folder / "plain.h5"
    options = {"limit": 64, "progress": False}
    extract("fashion-mnist:test", BASE, views, augment="flip,crop", views=2, seed=0, **options)
    extract("fashion-mnist:train", BASE, plain, **options)  # other images: a fair test
    return views, plain


def _no_image_on_both_sides(data, fit_rows, eval_rows):
    groups = data.groups
    assert not set(groups[fit_rows]) & set(groups[eval_rows])
    assert data.plain[eval_rows].all()


def test_groups_tie_views_to_their_image(caches):
    data = LabeledData.from_cache(caches[0])
    n = len(data) // 3
    assert data.has_views and data.plain.sum() == n
    np.testing.assert_array_equal(data.groups, np.tile(np.arange(n), 3))
    assert not LabeledData.from_cache(caches[1]).has_views


def test_tuning_split_keeps_views_with_their_image(caches):
    data = LabeledData.from_cache(caches[0])
    fit_rows, val_rows = validation_split(data.y, 0.25, 0, data.groups)
    _no_image_on_both_sides(data, fit_rows, val_rows)
    assert len(fit_rows) + len(val_rows) == len(data) - 2 * len(val_rows)
    fit = fit_head("logreg", data, tune=True)
    _no_image_on_both_sides(data, fit.tuning.train_indices, fit.tuning.val_indices)


def test_a_test_cache_with_views_is_refused(caches):
    views, plain = caches
    with pytest.raises(HeadError, match="test rows are never augmented") as info:
        compare_heads(plain, test=views, heads=["logreg"], progress=False)
    assert "\n" not in str(info.value)


def test_train_on_views_scores_plain_test_rows(caches):
    views, plain = caches
    comparison = compare_heads(views, test=plain, heads=["logreg"], progress=False)
    assert len(comparison.eval_labels) == len(LabeledData.from_cache(plain))


def test_cv_folds_keep_views_with_their_image_and_score_plain_rows(caches):
    data = LabeledData.from_cache(caches[0])
    comparison = compare_heads(caches[0], cv=3, heads=["logreg"], progress=False)
    scored = np.concatenate([e for _, e in comparison.splits])
    np.testing.assert_array_equal(np.sort(scored), np.flatnonzero(data.plain))
    for fit_rows, eval_rows in comparison.splits:
        _no_image_on_both_sides(data, fit_rows, eval_rows)
        assert len(fit_rows) == 3 * (data.plain.sum() - len(eval_rows))  # views fitted
    assert comparison.eval_ids == [data.ids[i] for i in np.flatnonzero(data.plain)]
    np.testing.assert_array_equal(comparison.eval_labels, data.y[data.plain])
    fit_rows, eval_rows = comparison.splits[0]
    head = fit_head("logreg", data, fit_rows).estimator
    accuracy = np.mean(head.predict(data.X[eval_rows]) == data.y[eval_rows])
    assert comparison.row("logreg").fold_metrics[0]["accuracy"] == pytest.approx(accuracy)


def test_val_split_holds_out_images_with_their_views(caches):
    data = LabeledData.from_cache(caches[0])
    comparison = compare_heads(caches[0], val_split=0.25, heads=["logreg"], progress=False)
    fit_rows, _ = comparison.splits[0]
    held_ids = set(comparison.eval_ids)
    assert held_ids and not any("#view" in i for i in held_ids)
    fitted_images = {data.ids[i].split("#")[0] for i in fit_rows}
    assert not fitted_images & held_ids
    assert len(fit_rows) == 3 * (data.plain.sum() - len(held_ids))
    assert comparison.caches["train"]["rows"] == len(fit_rows)


def test_learning_curve_subsets_take_images_and_score_plain_rows(caches):
    from bottleneck_transfer.heads.learning_curve import learning_curve

    data = LabeledData.from_cache(caches[0])
    curve = learning_curve(caches[0], sizes="2", heads=["logreg"], repeats=2)
    assert curve.n_eval_rows == round(0.25 * data.plain.sum())  # images, not rows
    assert curve.per_class["2"] == pytest.approx(2.0, abs=0.5)  # on average, in the class ratio


def test_evaluate_refuses_a_cache_with_views(caches):
    from bottleneck_transfer.heads.training import evaluate_head, train_head

    views, plain = caches
    head = train_head(views, "logreg")  # training on views is what they are for
    with pytest.raises(HeadError, match=r"views\.h5 holds augmented views.*never augmented"):
        evaluate_head(head, views)
    assert evaluate_head(head, plain).metrics["accuracy"] >= 0
