"""features.duplicates: blocked similarity search, label merging, grouped holdout masks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from bottleneck_transfer.features import duplicates
from bottleneck_transfer.features.duplicates import (
    content_hash,
    find_duplicates,
    merge_labels,
    near_pairs,
)
from bottleneck_transfer.features.sources import group_units, holdout_mask


def test_near_pairs_in_blocks_equal_the_full_matrix():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8)).astype(np.float32)
    X[30] = 3 * X[4]  # same direction: cosine 1
    X[41] = X[7] + 0.01 * rng.normal(size=8)
    first, second, similarity = near_pairs(X, 0.99, block_rows=7)
    normed = X / np.linalg.norm(X, axis=1, keepdims=True)
    full = normed @ normed.T
    expected = [(i, j) for i in range(50) for j in range(i + 1, 50) if full[i, j] >= 0.99]
    assert (
        sorted(zip(first.tolist(), second.tolist(), strict=True)) == expected == [(4, 30), (7, 41)]
    )
    np.testing.assert_allclose(
        similarity, [full[a, b] for a, b in zip(first, second, strict=True)], rtol=1e-5
    )
    first, second, _ = near_pairs(X[:10], 0.99, block_rows=3, other=X[25:45])
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(4, 5), (7, 16)]
    with pytest.raises(ValueError, match="threshold"):
        near_pairs(X, 1.5)


def test_find_duplicates_tells_exact_from_near():
    X = np.eye(6, dtype=np.float32) + 0.001
    X[3] = X[0]  # identical features
    X[5] = X[1] * 1.0001 + 0.0001
    found = find_duplicates(X, threshold=0.999)
    assert [g.tolist() for g in found.groups] == [[0, 3], [1, 5]]
    assert found.exact == (True, False)
    hashed = find_duplicates(X, hashes=[None, "a", "b", None, "b", "a"], threshold=0.999)
    assert [g.tolist() for g in hashed.groups] == [[0, 3], [1, 5], [2, 4]]
    assert hashed.exact == (True, True, True)


def test_without_the_near_search_only_identical_rows_are_copies(monkeypatch):
    """Large caches skip the quadratic pair search: identical rows are found by hashing."""
    X = np.eye(6, dtype=np.float32) + 0.001
    X[3] = X[0]
    X[5] = X[1] * 1.0001 + 0.0001  # a near copy: not found without the pair search

    def quadratic(*args, **kwargs):
        raise AssertionError("near_pairs must not run")

    monkeypatch.setattr(duplicates, "near_pairs", quadratic)
    found = find_duplicates(X, threshold=0.999, near=False)
    assert [g.tolist() for g in found.groups] == [[0, 3]]
    assert found.exact == (True,) and found.threshold == 1.0


def test_merge_labels_joins_every_labeling():
    assert merge_labels(["a", "b", "a", None, None]).tolist() == [0, 1, 0, 3, 4]
    merged = merge_labels(["a", "b", "a", "c", "d"], [None, "x", "x", None, None])
    assert merged.tolist() == [0, 0, 0, 3, 4]  # a ties 0-2, x ties 1-2: one group
    assert merge_labels(["a", "b"], None) is None and merge_labels(None) is None


def test_content_hash_of_a_copied_file_and_of_arrays(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG fake bytes")
    shutil.copyfile(tmp_path / "a.png", tmp_path / "b.png")
    assert content_hash(tmp_path / "a.png") == content_hash(tmp_path / "b.png")
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert content_hash(pixels) == content_hash(pixels.copy())
    assert content_hash(pixels) != content_hash(pixels.reshape(4, 3))


def test_group_units_label_groups_by_their_most_common_label():
    unit, label = group_units(np.array([2, 0, 0, 1, 2]), np.array([9, 7, 9, 5, 9]))
    assert unit.tolist() == [0, 1, 0, 2, 0] and label.tolist() == [2, 0, 1]


def test_holdout_mask_keeps_groups_whole_and_is_unchanged_without_ties():
    labels = np.arange(40) % 4
    distinct = np.arange(40) * 3  # groups that tie nothing
    np.testing.assert_array_equal(
        holdout_mask(labels, 0.25, 1, distinct), holdout_mask(labels, 0.25, 1)
    )
    groups = np.arange(40) % 20  # rows i and i + 20 together
    for seed in range(5):
        held = holdout_mask(labels, 0.25, seed, groups)
        np.testing.assert_array_equal(held[:20], held[20:])
