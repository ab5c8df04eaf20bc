"""In-memory heads hold no needless full-size copy of the features (issue 26, part 1).

tracemalloc counts numpy's allocations; the working block is made small
(``heads.budget.BLOCK_VALUES``) so that a full-size temporary stands out on small arrays.
"""

import tracemalloc

import numpy as np
import pytest
from bottleneck_transfer.heads import budget
from bottleneck_transfer.heads.linear_svm import LinearSVM
from bottleneck_transfer.heads.registry import make_head
from bottleneck_transfer.heads.rows import RowSubset
from bottleneck_transfer.heads.training import LabeledData, fit_head, predict_rows, scale_rows
from sklearn.preprocessing import StandardScaler


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(budget, "BLOCK_VALUES", 2**13)


def _features(rows=4000, dim=128, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % classes
    means = rng.standard_normal((classes, dim), dtype=np.float32)
    X = rng.standard_normal((rows, dim), dtype=np.float32) * 3 + 5 + means[y]
    return X, y


def _peak(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("in_place", [True, False])
def test_scale_rows_has_no_full_size_temporary(small_blocks, in_place):
    X, _ = _features()
    expected = StandardScaler().fit_transform(X)
    given = X.copy()
    scaled, peak = _peak(lambda: scale_rows(StandardScaler(), given, in_place=in_place))
    assert peak < (0.25 if in_place else 1.25) * X.nbytes  # sklearn's fit: 2 x (float64)
    assert (scaled is given) == in_place
    assert scaled.dtype == np.float32
    assert np.abs(scaled - expected).max() / np.abs(expected).max() < 1e-6
    if not in_place:
        np.testing.assert_array_equal(given, X)


def test_linear_svm_newton_keeps_float32_features(small_blocks):
    X, y = _features(rows=8000)
    svm, peak = _peak(lambda: LinearSVM(max_gram_samples=0).fit(X, y))
    assert svm.solver_ == "newton"
    assert peak < 0.5 * X.nbytes  # was a float64 copy and its hstack: 4 x
    reference = LinearSVM(max_gram_samples=0).fit(X.astype(np.float64), y)
    assert np.abs(svm.coef_ - reference.coef_).max() / np.abs(reference.coef_).max() < 1e-6
    np.testing.assert_array_equal(svm.predict(X), reference.predict(X))


@pytest.mark.parametrize("spec", ["logreg", "linear-svm:calibrate=false", "knn"])
def test_fit_head_equals_the_pipelines_own_fit(small_blocks, spec):
    X, y = _features(rows=600, dim=16)
    rows = np.arange(0, 600, 2)
    fitted = fit_head(spec, LabeledData.from_arrays(X, y), rows, n_jobs=1).estimator
    plain = make_head(spec)
    plain.set_params(**{k: v for k, v in fitted.get_params().items() if k.endswith("random_state")})
    plain.fit(X[rows], y[rows])
    scale = fitted.steps[0][1]
    if hasattr(scale, "mean_"):
        assert np.allclose(scale.mean_, plain.steps[0][1].mean_, rtol=1e-9)
        assert np.allclose(scale.scale_, plain.steps[0][1].scale_, rtol=1e-9)
    np.testing.assert_array_equal(fitted.predict(X), plain.predict(X))


def test_take_without_copy_keeps_indices_and_predicts_the_same():
    X, y = _features(rows=300, dim=8)
    data = LabeledData.from_arrays(X, y)
    held = np.arange(1, 300, 5)
    view, copied = data.take(held, copy=False), data.take(held)
    assert isinstance(view.X, RowSubset) and isinstance(copied.X, np.ndarray)
    assert view.key == copied.key
    head = fit_head("logreg", data, np.arange(0, 300, 5), n_jobs=1).estimator
    for got, expected in zip(predict_rows(head, view), predict_rows(head, copied), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_large_caches_load_without_the_quadratic_near_search(tmp_path, monkeypatch):
    """Above NEAR_SEARCH_MAX_ROWS the heads' loading hashes rows instead of comparing pairs."""
    from bottleneck_transfer.bench.scale import synthetic_cache
    from bottleneck_transfer.features import duplicates
    from bottleneck_transfer.heads import training

    cache = synthetic_cache(tmp_path / "c.h5", 300, dim=8, classes=3)
    searched = []
    monkeypatch.setattr(
        duplicates, "near_pairs", lambda *a, **k: searched.append(1) or (np.zeros(0, int),) * 3
    )
    assert LabeledData.from_cache(cache).duplicates.threshold == duplicates.NEAR_THRESHOLD
    assert searched == [1]
    monkeypatch.setattr(training, "NEAR_SEARCH_MAX_ROWS", 299)
    data = LabeledData.from_cache(cache)
    assert searched == [1] and data.duplicates.threshold == 1.0 and data.linked is None
