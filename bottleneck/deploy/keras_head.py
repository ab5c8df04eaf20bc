"""A fitted scikit-learn head as exact Keras layers (for the single-file ``.keras`` export).

:func:`head_layers` turns a head into Dense layers that output *scores*; the export ends in a
softmax. What the softmax of the scores is, per head (also the export's ``outputs``):

* ``logreg``: ``predict_proba`` exactly: softmax of the logits (multinomial); binary as
  ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``; one-vs-rest models (liblinear, the
  out-of-core SGD log-loss head) as ``softmax(log sigmoid(z))`` = normalised sigmoids, with
  ``log sigmoid(z) = -softplus(-z)`` (Dense+softplus, then a Dense with kernel ``-I``).
* ``dense``: ``predict_proba`` exactly: Dense (+ReLU hidden layer if any) + softmax; dropout
  is a no-op at inference and is left out.
* a calibrated head (``linear-svm`` by default; a
  :class:`~sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``: one
  classifier ``s = W x + c`` and its calibrators): ``predict_proba`` exactly.
  Temperature scaling is ``softmax(beta * s)``: the logits are the decision values scaled by
  ``beta`` (binary: ``softmax(beta * [-z, z]) = softmax([0, 2 beta z])``). Platt's sigmoid
  is ``p_k = sigmoid(-(a_k s_k + b_k))`` normalised, i.e. ``softmax(log sigmoid(-(a s + b)))``:
  the one-vs-rest form above with the decision values mapped by ``a s + b`` (binary:
  ``softmax([0, -(a z + b)])``). Isotonic calibration is a step function: no exact form.
  (scikit-learn's temperature scaling reads decision values whose every row lies in [0, 1]
  and sums to 1 as probabilities and takes their log; decision values of a margin
  classifier are not that.)
* an uncalibrated ``linear-svm`` (``linear-svm:calibrate=false``, ``outputs="decision-softmax"``):
  ``softmax(decision_function)``, its one-vs-rest margins squashed to sum to 1: *scores*,
  not probabilities (``predict`` names their columns ``score_*``). The arg-max is exactly
  the SVM's prediction.

In every case the StandardScaler is folded into the first Dense layer:
``W' = W / scale``, ``b' = b - (mean / scale) @ W`` (computed in float64).
:func:`head_scores` computes the same scores with scikit-learn, for any head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import HeadError

if TYPE_CHECKING:
    import keras


def head_scores(head: Any, features: np.ndarray) -> np.ndarray:
    """The head's scores in ``classes_`` order: ``predict_proba``, else softmax(decision)."""
    if hasattr(head, "predict_proba"):
        return np.asarray(head.predict_proba(features), np.float64)
    decision = np.asarray(head.decision_function(features), np.float64)
    if decision.ndim == 1:
        decision = np.stack([np.zeros_like(decision), decision], axis=1)
    decision -= decision.max(axis=1, keepdims=True)
    exp = np.exp(decision)
    return exp / exp.sum(axis=1, keepdims=True)


def final_estimator(head: Any) -> tuple[list[Any], Any]:
    """The transformer steps of a pipeline (none for a bare classifier) and its classifier."""
    steps = getattr(head, "steps", None)
    if steps is None:
        return [], head
    return [step for _, step in steps[:-1]], steps[-1][1]


