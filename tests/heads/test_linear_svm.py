"""The linear-svm head: LinearSVC's model, fitted fast and within bounds on both sides of n = d."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from bottleneck_transfer.heads.linear_svm import GRAM_ROWS_PER_FEATURE, LinearSVM
from bottleneck_transfer.heads.registry import classifier, make_head
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


def test_solver_follows_the_memory_cap():
    X, y = blobs(n=60, dim=100, centers=3, std=4.0)
    assert LinearSVM().fit(X, y).solver_ == "gram", "fewer rows than features"
    assert LinearSVM(max_gram_samples=59).fit(X, y).solver_ == "newton", "over the cap"
    tall = LinearSVM().fit(X[:, :50], y)
    assert tall.solver_ in ("gram", "gram+newton") and tall.converged_
    assert 1 <= tall.n_iter_ <= tall.max_iter


def test_rows_far_outnumbering_features_skip_the_gram_matrix():
    """Above GRAM_ROWS_PER_FEATURE rows per feature SMO crawls: Newton alone (tall data,
    e.g. the calibration folds of the demo's 12,000 x 128 features)."""
    X, y = blobs(n=600, dim=20, centers=3, std=6.0)
    most = GRAM_ROWS_PER_FEATURE * (X.shape[1] + 1)
    assert len(X) > most and LinearSVM().fit(X, y).solver_ == "newton"
    assert LinearSVM().fit(X[:most], y[:most]).solver_ != "newton"


@pytest.mark.parametrize("max_gram_samples", [0, 10_000])
@pytest.mark.parametrize(("n", "dim", "centers"), [(600, 20, 3), (300, 50, 2)])
def test_decision_function_matches_linearsvc_on_tall_data(n, dim, centers, max_gram_samples):
    """Newton alone (no Gram matrix) and SMO then Newton give LinearSVC's scores."""
    X, y = blobs(n=n, dim=dim, centers=centers, std=6.0)
    X = (X - X.mean(0)) / X.std(0)
    ours = LinearSVM(C=0.1, tol=1e-8, max_iter=100, max_gram_samples=max_gram_samples)
    ours.fit(X, y)
    # A large intercept_scaling makes liblinear's regularised intercept effectively free.
    reference = LinearSVC(
        loss="squared_hinge", C=0.1, tol=1e-10, max_iter=100_000, intercept_scaling=1000
    ).fit(X, y)
    assert ours.converged_ and ours.n_iter_ <= 100
    assert ours.solver_ == ("newton" if max_gram_samples == 0 else ours.solver_)
    np.testing.assert_allclose(
        ours.decision_function(X), reference.decision_function(X), atol=1e-3, rtol=1e-4
    )


def _degenerate(n: int = 2000, width: int = 1280, classes: int = 4) -> tuple:
    """``width`` columns spanning a quarter of them: ReLU features three times each, an
    eighth of linear combinations, a sixteenth each of zero and constant columns; heavily
    overlapping classes (most rows end up support vectors, where SMO crawls)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    latent = rng.normal(size=(n, 16)) + np.eye(classes, 16)[y]
    base = np.maximum(latent @ rng.normal(size=(16, width // 4)), 0)
    combos = base[:, : width // 32] @ rng.normal(size=(width // 32, width // 8))
    constant = np.full((n, width // 16), 3.0)
    X = np.hstack([base, base, base, combos, np.zeros_like(constant), constant])
    assert X.shape == (n, width)
    return X[:, rng.permutation(width)], y


@pytest.mark.parametrize("max_gram_samples", [0, 10_000])
def test_solver_stops_within_its_bound_on_a_degenerate_problem(max_gram_samples):
    X, y = _degenerate()
    head = make_head("linear-svm", calibrate=False, max_iter=2, max_gram_samples=max_gram_samples)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        head.fit(X, y)
    svm = head[-1]
    assert svm.n_iter_ <= 2 and not svm.converged_
    assert svm.coef_.shape == (4, 1280) and np.all(np.isfinite(svm.coef_))
    assert np.mean(head.predict(X) == y) > 0.3, "the bounded fit is still a classifier"


def test_newton_converges_on_the_degenerate_problem_and_agrees_with_itself():
    """From zero or from SMO's point, Newton reaches the same optimum of the same objective."""
    X, y = _degenerate(n=800, width=320, classes=3)
    X = X - X.mean(0)
    alone = LinearSVM(max_gram_samples=0, tol=1e-6).fit(X, y)
    after_smo = LinearSVM(tol=1e-6).fit(X, y)
    assert alone.converged_ and after_smo.converged_
    assert alone.solver_ == "newton" and after_smo.solver_ == "gram+newton"
    np.testing.assert_allclose(
        alone.decision_function(X), after_smo.decision_function(X), atol=1e-3
    )


def test_linear_svm_head_uses_it_and_two_classes_give_one_row():
    X, y = blobs(n=40, dim=80, centers=2, std=4.0)
    head = make_head("linear-svm:C=0.5", calibrate=False).fit(X, y)
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
    assert classifier(loaded.estimator).solver_ == "gram"
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
