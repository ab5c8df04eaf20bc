"""Heads are scikit-learn classifiers in every respect; specs, the dense head, tuning."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.estimators import RBFSVC, DenseHead
from bottleneck_transfer.heads.linear_svm import LinearSVM
from bottleneck_transfer.heads.registry import (
    has_proba,
    head_kind,
    head_names,
    head_params,
    make_head,
    parse_spec,
    set_random_state,
    split_specs,
)
from bottleneck_transfer.heads.training import LabeledData, fit_head
from bottleneck_transfer.heads.tuning import tune_head
from heads_fixtures import blobs
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

PIPELINE_FAILURES = {
    "check_estimators_overwrite_params": (
        "a Pipeline fits its `steps` in place, so the `steps` parameter changes during fit; "
        "scikit-learn's own Pipeline fails this check the same way"
    ),
    "check_dont_overwrite_parameters": "same reason: Pipeline mutates the estimators in `steps`",
}


#: scikit-learn's own CalibratedClassifierCV fails these two checks (not our estimators).
CALIBRATED_FAILURES = {
    "check_supervised_y_2d": (
        "CalibratedClassifierCV's cross_val_predict indexes a column vector y as classes"
    ),
    "check_fit2d_1feature": "CalibratedClassifierCV needs 5 rows per class for its 5 folds",
}


DENSE_FAILURES = {
    "check_methods_sample_order_invariance": (
        "a float32 Keras model: rows batched differently differ by ~1e-7 relative, scikit-learn "
        "allows 1e-7 (test_dense_head_predictions_do_not_depend_on_row_order checks 1e-5)"
    ),
}


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, DenseHead):
        return DENSE_FAILURES
    if not hasattr(estimator, "steps"):
        return {}
    calibrated = estimator.steps[-1][1].__class__.__name__ == "CalibratedClassifierCV"
    return {**PIPELINE_FAILURES, **(CALIBRATED_FAILURES if calibrated else {})}


@parametrize_with_checks(
    [
        *(make_head(name, calibrate=False) for name in ("logreg", "linear-svm", "rbf-svm", "knn")),
        make_head("linear-svm"),
        RBFSVC(random_state=0),
        RBFSVC(max_exact_samples=10, n_components=20, random_state=0),
        LinearSVM(),
        LinearSVM(max_gram_samples=0),
        # Few epochs but many small steps: the checks fit dozens of tiny models.
        DenseHead(
            epochs=2, batch_size=16, learning_rate=0.05, validation_fraction=0, random_state=0
        ),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_dense_head_predictions_do_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)).astype(np.float32), np.arange(60) % 3
    head = DenseHead(epochs=2, batch_size=16, validation_fraction=0, random_state=0).fit(X, y)
    order = rng.permutation(len(X))
    np.testing.assert_allclose(
        head.predict_proba(X[order]), head.predict_proba(X)[order], rtol=1e-5
    )


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_head_names_and_defaults():
    assert head_names() == ("logreg", "linear-svm", "rbf-svm", "dense", "nystroem", "knn")
    head = make_head()
    assert [name for name, _ in head.steps] == ["scale", "clf"]
    assert type(head[-1]).__name__ == "LogisticRegression"
    assert type(make_head("knn")[0]).__name__ == "Normalizer"
    assert type(make_head("dense")[0]).__name__ == "StandardScaler"


def test_spec_values_are_typed():
    name, params = parse_spec("dense:hidden=256,dropout=0.2,verbose=false,random_state=none")
    assert name == "dense"
    assert params == {"hidden": 256, "dropout": 0.2, "verbose": False, "random_state": None}
    assert parse_spec("logreg:class_weight=balanced")[1] == {"class_weight": "balanced"}
    head = make_head("logreg:C=0.1", max_iter=50)
    assert head[-1].C == 0.1 and head[-1].max_iter == 50
    assert make_head("logreg:C=0.1", C=2.0)[-1].C == 2.0


def test_unknown_head_lists_valid_heads():
    expected = r"(?i)valid heads: logreg, linear-svm.*Received: head='foo'"
    with pytest.raises(HeadError, match=expected):
        make_head("foo:C=1")


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(HeadError, match=r"no parameter 'hiden'; valid parameters: .*hidden"):
        make_head("dense:hiden=3")
    assert "C" in head_params("logreg") and "hidden" in head_params("dense")


def test_invalid_values_and_malformed_specs():
    with pytest.raises(HeadError, match=r"'C' parameter .* Received: head='logreg:C=-1'"):
        make_head("logreg:C=-1")
    with pytest.raises(HeadError, match="dropout"):
        make_head("dense:dropout=1.5")
    with pytest.raises(HeadError, match="expected NAME=VALUE"):
        make_head("logreg:C")


def test_split_specs_keeps_parameters_with_their_head():
    text = "logreg:C=0.1,linear-svm,dense:hidden=64,dropout=0.2,knn"
    assert split_specs(text) == ["logreg:C=0.1", "linear-svm", "dense:hidden=64,dropout=0.2", "knn"]
    with pytest.raises(HeadError, match="starts with a parameter"):
        split_specs("C=1,logreg")
    with pytest.raises(HeadError, match="no heads"):
        split_specs(" , ")


@pytest.mark.parametrize("name", head_names())
def test_every_head_is_a_full_classifier(name, digits):
    X_train, X_test, y_train, y_test = digits
    extra = {"epochs": 30} if name == "dense" else {}
    head = set_random_state(make_head(name, calibrate=False, **extra), 0)
    twin = clone(head)
    assert twin is not head and twin[-1] is not head[-1]
    assert twin[-1].get_params() == head[-1].get_params()
    params = head[-1].get_params()
    key, value = next(
        (k, v) for k, v in (("random_state", 1), ("n_neighbors", 3), ("C", 2.0)) if k in params
    )
    head.set_params(**{f"clf__{key}": value})
    assert head[-1].get_params()[key] == value
    head.fit(X_train, y_train)
    assert head.score(X_test, y_test) > 0.9
    np.testing.assert_array_equal(head.classes_, np.arange(10))
    assert head.n_features_in_ == 64
    fitted = [k for k in vars(head[-1]) if k.endswith("_") and not k.startswith("_")]
    assert fitted, "fitted attributes end with '_'"
    assert has_proba(head) == (name in ("logreg", "dense", "nystroem", "knn"))
    if has_proba(head):
        proba = head.predict_proba(X_test)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(head.classes_[proba.argmax(axis=1)], head.predict(X_test))
    else:
        assert head.decision_function(X_test).shape == (len(X_test), 10)
    restored = pickle.loads(pickle.dumps(head))
    np.testing.assert_array_equal(restored.predict(X_test), head.predict(X_test))


def test_dense_weights_are_plain_numpy_and_give_its_probabilities(digits):
    X_train, X_test, y_train, _ = digits
    head = DenseHead(epochs=20, random_state=0).fit(X_train / 16, y_train)
    (kernel,), (bias,) = head.coefs_, head.intercepts_
    assert isinstance(kernel, np.ndarray) and kernel.shape == (64, 10) and bias.shape == (10,)
    logits = (X_test / 16) @ kernel.astype(np.float64) + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(X_test / 16), expected, atol=1e-5)


def test_dense_hidden_layer_dropout_and_early_stopping(digits):
    X_train, X_test, y_train, y_test = digits
    head = DenseHead(hidden=32, dropout=0.2, epochs=200, patience=3, random_state=0)
    head.fit(X_train / 16, y_train)
    assert [w.shape for w in head.coefs_] == [(64, 32), (32, 10)]
    assert [b.shape for b in head.intercepts_] == [(32,), (10,)]
    assert head.n_iter_ < 200, "early stopping on the validation slice ends training"
    assert head.best_epoch_ == int(np.argmin(head.validation_loss_curve_)) + 1
    assert len(head.loss_curve_) == head.n_iter_
    assert head.score(X_test / 16, y_test) > 0.9
    no_validation = DenseHead(epochs=3, validation_fraction=0, random_state=0)
    no_validation.fit(X_train / 16, y_train)
    assert no_validation.n_iter_ == 3 and no_validation.validation_loss_curve_ is None


def test_dense_early_stopping_needs_an_improvement_larger_than_tol(digits):
    X_train, _, y_train, _ = digits
    never = DenseHead(epochs=50, patience=3, tol=10.0, random_state=0).fit(X_train / 16, y_train)
    assert never.n_iter_ == 4, "no epoch improves by 10 nats: stop after patience epochs"
    assert never.best_epoch_ == int(np.argmin(never.validation_loss_curve_)) + 1
    exact = DenseHead(epochs=50, patience=3, tol=0.0, random_state=0).fit(X_train / 16, y_train)
    assert exact.n_iter_ > 10, "with tol=0 the falling validation loss keeps training going"


def test_dense_trains_with_one_batch_shape_and_reports_epochs(digits, monkeypatch, capsys):
    import keras

    X_train, _, y_train, _ = digits
    shapes = []
    original = keras.Model.train_on_batch

    def recording(self, x, y=None, **kwargs):
        shapes.append(x.shape)
        return original(self, x, y, **kwargs)

    monkeypatch.setattr(keras.Model, "train_on_batch", recording)
    rows = 130  # two batches of 128: the second is topped up, never a 2-row batch
    head = DenseHead(epochs=3, validation_fraction=0, verbose=1, random_state=0)
    head.fit(X_train[:rows] / 16, y_train[:rows])
    assert shapes == [(128, 64)] * 6
    assert len(head.loss_curve_) == 3 and all(np.isfinite(head.loss_curve_))
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in printed] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    small = DenseHead(epochs=1, batch_size=512, validation_fraction=0, random_state=0)
    shapes.clear()
    small.fit(X_train[:40] / 16, y_train[:40])
    assert shapes == [(40, 64)], "a batch is never larger than the training set"


def test_dense_is_seeded_and_predicts_without_model_predict(digits, monkeypatch):
    import keras

    X_train, X_test, y_train, _ = digits
    first = DenseHead(epochs=5, dropout=0.1, random_state=7).fit(X_train, y_train)
    second = DenseHead(epochs=5, dropout=0.1, random_state=7).fit(X_train, y_train)
    np.testing.assert_array_equal(first.coefs_[0], second.coefs_[0])

    def forbidden(*args, **kwargs):
        raise AssertionError("predict must use one compiled batched call, not model.predict")

    monkeypatch.setattr(keras.Model, "predict", forbidden)
    assert first.predict(X_test).shape == (len(X_test),)


def test_dense_fits_identically_twice_without_touching_global_generators(digits):
    import random

    from sklearn.utils.estimator_checks import check_fit_idempotent

    check_fit_idempotent("DenseHead", DenseHead(epochs=3, random_state=0))
    X_train, X_test, y_train, _ = digits
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    heads = [
        DenseHead(hidden=16, dropout=0.2, epochs=15, random_state=0).fit(X_train / 16, y_train)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state, "fit draws from its own seeded generators only"
    np.testing.assert_array_equal(*(h.predict_proba(X_test / 16) for h in heads))
    assert heads[0].n_iter_ == heads[1].n_iter_


def test_dense_survives_skops_and_pickle(digits, tmp_path):
    import skops.io

    X_train, X_test, y_train, _ = digits
    head = make_head("dense:hidden=16,epochs=5", random_state=0).fit(X_train, y_train)
    path = tmp_path / "dense.skops"
    skops.io.dump(head, path)
    untrusted = skops.io.get_untrusted_types(file=path)
    assert "bottleneck_transfer.heads.estimators.DenseHead" in untrusted
    restored = skops.io.load(path, trusted=untrusted)
    np.testing.assert_allclose(
        restored.predict_proba(X_test), head.predict_proba(X_test), atol=1e-6
    )
    assert "model_" in vars(head[-1]), "pickling must not strip the live model"
    unpickled = pickle.loads(pickle.dumps(head))
    # float32 recomputed after reload: equal to within an ulp (JAX reorders some reductions)
    np.testing.assert_allclose(
        unpickled.predict_proba(X_test), head.predict_proba(X_test), rtol=1e-6, atol=1e-9
    )


def test_rbf_svm_switches_to_nystroem_above_the_documented_size():
    X, y = blobs(n=400, dim=8, centers=3, std=3.0)
    exact = RBFSVC(max_exact_samples=400).fit(X, y)
    approx = RBFSVC(max_exact_samples=399, n_components=200, random_state=0).fit(X, y)
    assert exact.solver_ == "exact" and exact.approximation_ is None
    assert approx.solver_ == "nystroem"
    assert "Nyström" in approx.approximation_ and "400 training rows > max_exact_samples=399" in (
        approx.approximation_
    )
    assert RBFSVC().max_exact_samples == 10_000
    agreement = np.mean(exact.predict(X) == approx.predict(X))
    assert agreement > 0.9
    assert exact.gamma_ == pytest.approx(1 / (8 * X.var()))


def test_tuning_refines_c_on_a_log_grid_using_only_the_given_rows():
    X, y = blobs(n=300, dim=10, centers=3, std=4.0)
    result = tune_head("logreg", X, y, random_state=0, n_jobs=1)
    coarse = head_kind("logreg").search_space.axes[0].grid
    assert len(result.trials) > len(coarse), "coarse-to-fine adds refinement trials"
    tried = sorted({t["params"]["C"] for t in result.trials})
    steps = np.diff(np.log10(tried))
    assert steps.min() == pytest.approx(1 / 8, rel=1e-3), "refined to 8 steps per decade"
    assert result.best_params["C"] in tried
    assert result.best_score == max(t["validation_score"] for t in result.trials)
    train, val = result.train_indices, result.val_indices
    assert not set(train) & set(val) and len(train) + len(val) == len(y)
    assert len(val) == 60
    np.testing.assert_array_equal(np.bincount(y[val]), [20, 20, 20])


def test_tuning_keeps_spec_parameters_fixed_and_searches_rbf_gamma():
    X, y = blobs(n=200, dim=4, centers=2, std=3.0)
    fixed = tune_head("logreg:C=0.5", X, y, n_jobs=1)
    assert fixed.trials == [] and fixed.best_params == {}
    rbf = tune_head("rbf-svm", X, y, n_jobs=1)
    assert set(rbf.best_params) == {"C", "gamma"}
    gammas = {t["params"]["gamma"] for t in rbf.trials}
    assert {0.25 / 4, 1 / 4, 4 / 4} <= {round(g, 10) for g in gammas}
    knn = tune_head("knn", X, y, n_jobs=1)
    assert isinstance(knn.best_params["n_neighbors"], int)


def test_tuning_needs_two_rows_per_class():
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0] * 9 + [1])
    with pytest.raises(HeadError, match="validation split"):
        tune_head("logreg", X, y)


def test_knn_with_more_neighbours_than_rows_is_one_clear_error():
    data = LabeledData.from_arrays(np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]))
    with pytest.raises(HeadError, match=r"5 neighbours among 4 training rows.*n_neighbors=4"):
        fit_head("knn", data)
    assert fit_head("knn:n_neighbors=4", data).estimator.predict(data.X).shape == (4,)
