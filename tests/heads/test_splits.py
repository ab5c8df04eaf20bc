"""heads.splits: every split chooses images, keeps views with their image, scores plain rows."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.sources import holdout_mask
from bottleneck_transfer.heads.splits import (
    groups_within,
    holdout_split,
    plain_rows,
    shuffle_split,
    stratified_folds,
    stratified_subset,
)
from bottleneck_transfer.heads.training import LabeledData
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

N_IMAGES, N_VIEWS = 30, 3


def _views_layout() -> tuple[np.ndarray, np.ndarray]:
    """Labels and groups of a cache's layout: 30 plain rows, then 3 views of each."""
    y_images = np.arange(N_IMAGES) % 3
    groups = np.tile(np.arange(N_IMAGES), N_VIEWS + 1)
    return np.tile(y_images, N_VIEWS + 1), groups


def _assert_grouped(groups: np.ndarray, fit: np.ndarray, scored: np.ndarray) -> None:
    assert not set(groups[fit]) & set(groups[scored]), "an image on both sides"
    np.testing.assert_array_equal(groups[scored], scored)  # only plain rows are scored
    held = set(scored)
    assert set(fit) == {r for r in range(len(groups)) if groups[r] not in held}


def test_plain_rows_and_groups_within():
    _, groups = _views_layout()
    np.testing.assert_array_equal(plain_rows(groups), np.arange(N_IMAGES))
    rows = np.array([2, 5, 32, 35])  # images 2 and 5, and one view of each
    np.testing.assert_array_equal(groups_within(groups, rows), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="without the plain row"):
        groups_within(groups, np.array([2, 35]))


def test_folds_hold_out_images_with_all_their_views():
    y, groups = _views_layout()
    folds = stratified_folds(y, groups, 5, seed=0)
    scored = np.concatenate([e for _, e in folds])
    np.testing.assert_array_equal(np.sort(scored), np.arange(N_IMAGES))  # each image once
    for fit, held in folds:
        _assert_grouped(groups, fit, held)
        assert len(fit) == (N_VIEWS + 1) * (N_IMAGES - len(held))
        assert np.bincount(y[held]).tolist() == [2, 2, 2]  # stratified by image


@pytest.mark.parametrize("split", [holdout_split, shuffle_split])
def test_holdouts_hold_out_images_with_all_their_views(split):
    y, groups = _views_layout()
    fit, held = split(y, groups, 0.2, 3)
    _assert_grouped(groups, fit, held)
    assert len(held) == 6
    np.testing.assert_array_equal(held, np.sort(held))
    assert not np.array_equal(held, split(y, groups, 0.2, 4)[1])  # seeded


def test_without_views_the_splits_are_the_usual_ones():
    y = np.arange(40) % 4
    groups = np.arange(40)
    usual = StratifiedKFold(4, shuffle=True, random_state=1).split(np.zeros((40, 1)), y)
    for (fit, held), (fit_0, held_0) in zip(stratified_folds(y, groups, 4, 1), usual, strict=True):
        np.testing.assert_array_equal(fit, fit_0)
        np.testing.assert_array_equal(held, held_0)
    fit, held = holdout_split(y, groups, 0.25, 2)
    np.testing.assert_array_equal(held, np.flatnonzero(holdout_mask(y, 0.25, 2)))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=2)
    _, held_0 = next(splitter.split(np.zeros((40, 1)), y))
    np.testing.assert_array_equal(shuffle_split(y, groups, 0.25, 2)[1], np.sort(held_0))


def test_subsets_take_n_images_per_class_with_their_views():
    y, groups = _views_layout()
    rows = stratified_subset(y, groups, 4, np.random.default_rng(0))
    images = rows[groups[rows] == rows]
    assert np.bincount(y[images]).tolist() == [4, 4, 4]
    assert len(rows) == (N_VIEWS + 1) * len(images)
    np.testing.assert_array_equal(np.unique(groups[rows]), images)


def test_take_keeps_views_tied_to_their_image():
    y, groups = _views_layout()
    X = np.random.default_rng(0).normal(size=(len(y), 4)).astype(np.float32)
    ids = [
        f"{i % N_IMAGES}" + (f"#view{i // N_IMAGES - 1}" if i >= N_IMAGES else "")
        for i in range(len(y))
    ]
    data = LabeledData.from_arrays(X, y, ids=ids)
    data.source_rows = groups
    fit, held = holdout_split(y, groups, 0.2, 0)
    part = data.take(fit)
    assert part.has_views and part.plain.sum() == N_IMAGES - len(held)
    for row in range(len(part)):
        assert part.ids[row].split("#")[0] == part.ids[part.groups[row]]
    assert not data.take(held).has_views  # plain rows only: a plain data set
    assert data.take(held).fingerprint != data.take(fit).fingerprint


def test_fewer_independent_groups_than_folds_is_one_line():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.arange(8)
    linked = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # pairs of copies: two groups per class
    with pytest.raises(HeadError, match=r"8 images form 4 independent groups, at most 2.*3 folds"):
        stratified_folds(y, groups, 3, seed=0, linked=linked)
    assert len(stratified_folds(y, groups, 2, seed=0, linked=linked)) == 2
