"""A cache in the loaders people train with: tf.data, torch and Hugging Face datasets."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from bottleneck_transfer.errors import MissingDependencyError
from bottleneck_transfer.features.cache import FeatureCache
from heads_fixtures import write_cache

CLASS_NAMES = ["boot", "shirt", "bag"]
N, DIM = 29, 6


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(N, DIM)).astype(np.float32)
    y = rng.integers(0, 3, N)
    y[4] = -1
    return write_cache(tmp_path_factory.mktemp("loaders") / "c.h5", X, y, class_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def rows(cache_path):
    with FeatureCache.open(cache_path) as cache:
        X, y = cache.arrays()
        return X.copy(), y.copy()


def test_tf_dataset_batches_equal_the_rows_and_shuffle_is_seeded(cache_path, rows):
    pytest.importorskip("tensorflow")
    X, y = rows
    with FeatureCache.open(cache_path) as cache:
        plain = cache.to_tf_dataset(batch_size=8)
        shuffled = cache.to_tf_dataset(batch_size=8, shuffle=True, seed=3)
        again = cache.to_tf_dataset(batch_size=8, shuffle=True, seed=3)
    # read after the cache is closed: the dataset opens the file itself
    batches = [(a.numpy(), b.numpy()) for a, b in plain]
    assert [len(b) for _, b in batches] == [8, 8, 8, 5]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([a for a, _ in batches]), X)
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), y)

    def epoch(dataset):
        parts = [(a.numpy(), b.numpy()) for a, b in dataset]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    first, second = epoch(shuffled), epoch(shuffled)
    assert not np.array_equal(first[0], X) and not np.array_equal(first[0], second[0])
    order = [int(np.flatnonzero((row == X).all(1))[0]) for row in first[0]]
    assert sorted(order) == list(range(N))
    np.testing.assert_array_equal(first[1], y[order])
    np.testing.assert_array_equal(epoch(again)[0], first[0])  # same seed, same orders


def test_tf_dataset_refuses_a_bad_batch_size(cache_path):
    pytest.importorskip("tensorflow")
    with FeatureCache.open(cache_path) as cache, pytest.raises(ValueError, match="batch_size=0"):
        cache.to_tf_dataset(batch_size=0)


def test_torch_dataset_rows_and_dataloader(cache_path, rows):
    torch = pytest.importorskip("torch")
    X, y = rows
    with FeatureCache.open(cache_path) as cache:
        dataset = cache.to_torch()
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == N
    features, label = dataset[5]
    assert features.dtype == torch.float32 and tuple(features.shape) == (DIM,)
    np.testing.assert_array_equal(features.numpy(), X[5])
    assert int(label) == y[5] and int(dataset[-1][1]) == y[-1]
    with pytest.raises(IndexError, match="outside this cache's 29 rows"):
        dataset[N]
    loader = torch.utils.data.DataLoader(dataset, batch_size=10, shuffle=False)
    got = list(loader)
    np.testing.assert_array_equal(torch.cat([a for a, _ in got]).numpy(), X)
    np.testing.assert_array_equal(torch.cat([b for _, b in got]).numpy(), y)
    picked = dataset.__getitems__([7, 2, 7])
    np.testing.assert_array_equal(np.stack([a.numpy() for a, _ in picked]), X[[7, 2, 7]])


def test_torch_missing_is_one_line(cache_path, monkeypatch):
    from bottleneck_transfer.features.cache import loaders

    monkeypatch.setitem(sys.modules, "torch", None)
    loaders._torch_dataset_class.cache_clear()
    with (
        FeatureCache.open(cache_path) as cache,
        pytest.raises(MissingDependencyError, match=r"needs torch, .*: pip install torch"),
    ):
        cache.to_torch()
    loaders._torch_dataset_class.cache_clear()


def test_hf_dataset_has_class_labels_and_the_rows(cache_path, rows):
    datasets = pytest.importorskip("datasets")
    X, y = rows
    with FeatureCache.open(cache_path) as cache:
        dataset = cache.to_hf_dataset()
        ids = cache.ids
    assert isinstance(dataset, datasets.Dataset) and dataset.num_rows == N
    assert dataset.features["label"].names == CLASS_NAMES
    assert dataset["id"] == ids
    np.testing.assert_array_equal(np.asarray(dataset["label"]), y)
    np.testing.assert_array_equal(np.asarray(dataset["features"], np.float32), X)
    assert dataset.features["features"].length == DIM
