"""Transferability estimates that need no training: LogME and the shrunk H-score.

**LogME** (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021): for each class k, the one-vs-rest target ``t = [y == k]`` is modelled
as ``t = F m + noise`` with the prior ``m ~ N(0, I/alpha)`` and noise ``N(0, 1/beta)``; the
evidence ``p(t | F, alpha, beta)`` is maximised by the fixed point (their Algorithm 1)::

    gamma = sum_i beta s_i^2 / (alpha + beta s_i^2)
    m     = beta A^-1 F^T t,   A = alpha I + beta F^T F
    alpha = gamma / m^T m,     beta = (n - gamma) / ||F m - t||^2

and LogME is the maximised log evidence per image, averaged over the classes::

    L/n = ( n/2 log beta + D/2 log alpha - n/2 log 2 pi - beta/2 ||F m - t||^2
            - alpha/2 m^T m - 1/2 log |A| ) / n

One eigendecomposition of the smaller Gram matrix (F F^T or F^T F) serves every class and
iteration (``s_i^2`` its eigenvalues). When D >= n the target lies in F's column space and
the evidence grows as beta goes to infinity; as in the authors' code, :data:`GUARD` is added
to ``m^T m`` and ``||F m - t||^2`` in the updates, which bounds alpha and beta. Higher is
better; it compares bases on one sample, not samples with each other.

**H-score** (Bao et al., "An Information-Theoretic Approach to Transferability in Task
Transfer Learning", ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``, how much of the features'
variance the class means explain. Its covariance inverse is unstable when D approaches n (a
50-per-class sample of 1,280-D features), so the covariance is Ledoit–Wolf shrunk (Ibrahim et
al., "Newer is not always better: rethinking transferability metrics", 2022).

NCE and LEEP (Tran et al. 2019; Nguyen et al. 2020) need the base's source-task label
probabilities; the bases here are cut before any classifier, so they are not offered.
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_limits

#: The fixed point stops when alpha/beta changes by less than this (relative), or after
#: :data:`MAX_ITER` steps.
TOLERANCE = 1e-8
MAX_ITER = 1000
#: Added to m^T m and ||F m - t||^2 in the alpha and beta updates (the authors' 1e-5).
GUARD = 1e-5


def one_blas_thread() -> threadpool_limits:
    """One BLAS thread for the sample's small matrices (a few hundred rows): more threads
    only contend, and on a busy machine made the probe's fits ten times slower."""
    return threadpool_limits(1, user_api="blas")


