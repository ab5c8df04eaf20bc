"""The ``linear-svm`` head: an L2-regularised squared-hinge linear SVM, one-vs-rest.

Each one-vs-rest problem is ``min 0.5 ||w||^2 + C sum_i max(0, 1 - t_i (w . x_i + b))^2``
with an unregularised intercept ``b``: the model of :class:`~sklearn.svm.LinearSVC` (with a
large ``intercept_scaling``). Two exact solvers share the work, each bounded:

1. **The dual on the Gram matrix** (libsvm's SMO), when there are at most
   ``max_gram_samples`` rows and at most :data:`GRAM_ROWS_PER_FEATURE` per feature: the
   squared-hinge SVM is a hard-margin SVM on the kernel
   ``X X^T + I / (2 C)`` (Cortes & Vapnik 1995; Keerthi et al. 2001), and ``w`` is
   ``sum_i alpha_i t_i x_i``. SMO is fast while support vectors are few (819 x 2,048
   ResNet50 features: 0.03 s where liblinear took 4.2 s), and slow when most rows are
   support vectors. It gets the time of a few Newton steps (:func:`smo_budget`).
2. **The primal finite Newton method** (Keerthi & DeCoste 2005) for the problems SMO did not
   finish (starting from its point) or when the Gram matrix would be too large (starting from
   zero): for the current set of margin violators the Newton point is solved exactly (a
   Cholesky factor of the ``(d + 1)``-square Hessian, updated by the rows that join or leave
   the set), then an exact line search on the piecewise-quadratic objective. It converges in
   a finite number of steps, in practice 5-30; ``max_iter`` bounds them.

Per fit on 4,800 x 1,280 features, 10 classes, one thread (a shared 2-core machine): 4-6 s
on the synthetic caches of ``bottleneck bench --parts compare6k`` (full-rank; collinear and
constant columns) where liblinear's primal solver took over 300 s and 138 s, and 5.6 s on
random-weight MobileNetV2 features of Fashion-MNIST (liblinear: 11 s).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from bottleneck_transfer.heads.budget import block_rows
from scipy.linalg import cho_factor, cho_solve
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.svm import SVC
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

#: The box constraint of the hard-margin dual: large enough never to bind, since the
#: ``I / (2 C)`` added to the kernel makes it strictly positive definite (always separable).
_HARD_MARGIN_C = 1e10
#: The Gram matrix costs ``n^2 d`` and SMO slows as rows outnumber features (most become
#: support vectors); a Newton step costs ``n d^2``. So the dual is used up to this many rows
#: per feature (4,800 x 1,280 features: SMO then Newton, 4-6 s). Measured on the demo's
#: 128-d Fashion-MNIST features (one thread), SMO then Newton / Newton alone: 0.31 / 0.23 s
#: at 250 rows, 0.90 / 0.54 s at 1,000, 7.96 / 1.12 s at 4,000, 44.8 / 2.1 s at 9,600 (the
#: calibration folds of 12,000 rows).
GRAM_ROWS_PER_FEATURE = 4
#: SMO iterations cost about ``n`` operations each, a Newton step about ``d^3 / 3`` (its
#: Cholesky factor); this ratio of the two rates (measured, one thread) gives SMO the time
#: of about three Newton steps.
_SMO_PER_NEWTON = 1 / 64


def smo_budget(n_samples: int, n_features: int) -> int:
    """SMO iterations allowed per one-vs-rest problem before the Newton method takes over.

    About the time of three Newton steps: generous for wide features (a Newton step on
    2,048 features costs as much as 167,000 SMO iterations on 819 rows), tight for tall
    ones, where most rows may be support vectors and SMO crawls.
    """
    d = n_features + 1
    return max(n_samples, round(_SMO_PER_NEWTON * d**3 / n_samples))


class LinearSVM(LinearClassifierMixin, ClassifierMixin, BaseEstimator):
    """Squared-hinge linear SVM (one-vs-rest) with a bounded, exact solver for any shape.

    Minimises ``0.5 * ||w||^2 + C * sum_i max(0, 1 - y_i (w . x_i + b))^2`` per class, the
    intercept not regularised. SMO on the Gram matrix first (at most ``max_gram_samples``
    rows), then the primal finite Newton method for the problems it did not finish; see the
    module's description. A problem still unsolved after ``max_iter`` Newton steps keeps its
    last iterate: ``converged_`` is False and a :class:`~sklearn.exceptions.ConvergenceWarning`
    says so.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength.
    tol : float, default=1e-4
        Newton stops when the gradient norm falls below ``tol`` times that at zero, scaled
        by the smaller class's share of the rows (liblinear's primal criterion). SMO uses
        libsvm's KKT tolerance ``10 * tol``.
    max_iter : int, default=30
        Most Newton steps per one-vs-rest problem.
    max_gram_samples : int, default=10000
        Most training rows for the Gram matrix (``8 * n^2`` bytes: 800 MB at 10,000 rows, the
        limit of the exact ``rbf-svm`` too); above it, or above
        :data:`GRAM_ROWS_PER_FEATURE` rows per feature, Newton starts from zero, which takes
        more steps (43 instead of 6-7 on full-rank 4,800 x 1,280 features).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights; one row for two classes, as in :class:`~sklearn.svm.LinearSVC`.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts.
    solver_ : {"gram", "gram+newton", "newton"}
        Which solvers fitted the model: SMO alone, SMO then Newton for some problems, or
        Newton alone.
    n_iter_ : int
        Iterations of the problem that needed most: its Newton steps, or 1 for a problem SMO
        solved; at most ``max_iter``.
    converged_ : bool
        Whether every problem met the tolerance within ``max_iter``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> svm = LinearSVM().fit(X[:50], y[:50])
    >>> svm.solver_, svm.coef_.shape, svm.converged_
    ('gram', (10, 64), True)
    """

    _parameter_constraints: ClassVar[dict] = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_gram_samples": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        C: float = 1.0,
        tol: float = 1e-4,
        max_iter: int = 30,
        max_gram_samples: int = 10_000,
    ) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.max_gram_samples = max_gram_samples

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearSVM:
        """Fit one squared-hinge SVM per class (one in all for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature vectors.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : LinearSVM
            The fitted classifier.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])  # float32 stays
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"LinearSVM needs samples of at least 2 classes; got 1 class ({self.classes_[0]})"
            )
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        targets = np.where(y[:, None] == positives, 1.0, -1.0)
        n_samples, n_features = X.shape
        gram = n_samples <= min(self.max_gram_samples, GRAM_ROWS_PER_FEATURE * (n_features + 1))
        if gram:
            weights, finished = self._fit_gram(X, targets)
        else:
            weights = np.zeros((n_features + 1, len(positives)))
            finished = np.zeros(len(positives), dtype=bool)
        newton = _Newton(X, C=self.C, tol=self.tol, max_iter=self.max_iter)
        steps, converged = [1], True
        for k in np.flatnonzero(~finished):
            weights[:, k], n_steps, done = newton.solve(targets[:, k], weights[:, k])
            steps.append(n_steps)
            converged &= done
        self.coef_ = np.ascontiguousarray(weights[:-1].T)
        self.intercept_ = weights[-1].copy()
        self.n_iter_ = max(steps)
        self.converged_ = bool(converged)
        self.solver_ = ("gram" if finished.all() else "gram+newton") if gram else "newton"
        if not converged:
            warnings.warn(
                f"linear-svm did not converge within max_iter={self.max_iter} Newton steps "
                f"(C={self.C:g}, {n_samples} x {n_features}): the fit is its last iterate; "
                "a smaller C converges faster",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _fit_gram(self, X: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SMO on the Gram matrix per problem: weights (with the intercept last), finished.

        An unfinished SMO still leaves Newton a good start (see ``max_gram_samples``).
        """
        X = np.asarray(X, dtype=np.float64)  # at most max_gram_samples rows
        gram = X @ X.T
        gram[np.diag_indices_from(gram)] += 1.0 / (2.0 * self.C)
        budget = smo_budget(*X.shape)
        weights = np.zeros((X.shape[1] + 1, targets.shape[1]))
        finished = np.zeros(targets.shape[1], dtype=bool)
        for k in range(targets.shape[1]):
            svc = SVC(kernel="precomputed", C=_HARD_MARGIN_C, tol=10 * self.tol, max_iter=budget)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # Newton takes over
                svc.fit(gram, targets[:, k])
            weights[:-1, k] = svc.dual_coef_[0] @ X[svc.support_]
            weights[-1, k] = svc.intercept_[0]
            finished[k] = svc.fit_status_ == 0
        return weights, finished


class _Newton:
    """The primal finite Newton method for one-vs-rest problems on the same rows.

    The rows are ``[X, 1]``: a constant column for the intercept, whose weight is not
    regularised, kept implicit. ``X`` is used as given (float32 features are not copied):
    every product runs in float64 a block of rows at a time (:func:`~heads.budget.block_rows`).
    The Hessian of the full row set, ``R + 2C X^T X``, is built once when a problem needs it
    (most rows violating the margin); otherwise Hessians are built from the violators and
    updated by the rows that change.
    """

    def __init__(self, X: np.ndarray, *, C: float, tol: float, max_iter: int) -> None:
        self.X = X
        self.block = block_rows(X.shape[1])
        self.two_c = 2.0 * C
        self.tol = tol
        self.max_iter = max_iter
        self.ridge = np.ones(X.shape[1] + 1)
        self.ridge[-1] = 0.0
        self._full: np.ndarray | None = None

    def _blocks(self, rows: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, float64 block)`` of ``X``'s rows, only those marked in ``rows`` if given."""
        for start in range(0, len(self.X), self.block):
            block = self.X[start : start + self.block]
            if rows is not None:
                marked = rows[start : start + self.block]
                if not marked.any():
                    continue
                block = block[marked]
            yield start, np.asarray(block, dtype=np.float64)

    def _times(self, w: np.ndarray) -> np.ndarray:
        """``[X, 1] @ w``."""
        out = np.empty(len(self.X))
        for start, block in self._blocks():
            out[start : start + len(block)] = block @ w[:-1]
        return out + w[-1]

    def _transposed_times(self, V: np.ndarray) -> np.ndarray:
        """``[X, 1]^T @ V`` for ``V`` of shape (n_samples, k)."""
        out = np.zeros((self.X.shape[1] + 1, V.shape[1]))
        for start, block in self._blocks():
            out[:-1] += block.T @ V[start : start + len(block)]
        out[-1] = V.sum(axis=0)
        return out

    def _gram(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``[X_A, 1]^T [X_A, 1]`` for the rows ``A`` marked in ``rows`` (default: all)."""
        d = self.X.shape[1]
        out = np.zeros((d + 1, d + 1))
        for _, block in self._blocks(rows):
            out[:-1, :-1] += block.T @ block
            out[:-1, -1] += block.sum(axis=0)
        out[-1, :-1] = out[:-1, -1]
        out[-1, -1] = len(self.X) if rows is None else np.count_nonzero(rows)
        return out

    def _hessian(self, rows: np.ndarray) -> np.ndarray:
        """``R + 2C X_A^T X_A`` for the rows ``A`` marked in ``rows``, the cheaper way."""
        if 2 * np.count_nonzero(rows) <= len(rows):
            hessian = self.two_c * self._gram(rows)
            hessian[np.diag_indices_from(hessian)] += self.ridge
            return hessian
        if self._full is None:
            self._full = self._hessian_of_all()
        return self._full - self.two_c * self._gram(~rows)

    def _hessian_of_all(self) -> np.ndarray:
        hessian = self.two_c * self._gram()
        hessian[np.diag_indices_from(hessian)] += self.ridge
        return hessian

    def solve(self, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """Minimise from ``w`` for targets ``t`` in {-1, 1}: weights, Newton steps, converged."""
        two_c = self.two_c
        n = len(t)
        positives = np.count_nonzero(t > 0)
        # liblinear's primal stopping rule, relative to the gradient at zero
        at_zero = two_c * self._transposed_times(t[:, None])[:, 0]
        threshold = self.tol * max(min(positives, n - positives), 1) / n * np.linalg.norm(at_zero)
        z = self._times(w)
        violators = None
        hessian = None
        for step in range(self.max_iter + 1):
            margin = 1.0 - t * z
            now = margin > 0
            # one pass over X for the gradient and the Newton system's right-hand side
            signed = np.where(now[:, None], np.c_[t * margin, t], 0.0)
            loss, rhs = self._transposed_times(signed).T
            gradient = self.ridge * w - two_c * loss
            if np.linalg.norm(gradient) <= threshold:
                return w, step, True
            if step == self.max_iter:
                break
            if not now.any():
                target = np.zeros_like(w)
                target[-1] = w[-1]
            else:
                hessian = self._update(hessian, violators, now)
                factor = cho_factor(hessian, check_finite=False)
                target = cho_solve(factor, two_c * rhs, check_finite=False)
            violators = now
            direction = target - w
            change = t * self._times(direction)
            alpha = _line_search(
                self.ridge * w, direction, self.ridge * direction, margin, change, two_c
            )
            w = w + alpha * direction
            z = z + alpha * t * change
        return w, self.max_iter, False

    def _update(
        self, hessian: np.ndarray | None, before: np.ndarray | None, now: np.ndarray
    ) -> np.ndarray:
        """The Hessian for the violators ``now``: updated from ``before`` when fewer rows move."""
        if hessian is None or before is None:
            return self._hessian(now)
        joined, left = now & ~before, before & ~now
        moved = np.count_nonzero(joined) + np.count_nonzero(left)
        if moved >= min(np.count_nonzero(now), np.count_nonzero(~now)):
            return self._hessian(now)
        return hessian + self.two_c * (self._gram(joined) - self._gram(left))


def _line_search(
    rw: np.ndarray,
    direction: np.ndarray,
    r_direction: np.ndarray,
    margin: np.ndarray,
    change: np.ndarray,
    two_c: float,
) -> float:
    """Exact minimiser ``a >= 0`` of the objective along ``direction``.

    Along the line the objective is ``0.5 ||w + a s||_R^2 + C sum max(0, m_i - a u_i)^2``
    (``m``: margins, ``u``: the change of ``t_i x_i . s``), piecewise quadratic and convex;
    its slope is piecewise linear. Walk the breakpoints in order, updating the slope's
    offset and rate, until it turns non-negative.
    """
    active = (margin > 0) | ((margin == 0) & (change < 0))
    offset = rw @ direction - two_c * np.sum(change[active] * margin[active])
    rate = r_direction @ direction + two_c * np.sum(change[active] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        breaks = margin / change
    leaving = active & (change > 0)
    joining = ~active & (change < 0)
    crossing = np.flatnonzero((leaving | joining) & (breaks > 0))
    order = crossing[np.argsort(breaks[crossing])]
    sign = np.where(leaving[order], 1.0, -1.0)
    offsets = offset + np.concatenate(
        [[0.0], np.cumsum(sign * two_c * change[order] * margin[order])]
    )
    rates = rate + np.concatenate([[0.0], np.cumsum(-sign * two_c * change[order] ** 2)])
    ends = np.append(breaks[order], np.inf)
    slope_at_end = np.where(
        np.isinf(ends), np.inf, offsets + rates * np.where(np.isinf(ends), 0.0, ends)
    )
    piece = int(np.argmax(slope_at_end >= 0))
    if rates[piece] <= 0:
        return float(ends[piece - 1]) if piece else 0.0
    return max(0.0, float(-offsets[piece] / rates[piece]))
