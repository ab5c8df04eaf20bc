"""A margin classifier calibrated on held-out rows that need not be all of its rows.

:class:`HeldOutCalibration` is :class:`~sklearn.calibration.CalibratedClassifierCV` with
``ensemble=False`` (one classifier fitted on every training row, one calibrator), except
that its folds need not cover every row: scikit-learn's ``ensemble=False`` fit takes the
out-of-fold decision values of *all* rows (``cross_val_predict``: 1 + 5 fits for 5 folds),
where a one-parameter temperature needs a few hundred held-out rows. Given folds of the
training rows (:func:`~bottleneck_transfer.heads.calibration.calibration_folds`: as many as
hold :data:`~bottleneck_transfer.heads.registry.CALIBRATION_HELD_ROWS` rows), it fits one
clone per fold on the fold's fitting rows, takes its decision values on the fold's held
rows, fits the calibrator on those and the classifier on every row: 1 + k fits. The fitted
object is the parent's (``calibrated_classifiers_``, one ``_CalibratedClassifier``), so its
``predict_proba``, export and saved form are those of scikit-learn's.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV, _fit_calibrator
from sklearn.model_selection import check_cv
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import check_classification_targets


class HeldOutCalibration(CalibratedClassifierCV):
    """``CalibratedClassifierCV(ensemble=False)`` whose calibrator sees held-out rows only.

    ``cv``: a list of ``(fit rows, held rows)`` index pairs (the held rows of different
    folds disjoint, together some or all of the rows), or anything
    :func:`~sklearn.model_selection.check_cv` takes (then every fold: all rows held once).
    The calibrator is fitted on the decision values of the held rows, each from a clone
    fitted on its fold's fitting rows only; the classifier on all rows. ``ensemble`` is
    ignored (always one classifier).

    Attributes
    ----------
    held_rows_ : ndarray of int
        The rows whose held-out decision values fitted the calibrator, in fold order.
    n_fits_ : int
        Fits of the estimator: one per fold and one on all rows.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import LinearSVC
    >>> X, y = load_iris(return_X_y=True)
    >>> folds = [(np.arange(30, 150), np.arange(30))]  # not a partition: 30 rows held
    >>> head = HeldOutCalibration(LinearSVC(), method="temperature", cv=folds)
    >>> head.fit(X[np.random.default_rng(0).permutation(150)], np.repeat([0, 1, 2], 50)).n_fits_
    2
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> HeldOutCalibration:
        """Fit a clone per fold for the held rows' decision values, the calibrator on
        them, then the estimator on every row."""
        self._validate_params()
        check_classification_targets(y)
        y = np.asarray(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if self.method == "temperature" and isinstance(y[0], str):  # as scikit-learn's fit
            y = encoder.transform(y)
        folds = self._folds(X, y)
        held = np.concatenate([np.asarray(h, dtype=np.int64) for _, h in folds])
        if len(np.unique(held)) != len(held):
            raise ValueError("calibration folds hold a row more than once")
        estimator = self._get_estimator()
        # decision values where the estimator has them (knn: its probabilities), as scikit-learn
        response = "decision_function" if hasattr(estimator, "decision_function") else None
        response = response or "predict_proba"
        values = np.concatenate(
            [
                getattr(clone(estimator).fit(_safe_indexing(X, fit), y[fit]), response)(
                    _safe_indexing(X, rows)
                )
                for fit, rows in folds
            ]
        )
        if len(self.classes_) == 2:  # one column: the positive class's
            values = (values[:, 1] if values.ndim == 2 else values).reshape(-1, 1)
        fitted = clone(estimator).fit(X, y)
        calibrated = _fit_calibrator(fitted, values, y[held], self.classes_, self.method, np)
        self.calibrated_classifiers_ = [calibrated]
        self.held_rows_ = held
        self.n_fits_ = len(folds) + 1
        self.n_features_in_ = fitted.n_features_in_
        return self

    def _folds(self, X: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if isinstance(self.cv, (list, tuple)):
            return [(np.asarray(f), np.asarray(h)) for f, h in self.cv]
        return list(check_cv(self.cv, y, classifier=True).split(X, y))
