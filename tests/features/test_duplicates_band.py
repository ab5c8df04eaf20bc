"""features.duplicates.near_pairs: the band search returns exactly the brute-force pairs."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.features.duplicates import find_duplicates, near_pairs


def _unit(A: np.ndarray) -> np.ndarray:
    A = A.astype(np.float64)
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(norms > 0, norms, 1)


def _brute_force(X: np.ndarray, threshold: float, other: np.ndarray | None = None) -> list:
    """Every pair at ``threshold`` from the full float64 cosine matrix."""

    full = _unit(X) @ _unit(X if other is None else other).T
    i, j = np.nonzero(full >= threshold - 1e-6)
    keep = i < j if other is None else np.ones(len(i), bool)
    return sorted(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


def _planted(rng: np.random.Generator, X: np.ndarray, cosine: float, along: np.ndarray) -> None:
    """Overwrite rows with copies of others at exactly ``cosine`` (float64), each moved along
    ``along`` (the data's widest direction: the band's sort key) so the band must reach it."""
    for a, b in rng.choice(len(X), size=(6, 2), replace=False):
        u = X[a] / np.linalg.norm(X[a])
        side = along - (along @ u) * u
        side /= np.linalg.norm(side)
        X[b] = 2.5 * (cosine * u + np.sqrt(1 - cosine**2) * side)


def _data(rows: int = 700, dim: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    along = np.zeros(dim)
    along[0] = 1
    X = rng.normal(size=(rows, dim)) + 4 * rng.normal(size=(rows, 1)) * along  # one wide axis
    X[rows - 1] = 0  # a zero row pairs with nothing
    return X, along


@pytest.mark.parametrize("threshold", [0.9, 0.99, 0.9995, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_band_search_equals_brute_force(threshold, dtype):
    rng = np.random.default_rng(1)
    X, along = _data()
    if threshold < 1:  # copies just inside the threshold, and just outside it
        _planted(rng, X, threshold + 2e-5 if threshold < 0.999 else threshold + 4e-5, along)
        _planted(rng, X, threshold - 5e-4, along)
    X[10], X[500] = X[3], 3 * X[3]  # exact copies and a scaled one: cosine 1
    X = X.astype(dtype)
    expected = _brute_force(X, threshold)
    first, second, similarity = near_pairs(X, threshold, block_rows=64)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == expected
    assert len(expected) >= (3 if threshold == 1 else 6)  # float16 rounds some planted
    reference = _brute_force(X, 0.0)  # sanity: the similarity values are the cosines
    assert len(reference) > len(expected)
    unit = _unit(X)
    cosines = [unit[a] @ unit[b] for a, b in expected]
    np.testing.assert_allclose(similarity, cosines, atol=2e-6)
    groups = find_duplicates(X, threshold=threshold).labels
    pairs = np.array(expected).T
    assert groups.tolist() == _pair_labels(len(X), *pairs).tolist()


def _pair_labels(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Connected components of the pairs by repeated relabelling (an independent path)."""
    labels = np.arange(n)
    for _ in range(n):
        before = labels.copy()
        for a, b in zip(first, second, strict=True):
            labels[a] = labels[b] = min(labels[a], labels[b])
        if (labels == before).all():
            return labels
    return labels


def test_band_search_between_two_sets_equals_brute_force():
    rng = np.random.default_rng(2)
    X, along = _data(900)
    _planted(rng, X, 0.9995 + 4e-5, along)
    test, train = X[:300], X[300:]
    train[50], train[400] = test[7], 2 * test[200]
    expected = _brute_force(test, 0.9995, other=train)
    first, second, _ = near_pairs(test, 0.9995, block_rows=50, other=train)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == expected
    assert len(expected) >= 2


def test_rows_all_alike_are_all_pairs():
    """Nothing to prune: every pair is a copy, found once each."""
    rng = np.random.default_rng(3)
    X = (np.ones((150, 32)) + 1e-4 * rng.normal(size=(150, 32))).astype(np.float32)
    first, second, _ = near_pairs(X, 0.999, block_rows=40)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == _brute_force(X, 0.999)
    assert len(first) == 150 * 149 // 2
    assert find_duplicates(X, threshold=0.999).summary()["groups"] == 1


def test_no_pairs_and_empty_inputs():
    X = np.eye(20, dtype=np.float32)
    assert [len(a) for a in near_pairs(X, 0.9)] == [0, 0, 0]
    assert [len(a) for a in near_pairs(X[:0], 0.9)] == [0, 0, 0]
    assert [len(a) for a in near_pairs(X, 0.9, other=X[:0])] == [0, 0, 0]
