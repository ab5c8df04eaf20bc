"""Every head's solver is bounded, and a fit stopped at its bound is marked in the table."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.estimators import RBFSVC, DenseHead
from bottleneck_transfer.heads.registry import LOGREG_MAX_ITER, make_head
from bottleneck_transfer.heads.report import NOT_CONVERGED_MARK, format_table
from bottleneck_transfer.heads.training import NOT_CONVERGED, LabeledData
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def test_exact_rbf_svm_on_the_precomputed_kernel_is_libsvms_own(digits):
    X, y = digits
    ours = RBFSVC().fit(X[:900], y[:900])
    reference = SVC(gamma=ours.gamma_).fit(X[:900], y[:900])
    assert ours.solver_ == "exact" and len(ours.support_vectors_) == len(reference.support_)
    np.testing.assert_array_equal(ours.predict(X[900:]), reference.predict(X[900:]))
    np.testing.assert_allclose(
        ours.decision_function(X[900:]), reference.decision_function(X[900:]), atol=1e-9
    )


def test_rbf_svm_stops_at_its_iteration_bound(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        svm = RBFSVC(max_iter=3).fit(X[:400], y[:400])
    assert svm.n_iter_ <= 3


def test_logreg_is_bounded():
    assert make_head("logreg")[-1].max_iter == LOGREG_MAX_ITER <= 500


def test_dense_warns_when_early_stopping_never_triggered(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="epochs=1"):
        head = DenseHead(epochs=1, validation_fraction=0.2, random_state=0).fit(X, y)
    assert head.n_iter_ == 1


def test_a_fit_stopped_at_its_bound_is_marked_with_a_one_line_footnote(digits):
    X, y = digits
    data = LabeledData.from_arrays(X[:600], y[:600])
    comparison = compare_heads(data, heads=["logreg:max_iter=2", "knn"], cv=2)
    bounded, fine = comparison.row("logreg:max_iter=2"), comparison.row("knn")
    assert [note.startswith(NOT_CONVERGED) for note in bounded.notes] == [True]
    assert "\n" not in bounded.notes[0] and "after 2 iteration" in bounded.notes[0]
    assert fine.notes == []
    table = format_table(comparison)
    row_line = next(line for line in table.splitlines() if "logreg:max_iter=2" in line)
    assert f"{NOT_CONVERGED_MARK} [1]" in row_line
    knn_line = next(
        line for line in table.splitlines() if line.lstrip()[:1].isdigit() and "knn" in line
    )
    assert NOT_CONVERGED_MARK not in knn_line
    assert f"[1] {bounded.notes[0]}" in table
    assert f"{NOT_CONVERGED_MARK} not converged: a solver stopped at its iteration bound" in table
