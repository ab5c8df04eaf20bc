"""The linear-svm head: the Gram-matrix solver fits LinearSVC's model, much faster when wide."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from bottleneck_transfer.heads.linear_svm import LinearSVM
from bottleneck_transfer.heads.registry import make_head
from heads_fixtures import blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC


def squared_hinge_objective(coef, intercept, X, y, classes, C):
    """Sum over one-vs-rest problems of 0.5 ||w||^2 + C sum max(0, 1 - t (w.x + b))^2."""
    positives = classes[1:] if len(classes) == 2 else classes
    total = 0.0
    for w, b, positive in zip(coef, intercept, positives, strict=True):
        t = np.where(y == positive, 1.0, -1.0)
        total += 0.5 * w @ w + C * np.sum(np.maximum(0.0, 1.0 - t * (X @ w + b)) ** 2)
    return total


@pytest.mark.parametrize(("centers", "C"), [(2, 1.0), (4, 1.0), (4, 0.01)])
def test_gram_solver_reaches_the_liblinear_objective_on_wide_data(centers, C):
    X, y = blobs(n=120, dim=300, centers=centers, std=6.0)
    X = (X - X.mean(0)) / X.std(0)
    gram = LinearSVM(C=C).fit(X, y)
    assert gram.solver_ == "gram"
    assert gram.coef_.shape == (1 if centers == 2 else centers, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LinearSVC(C=C, tol=1e-6, max_iter=100_000, intercept_scaling=100).fit(X, y)
    ours = squared_hinge_objective(gram.coef_, gram.intercept_, X, y, gram.classes_, C)
    theirs = squared_hinge_objective(
        reference.coef_, reference.intercept_, X, y, reference.classes_, C
    )
    assert ours <= theirs * (1 + 1e-3), "the Gram solver minimises the same objective"
    assert np.mean(gram.predict(X) == reference.predict(X)) >= 0.99
    scores = gram.decision_function(X)
    expected = X @ gram.coef_.T + gram.intercept_
    np.testing.assert_allclose(scores, expected.ravel() if centers == 2 else expected)


def test_solver_follows_the_shape_and_the_memory_cap():
    X, y = blobs(n=60, dim=100, centers=3, std=4.0)
    assert LinearSVM().fit(X, y).solver_ == "gram", "fewer rows than features"
    assert LinearSVM(max_gram_samples=59).fit(X, y).solver_ == "liblinear", "over the cap"
    tall = LinearSVM().fit(X[:, :50], y)
    assert tall.solver_ == "liblinear", "more rows than features: liblinear's primal"
    assert tall.n_iter_ >= 1


def test_linear_svm_head_uses_it_and_two_classes_give_one_row():
    X, y = blobs(n=40, dim=80, centers=2, std=4.0)
    head = make_head("linear-svm:C=0.5").fit(X, y)
    clf = head[-1]
    assert isinstance(clf, LinearSVM) and clf.C == 0.5 and clf.solver_ == "gram"
    assert clf.coef_.shape == (1, 80) and clf.intercept_.shape == (1,)
    assert head.decision_function(X).shape == (40,)
    assert set(head.predict(X)) <= set(clf.classes_)


def test_one_class_is_refused_with_a_clear_message():
    X, _ = blobs(n=20, dim=30, centers=2, std=1.0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearSVM().fit(X, np.zeros(20, int))


def test_saved_linear_svm_head_loads_through_the_allow_list(tmp_path):
    from bottleneck_transfer.heads.training import LabeledData, load_head, save_head, train_head

    X, y = blobs(n=60, dim=100, centers=3, std=4.0)
    data = LabeledData.from_arrays(X, y, class_names=["a", "b", "c"])
    trained = train_head(data, "linear-svm")
    loaded = load_head(save_head(trained, tmp_path / "svm.skops"))
    assert loaded.estimator[-1].solver_ == "gram"
    np.testing.assert_array_equal(loaded.estimator.predict(X), trained.estimator.predict(X))


def _wide_bottleneck_like(n: int = 400, dim: int = 2048, classes: int = 4) -> tuple:
    """Correlated, non-negative (ReLU-like) features from a 32-d latent: like pooled CNN output."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    latent = rng.normal(size=(n, 32)) + 1.5 * np.eye(classes, 32)[y]
    X = np.maximum(latent @ rng.normal(size=(32, dim)) + 0.3 * rng.normal(size=(n, dim)), 0)
    return (X - X.mean(0)) / (X.std(0) + 1e-12), y


@pytest.mark.slow
def test_gram_solver_is_much_faster_than_liblinear_on_wide_features():
    """Benchmark regression, as a ratio within one run (about 20x measured on 2 cores)."""
    import time

    X, y = _wide_bottleneck_like()
    ratios = []
    for _ in range(3):
        started = time.perf_counter()
        liblinear = LinearSVC(max_iter=5000).fit(X, y)
        middle = time.perf_counter()
        gram = LinearSVM().fit(X, y)
        ratios.append((middle - started) / (time.perf_counter() - middle))
    assert gram.solver_ == "gram"
    assert np.mean(gram.predict(X) == liblinear.predict(X)) >= 0.99
    assert np.median(ratios) >= 4, ratios
