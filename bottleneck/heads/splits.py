"""Row splits that keep every group on one side: the one place heads split rows.

Rows belong to images, and images to groups:

* ``groups`` gives each row its image: its plain row's index (``arange(N)`` without views);
  a cache with augmented views (``extract --augment --views K``) holds several rows per image;
* ``linked`` (optional) gives each row a group label shared by images that must stay together:
  copies of one picture (:mod:`features.duplicates`) and groups a manifest declares
  (``--groups``: patient, session). ``None``: every image is its own group.

Every split here chooses *groups* — stratified by each group's most common label
(:func:`~bottleneck_transfer.features.sources.group_units`), seeded — and then:

* the fitting side takes every row of its groups' images, plain and views;
* the scored side takes only the plain rows of its groups' images (views are never scored).

So no image, copy or declared group is ever on both sides, and data without views or groups
splits exactly as before. Cross-validation folds (compare), the holdout (``--val-split``,
learning curves), tuning splits and learning-curve subsets all come from here.
"""

from __future__ import annotations

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.sources import group_units, holdout_mask
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


def image_units(
    y: np.ndarray, groups: np.ndarray, linked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The images (plain rows), each image's group (unit) and each group's label.

    Splits choose units; without ``linked`` each image is its own unit, labelled by its row.
    """
    images = plain_rows(groups)
    unit, unit_y = group_units(y[images], None if linked is None else linked[images])
    return images, unit, unit_y


def stratified_folds(
    y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int, *, linked: np.ndarray | None = None
) -> list[Split]:
    """``n_folds`` stratified, shuffled folds of the groups (:class:`StratifiedKFold`).

    Raises
    ------
    HeadError
        Fewer independent groups in every class than folds (copies and declared groups
        stay together).
    """
    images, unit, unit_y = image_units(y, groups, linked)
    largest = int(np.unique(unit_y, return_counts=True)[1].max(initial=0))
    if largest < n_folds:
        raise HeadError(
            f"{len(images)} images form {len(unit_y)} independent groups, at most {largest} in "
            f"a class (copies of one picture and declared groups stay together): fewer than "
            f"the {n_folds} folds; use fewer folds, or check the copies found (features of "
            "very few dimensions make most rows near-copies of each other)"
        )
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [
        image_split(groups, images[np.isin(unit, held)])
        for _, held in folds.split(np.zeros((len(unit_y), 1)), unit_y)
    ]


def shuffle_split(
    y: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
    *,
    linked: np.ndarray | None = None,
) -> Split:
    """A stratified ``fraction`` of the groups held out (:class:`StratifiedShuffleSplit`)."""
    images, unit, unit_y = image_units(y, groups, linked)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(np.zeros((len(unit_y), 1)), unit_y))
    return image_split(groups, images[np.isin(unit, held)])


def holdout_split(
    y: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
    *,
    linked: np.ndarray | None = None,
) -> Split:
    """``fraction`` of each class's groups held out, at least one a side
    (:func:`~bottleneck_transfer.features.sources.holdout_mask`, as ``extract --val-split``)."""
    images = plain_rows(groups)
    held = holdout_mask(y[images], fraction, seed, None if linked is None else linked[images])
    return image_split(groups, images[held])


def subset_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Images of each class in a subset of ``n`` per class on average, in the classes' own
    ratio: ``round(n * K * count / total)``, at least 1 and at most the class's count."""
    counts = np.asarray(counts, dtype=np.int64)
    share = np.rint(n * len(counts) * counts / counts.sum()).astype(np.int64)
    return np.minimum(counts, np.maximum(1, share))


def stratified_subset(
    y: np.ndarray,
    groups: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    linked: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted rows of a subset of ``n`` groups per class on average, views included.

    A group is an image, or the images ``linked`` ties together (copies, a declared group).
    The subset keeps the classes' ratio (:func:`subset_counts`), so a curve's subsets are
    as (im)balanced as all the rows. Each class's groups are taken from the front of one
    seeded order, so subsets drawn with equally seeded ``rng`` are nested: the subset of
    ``n`` lies within that of any ``m > n``.
    """
    images, unit, unit_y = image_units(y, groups, linked)
    labels, counts = np.unique(unit_y, return_counts=True)
    chosen = [
        rng.permutation(np.flatnonzero(unit_y == label))[:size]
        for label, size in zip(labels, subset_counts(counts, n), strict=True)
    ]
    return rows_of_images(groups, images[np.isin(unit, np.concatenate(chosen))])
