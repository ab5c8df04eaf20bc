"""Row splits that keep every image on one side: the one place heads split rows.

A cache with augmented views (``extract --augment --views K``) holds several rows per image;
``groups`` gives each row its image (its plain row's index; ``arange(N)`` without views).
Every split here chooses *images* — stratified by label, seeded — and then:

* the fitting side takes every row of its images, plain and views;
* the scored side takes only the plain rows of its images (views are never scored).

So no image is ever on both sides, and a cache without views splits exactly as before.
Cross-validation folds (compare), the holdout (``--val-split``, learning curves), tuning
splits and learning-curve subsets all come from here.
"""

from __future__ import annotations

import numpy as np
from bottleneck_transfer.features.sources import holdout_mask
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

Split = tuple[np.ndarray, np.ndarray]


def plain_rows(groups: np.ndarray) -> np.ndarray:
    """Indices of the rows that are no augmented view: one per image, in row order."""
    return np.flatnonzero(groups == np.arange(len(groups)))


def image_split(groups: np.ndarray, held_images: np.ndarray) -> Split:
    """``(fit rows, scored rows)`` holding out the images whose plain rows are ``held_images``.

    Fit rows are every row (plain or view) of the other images; scored rows are the held
    plain rows, sorted.
    """
    held_images = np.sort(np.asarray(held_images, dtype=np.int64))
    return np.flatnonzero(~np.isin(groups, held_images)), held_images


def rows_of_images(groups: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Every row (plain and views) of the images whose plain rows are ``images``, sorted."""
    return np.flatnonzero(np.isin(groups, images))


def groups_within(groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The groups of ``rows`` as positions within ``rows`` (the groups of that subset).

    Raises
    ------
    ValueError
        If ``rows`` holds a view without the plain row of its image.
    """
    position = np.full(len(groups), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    within = position[groups[rows]]
    if (within < 0).any():
        raise ValueError("rows hold augmented views without the plain row of their image")
    return within


def stratified_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[Split]:
    """``n_folds`` stratified, shuffled folds of the images (:class:`StratifiedKFold`)."""
    images = plain_rows(groups)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [
        image_split(groups, images[held])
        for _, held in folds.split(np.zeros((len(images), 1)), y[images])
    ]


def shuffle_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> Split:
    """A stratified ``fraction`` of the images held out (:class:`StratifiedShuffleSplit`)."""
    images = plain_rows(groups)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(np.zeros((len(images), 1)), y[images]))
    return image_split(groups, images[held])


def holdout_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> Split:
    """``fraction`` of each class's images held out, at least one a side
    (:func:`~bottleneck_transfer.features.sources.holdout_mask`, as ``extract --val-split``)."""
    images = plain_rows(groups)
    return image_split(groups, images[holdout_mask(y[images], fraction, seed)])


def subset_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Images of each class in a subset of ``n`` per class on average, in the classes' own
    ratio: ``round(n * K * count / total)``, at least 1 and at most the class's count."""
    counts = np.asarray(counts, dtype=np.int64)
    share = np.rint(n * len(counts) * counts / counts.sum()).astype(np.int64)
    return np.minimum(counts, np.maximum(1, share))


def stratified_subset(
    y: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted rows of a subset of ``n`` images per class on average, views included.

    The subset keeps the classes' ratio (:func:`subset_counts`), so a curve's subsets are
    as (im)balanced as all the rows. Each class's images are taken from the front of one
    seeded order, so subsets drawn with equally seeded ``rng`` are nested: the subset of
    ``n`` lies within that of any ``m > n``.
    """
    images = plain_rows(groups)
    labels, counts = np.unique(y[images], return_counts=True)
    chosen = [
        rng.permutation(images[y[images] == label])[:size]
        for label, size in zip(labels, subset_counts(counts, n), strict=True)
    ]
    return rows_of_images(groups, np.concatenate(chosen))