def _fold_scaler(transformers: list[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the StandardScaler steps as one affine map ``(x - mean) / scale``."""
    from sklearn.preprocessing import StandardScaler

    mean = np.zeros(dim)
    scale = np.ones(dim)
    for step in transformers:
        if step is None or step == "passthrough":
            continue
        if not isinstance(step, StandardScaler):
            raise HeadError(
                f"a {type(step).__name__} step has no exact Keras form (only StandardScaler "
                "is folded into the weights); export this head as a folder (-o DIR)"
            )
        step_mean = step.mean_ if step.mean_ is not None else np.zeros(dim)
        step_scale = step.scale_ if step.scale_ is not None else np.ones(dim)
        # x' = ((x - mean) / scale - step_mean) / step_scale
        mean = mean + step_mean * scale
        scale = scale * step_scale
    return mean, scale


def _dense_layer(weight: np.ndarray, bias: np.ndarray | None, name: str, activation=None):
    import keras

    layer = keras.layers.Dense(
        weight.shape[1], activation=activation, use_bias=bias is not None, name=name
    )
    layer.build((None, weight.shape[0]))
    values = [weight.astype(np.float32)]
    if bias is not None:
        values.append(bias.astype(np.float32))
    layer.set_weights(values)
    return layer


def head_layers(head: Any, dim: int) -> tuple[list[keras.layers.Layer], str]:
    """Convert a fitted head to Keras layers that output *scores* (pre-softmax).

    Returns the layers (apply in order to ``(N, dim)`` features) and what the softmax of
    the scores means: ``"probabilities"`` (equals ``predict_proba``) or
    ``"decision-softmax"`` (softmax of decision values; arg-max equals ``predict``).

    Raises
    ------
    HeadError
        If the head has no exact Keras form (e.g. an RBF SVM or k-NN): export a folder.
    """
    transformers, clf = final_estimator(head)
    clf, calibration = _calibrated(clf)
    name = type(clf).__name__
    mean, scale = _fold_scaler(transformers, dim)
    if calibration is not None and not hasattr(clf, "coef_"):
        raise HeadError(
            f"a calibrated {name} has no exact Keras form (only linear classifiers' decision "
            "values are calibrated exactly); export it as a folder: -o DIR"
        )
    if hasattr(clf, "coefs_") and hasattr(clf, "intercepts_"):
        # DenseHead (and MLP-like heads): Dense+ReLU hidden layers, then the softmax layer.
        coefs = [np.asarray(c, np.float64) for c in clf.coefs_]
        intercepts = [np.asarray(b, np.float64) for b in clf.intercepts_]
        activation = getattr(clf, "activation", "relu")
        if activation != "relu" or len(coefs) > 2 or coefs[-1].shape[1] < 2:
            raise HeadError(f"{name} with {len(coefs)} layers ({activation}) is not supported")
        if getattr(clf, "out_activation_", "softmax") != "softmax":
            raise HeadError(f"{name} with output {clf.out_activation_} is not supported")
        first_w = coefs[0] / scale[:, None]
        first_b = intercepts[0] - (mean / scale) @ coefs[0]
        if len(coefs) == 1:
            return [_dense_layer(first_w, first_b, "head_logits")], "probabilities"
        return [
            _dense_layer(first_w, first_b, "head_hidden", activation="relu"),
            _dense_layer(coefs[1], intercepts[1], "head_logits"),
        ], "probabilities"
    if not (hasattr(clf, "coef_") and hasattr(clf, "intercept_")):
        raise HeadError(
            f"{name} has no exact Keras form (not a linear or dense head); "
            "export it as a folder: -o DIR instead of a .keras file"
        )
    coef = np.asarray(clf.coef_, np.float64)
    intercept = np.broadcast_to(np.asarray(clf.intercept_, np.float64), (coef.shape[0],))
    weight = (coef / scale[None, :]).T
    bias = intercept - weight.T @ mean
    n_classes = len(clf.classes_)
    if coef.shape[0] == 1 and n_classes == 2:
        # Binary: one decision value z; scores [0, z] give softmax = [1 - sigmoid(z), sigmoid(z)].
        weight = np.concatenate([np.zeros_like(weight), weight], axis=1)
        bias = np.concatenate([[0.0], bias])
    elif coef.shape[0] != n_classes:
        raise HeadError(f"{name}: coef_ has {coef.shape[0]} rows for {n_classes} classes")
    if calibration is not None:
        return _calibrated_layers(weight, bias, *calibration), "probabilities"
    proba = _proba_form(clf, n_classes)
    if proba == "ovr":
        # One-vs-rest probabilities sigmoid(z_k) / sum_j sigmoid(z_j) are exactly
        # softmax(log sigmoid(z)), and log sigmoid(z) = -softplus(-z).
        return [
            _dense_layer(-weight, -bias, "head_negated_logits", activation="softplus"),
            _dense_layer(-np.eye(n_classes), None, "head_log_sigmoid"),
        ], "probabilities"
    outputs = "probabilities" if proba == "softmax" else "decision-softmax"
    return [_dense_layer(weight, bias, "head_logits")], outputs


def _calibrated(clf: Any) -> tuple[Any, tuple[str, list[Any]] | None]:
    """The classifier inside a calibration, with its method and calibrators (or None)."""
    from sklearn.calibration import CalibratedClassifierCV

    if not isinstance(clf, CalibratedClassifierCV):
        return clf, None
    fitted = clf.calibrated_classifiers_
    if len(fitted) != 1:
        raise HeadError(
            f"a calibration averaging {len(fitted)} classifiers (ensemble=True) has no single "
            "Keras form; calibrate with ensemble=False (as make_head does) or export a folder"
        )
    return fitted[0].estimator, (fitted[0].method, fitted[0].calibrators)


def _calibrated_layers(
    weight: np.ndarray, bias: np.ndarray, method: str, calibrators: list[Any]
) -> list[keras.layers.Layer]:
    """Layers whose softmax is the calibrated ``predict_proba`` of the decision values
    ``x @ weight + bias`` (binary: column 0 is zero, column 1 the decision value)."""
    binary = len(calibrators) == 1 and weight.shape[1] == 2 and method != "temperature"
    if method == "temperature":
        (temperature,) = calibrators
        beta = float(temperature.beta_) * (2.0 if weight.shape[1] == 2 else 1.0)
        return [_dense_layer(weight * beta, bias * beta, "head_logits")]
    if method != "sigmoid":
        raise HeadError(
            f"{method} calibration has no exact Keras form; export the head as a folder: -o DIR"
        )
    a = np.array([float(c.a_) for c in calibrators])
    b = np.array([float(c.b_) for c in calibrators])
    if binary:
        # softmax([0, -(a z + b)]) = [1 - p, p] with p = sigmoid(-(a z + b))
        weight = np.concatenate([weight[:, :1], -a * weight[:, 1:]], axis=1)
        bias = np.array([0.0, -(a[0] * bias[1] + b[0])])
        return [_dense_layer(weight, bias, "head_logits")]
    # sigmoid(-(a s + b)) normalised = softmax(-softplus(a s + b))
    n_classes = weight.shape[1]
    return [
        _dense_layer(weight * a, bias * a + b, "head_calibrated", activation="softplus"),
        _dense_layer(-np.eye(n_classes), None, "head_log_sigmoid"),
    ]


def _proba_form(clf: Any, n_classes: int) -> str | None:
    """How a linear classifier's ``predict_proba`` follows from its decision values.

    ``"softmax"`` (multinomial logistic regression; any binary logistic model, whose
    ``[1 - sigmoid(z), sigmoid(z)]`` is ``softmax([0, z])``), ``"ovr"`` (normalised
    one-vs-rest sigmoids: liblinear logistic regression, SGD with log loss) or ``None``
    (no ``predict_proba``: SVMs, ridge). Anything else raises :class:`HeadError`.
    """
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    if not hasattr(clf, "predict_proba"):
        return None
    if isinstance(clf, LogisticRegression):
        return "ovr" if clf.solver == "liblinear" and n_classes > 2 else "softmax"
    if isinstance(clf, SGDClassifier) and clf.loss == "log_loss":
        return "ovr" if n_classes > 2 else "softmax"
    raise HeadError(
        f"{type(clf).__name__}'s predict_proba has no exact Keras form; export a folder (-o DIR)"
    )