def _class_evidence(
    s2: np.ndarray, z: np.ndarray, outside: float, n: int, d: int
) -> tuple[float, float, float]:
    """Maximised log evidence per image of one target: ``(L/n, alpha, beta)``.

    ``s2``: squared singular values of F; ``z``: U^T t; ``outside``: ||t||^2 - ||z||^2, the
    part of the target outside F's column space.
    """
    z2 = z**2
    alpha, beta = 1.0, 1.0

    def moments(alpha: float, beta: float) -> tuple[float, float, float]:
        shrink = alpha + beta * s2
        gamma = float((beta * s2 / shrink).sum())
        mm = float((beta**2 * s2 * z2 / shrink**2).sum())
        residual = float((alpha**2 * z2 / shrink**2).sum()) + outside
        return gamma, mm, residual

    for _ in range(MAX_ITER):
        gamma, mm, residual = moments(alpha, beta)
        new_alpha = gamma / (mm + GUARD)
        new_beta = (n - gamma) / (residual + GUARD)
        done = abs(new_alpha / new_beta - alpha / beta) <= TOLERANCE * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    _, mm, residual = moments(alpha, beta)
    log_det = float(np.log(alpha + beta * s2).sum()) + (d - len(s2)) * math.log(alpha)
    evidence = (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * mm
        - log_det / 2
    )
    return evidence / n, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` (n, D) for the class ``labels`` (n,): higher transfers better.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> good = y[:, None] + 0.1 * rng.normal(size=(100, 4))
    >>> logme(good, y) > logme(rng.normal(size=(100, 4)), y)
    True
    """
    F = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if F.ndim != 2 or len(F) != len(y):
        raise ValueError(
            f"logme needs features (n, D) and n labels. Received: features={F.shape}, "
            f"labels={y.shape}"
        )
    n, d = F.shape
    with one_blas_thread():
        s2, project = _spectrum(F)
    scores = []
    for label in np.unique(y):
        t = (y == label).astype(np.float64)
        z = project(t)
        outside = max(float(t @ t - z @ z), 0.0)
        scores.append(_class_evidence(s2, z, outside, n, d)[0])
    return float(np.mean(scores))


def _spectrum(F: np.ndarray):
    """The nonzero squared singular values of F, and ``t -> U^T t`` (U: their left singular
    vectors), from the smaller Gram matrix."""
    n, d = F.shape
    if n <= d:
        s2, u = np.linalg.eigh(F @ F.T)
        keep = s2 > s2.max() * 1e-12
        u = u[:, keep]
        return s2[keep], lambda t: u.T @ t
    s2, v = np.linalg.eigh(F.T @ F)
    keep = s2 > s2.max() * 1e-12
    s2, v = s2[keep], v[:, keep]
    scale = 1 / np.sqrt(s2)
    return s2, lambda t: scale * (v.T @ (F.T @ t))


def _shrinkage(row_squares: np.ndarray, gram_squares: float, d: int) -> float:
    """Ledoit–Wolf's shrinkage of centred features F (n, D), as scikit-learn's
    ``ledoit_wolf_shrinkage`` computes it, from ``|x_i|^2`` per row and ``|F^T F|_F^2``
    (equal to ``|F F^T|_F^2``: either Gram matrix serves)."""
    n = len(row_squares)
    trace = float(row_squares.sum()) / n  # of the empirical covariance
    mu = trace / d
    delta_ = gram_squares / n**2
    beta = (float(np.sum(row_squares**2)) / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    return 0.0 if delta <= 0 else min(beta, delta) / delta


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """The H-score with a Ledoit–Wolf shrunk feature covariance: higher transfers better.

    ``tr(cov(f)^-1 cov(E[f | y])) = sum_k (n_k / n) mu_k^T cov(f)^-1 mu_k`` over the centred
    class means ``mu_k``. The shrunk covariance is ``a I + b F^T F`` (``a``: the shrinkage
    times the mean variance; ``b = (1 - shrinkage) / n``), solved for the K means by Cholesky
    in D dimensions, or through the n x n Gram matrix (Woodbury) when n < D: a
    50-per-class sample of 2,000-D features costs a 500 x 500 solve, not a 2,000 x 2,000 one.
    """
    F = np.asarray(features, dtype=np.float64)
    F = F - F.mean(axis=0)
    d = F.shape[1]
    _, index = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(index)
    means = np.zeros((len(counts), d))
    np.add.at(means, index, F)
    means /= counts[:, None]
    with one_blas_thread():
        return _hscore(F, means, counts)


def _hscore(F: np.ndarray, means: np.ndarray, counts: np.ndarray) -> float:
    """The H-score of centred features ``F`` with centred class ``means`` of ``counts`` rows."""
    from scipy.linalg import cho_factor, cho_solve

    n, d = F.shape
    small = n < d
    gram = F @ F.T if small else F.T @ F
    row_squares = np.einsum("ij,ij->i", F, F)
    shrinkage = _shrinkage(row_squares, float(np.einsum("ij,ij->", gram, gram)), d)
    a = shrinkage * float(row_squares.sum()) / (n * d)
    b = (1.0 - shrinkage) / n
    if small and a > 0:  # (aI + b F^T F)^-1 = (I - b F^T (aI + b F F^T)^-1 F) / a
        inner = cho_factor(a * np.eye(n) + b * gram)
        solved = (means.T - b * F.T @ cho_solve(inner, F @ means.T)) / a
    else:
        solved = cho_solve(cho_factor(a * np.eye(d) + b * (F.T @ F if small else gram)), means.T)
    return float(np.sum(counts / n * np.einsum("kd,dk->k", means, solved)))
