"""The dense head for multi-label and regression targets: :class:`DenseOutputHead`.

A Keras layer (optional ReLU hidden layer and dropout) ending in ``K`` sigmoids (multi-label:
one per tag, binary cross-entropy) or one linear unit (regression: mean squared error on the
standardised value; the scaling is folded into the last layer after training, so the model
outputs the value itself). AdamW, early stopping on a validation share of the training rows
with the best weights restored. The class-target dense head is
:class:`~bottleneck_transfer.heads.estimators.DenseHead`.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

OUTPUTS = ("sigmoid", "linear")


class DenseOutputHead(BaseEstimator):
    """A Keras head with sigmoid (multi-label) or linear (regression) outputs.

    Parameters
    ----------
    output : {"sigmoid", "linear"}
        Tag probabilities (``y`` of shape (n, K) of 0/1) or a value (``y`` of shape (n,)).
    hidden, dropout, learning_rate, weight_decay, epochs, batch_size, validation_fraction,
    patience, random_state
        As :class:`~bottleneck_transfer.heads.estimators.DenseHead`'s.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Each Dense layer's kernel and bias (the last one outputs the value or the logits).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> head = DenseOutputHead(output="linear", epochs=5).fit(X, X[:, 0])
    >>> head.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints: ClassVar[dict] = {
        "output": [StrOptions(set(OUTPUTS))],
        "hidden": [Interval(Integral, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        output: str = "sigmoid",
        hidden: int = 0,
        dropout: float = 0.0,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 128,
        validation_fraction: float = 0.1,
        patience: int = 5,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.output = output
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> DenseOutputHead:
        """Train on ``X`` and tag indicators (n, K) or values (n,)."""
        import keras

        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True)
        y = np.asarray(y, np.float32).reshape(len(X), -1)
        linear = self.output == "linear"
        self.y_mean_ = y.mean(axis=0) if linear else np.zeros(y.shape[1], np.float32)
        self.y_scale_ = (y.std(axis=0) + 1e-12) if linear else np.ones(y.shape[1], np.float32)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        keras.utils.set_random_seed(seed)
        model = self._build(X.shape[1], y.shape[1])
        model.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate=self.learning_rate, weight_decay=self.weight_decay
            ),
            loss="mse" if linear else "binary_crossentropy",
            jit_compile=False,
        )
        n_val = round(self.validation_fraction * len(X))
        order = np.random.default_rng(seed).permutation(len(X))
        val, fit = order[:n_val], order[n_val:]
        scaled = (y - self.y_mean_) / self.y_scale_
        stop = keras.callbacks.EarlyStopping(patience=self.patience, restore_best_weights=True)
        model.fit(
            X[fit],
            scaled[fit],
            epochs=self.epochs,
            batch_size=min(self.batch_size, len(fit)),
            validation_data=(X[val], scaled[val]) if n_val else None,
            callbacks=[stop] if n_val else [],
            verbose=0,
        )
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        self.coefs_ = [np.asarray(layer.kernel, np.float32) for layer in dense]
        self.intercepts_ = [np.asarray(layer.bias, np.float32) for layer in dense]
        self.coefs_[-1] = self.coefs_[-1] * self.y_scale_  # the model outputs the value
        self.intercepts_[-1] = self.intercepts_[-1] * self.y_scale_ + self.y_mean_
        self.n_outputs_ = y.shape[1]
        return self

    def _build(self, n_features: int, n_outputs: int):
        import keras

        inputs = keras.Input(shape=(n_features,), dtype="float32")
        x = inputs
        if self.hidden:
            x = keras.layers.Dense(self.hidden, activation="relu", name="hidden")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name="dropout")(x)
        activation = "sigmoid" if self.output == "sigmoid" else None
        outputs = keras.layers.Dense(n_outputs, activation=activation, name="output")(x)
        return keras.Model(inputs, outputs, name="dense_output_head")

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        """The last layer's pre-activation (logits, or the value), in NumPy (float64)."""
        check_is_fitted(self)
        x = np.asarray(validate_data(self, X, dtype=np.float32, reset=False), np.float64)
        for coef, bias in zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True):
            x = np.maximum(x @ coef + bias, 0.0)
        return x @ self.coefs_[-1].astype(np.float64) + self.intercepts_[-1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, K) tag probabilities (``output="sigmoid"``)."""
        if self.output != "sigmoid":
            raise AttributeError("a linear DenseOutputHead predicts values, not probabilities")
        return 1.0 / (1.0 + np.exp(-self._outputs(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Values (n,) (``output="linear"``), or tags at probability 0.5 (n, K)."""
        if self.output == "linear":
            out = self._outputs(X)
            return out[:, 0] if out.shape[1] == 1 else out
        return (self.predict_proba(X) >= 0.5).astype(np.int64)
