"""Issue 26 at scale: the minibatch SGD solver, evaluate scored a chunk at a time, ids and
bootstrap resamples that never grow with the rows."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.export import export_cache
from bottleneck_transfer.heads import stats
from bottleneck_transfer.heads.metrics import (
    confusion_of,
    proba_row_scores,
    score,
    scores_of_rows,
)
from bottleneck_transfer.heads.streaming import fit_streaming_head
from bottleneck_transfer.heads.training import evaluate_head, train_head
from heads_fixtures import blobs, write_cache
from sklearn.metrics import confusion_matrix


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Train and test caches of the same 8 classes (more than TOP_K: top-k is scored)."""
    folder = tmp_path_factory.mktemp("scale")
    X, y = blobs(n=1600, dim=12, centers=8)
    names = [f"c{k}" for k in range(8)]
    train = write_cache(folder / "train.h5", X[:1000], y[:1000], class_names=names)
    test = write_cache(folder / "test.h5", X[1000:], y[1000:], class_names=names)
    return train, test


def test_scores_of_rows_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 500)
    pred = np.where(rng.random(500) < 0.7, y, rng.integers(0, 7, 500))  # class 7 never predicted
    proba = rng.dirichlet(np.ones(8), 500)
    labels = np.arange(8)
    losses, hits = proba_row_scores(y, proba, labels)
    confusion = confusion_of(y, pred, 8)
    np.testing.assert_array_equal(confusion, confusion_matrix(y, pred, labels=labels))
    ours, theirs = scores_of_rows(confusion, losses, hits), score(y, pred, proba, labels)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-9 * max(abs(value), 1), key
    assert scores_of_rows(confusion, None, None)["log_loss"] is None


def test_streamed_evaluate_equals_in_memory_and_never_reads_all_features(caches, monkeypatch):
    train, test = caches
    with FeatureCache.open(train) as cache:
        trained = train_head(cache, "logreg")
    in_memory = evaluate_head(trained, test, n_bootstrap=50)

    def forbidden(self):
        raise AssertionError("a streamed evaluate must not read all features or ids")

    monkeypatch.setattr(FeatureCache, "features", property(forbidden))
    monkeypatch.setattr(FeatureCache, "ids", property(forbidden))
    streamed = evaluate_head(trained, test, n_bootstrap=50, memory_budget="1K")
    assert in_memory.memory["path"] == "in-memory" and streamed.memory["path"] == "streaming"
    assert streamed.metrics["top_k"] is not None
    for key, value in in_memory.metrics.items():
        assert abs(streamed.metrics[key] - value) <= 1e-6 * max(abs(value), 1), key
    np.testing.assert_array_equal(streamed.confusion, in_memory.confusion)
    np.testing.assert_array_equal(streamed.predictions, in_memory.predictions)
    for key, interval in in_memory.intervals.items():
        if interval is None:
            assert streamed.intervals[key] is None, key
        else:
            np.testing.assert_allclose(streamed.intervals[key], interval, rtol=1e-6)


def test_streamed_sgd_is_seeded_and_near_the_in_memory_head(caches):
    train, test = caches
    with FeatureCache.open(train) as cache, FeatureCache.open(test) as held:
        source, y = cache.features_dataset, cache.labels
        fits = [
            fit_streaming_head("logreg", source, y, chunk_rows=256, random_state=seed)
            for seed in (1, 1, 2)
        ]
        in_memory = train_head(cache, "logreg").estimator
        X_test, y_test = held.features, held.labels
    first, again, other = (fit[-1].coef_ for fit in fits)
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(first - other)) > 0
    streamed = fits[0].score(X_test, y_test)
    assert abs(streamed - in_memory.score(X_test, y_test)) <= 0.01, streamed


def test_cache_ids_read_on_demand_behave_as_the_list(caches):
    train, _ = caches
    with FeatureCache.open(train) as cache:
        everything, lazy = cache.ids, cache.lazy_ids
        lazy.BLOCK = 64  # several blocks
        assert len(lazy) == len(everything) and list(lazy) == everything
        assert lazy[3] == everything[3] and lazy[-1] == everything[-1]
        assert lazy[10:20] == everything[10:20]
        rows = np.array([5, 99, 500, 998])
        subset = lazy.take(rows)
        assert list(subset) == [everything[i] for i in rows] and subset[1] == everything[99]
        assert list(subset.take(np.array([0, 3]))) == [everything[5], everything[998]]
        assert lazy == everything and everything == lazy
        assert lazy != everything[:-1] and lazy != [*everything[:-1], "other"]
        with pytest.raises(IndexError):
            lazy[len(everything)]


def test_export_reads_ids_a_row_group_at_a_time(caches, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    train, _ = caches
    with FeatureCache.open(train) as cache:
        ids = cache.ids

    def forbidden(self):
        raise AssertionError("export must not read every id at once")

    monkeypatch.setattr(FeatureCache, "ids", property(forbidden))
    out = export_cache(train, tmp_path / "t.parquet", batch_rows=300)
    assert pq.read_table(out)["id"].to_pylist() == ids


def test_bootstrap_resamples_are_drawn_in_blocks_flat_in_the_rows():
    small = list(stats._resamples(1000, 250, 3))
    assert [len(block) for block in small] == [100, 100, 50]  # as before for small sets
    n = stats.RESAMPLE_VALUES // 2 + 1  # two would exceed the block
    blocks = list(stats._resamples(n, 3, 0))
    assert [block.shape for block in blocks] == [(1, n)] * 3
