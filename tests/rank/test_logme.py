"""LogME against a straightforward implementation of the paper's formulas, and H-score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bottleneck_transfer.rank.logme import hscore, logme


def reference_logme(F: np.ndarray, y: np.ndarray, iterations: int = 300) -> float:
    """You et al. 2021, Algorithm 1, written from the paper with D x D matrices: for each
    class, iterate A = alpha I + beta F^T F, m = beta A^-1 F^T t, gamma = sum of
    beta s_i^2 / (alpha + beta s_i^2) over the eigenvalues s_i^2 of F^T F, alpha = gamma /
    (m^T m + eps), beta = (n - gamma) / (||F m - t||^2 + eps) (eps = 1e-5, the authors'
    guard); then the log evidence per image."""
    F = F.astype(np.float64)
    n, d = F.shape
    eig = np.clip(np.linalg.eigvalsh(F.T @ F), 0, None)
    out = []
    for k in np.unique(y):
        t = (y == k).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            A = alpha * np.eye(d) + beta * F.T @ F
            m = beta * np.linalg.solve(A, F.T @ t)
            gamma = float(np.sum(beta * eig / (alpha + beta * eig)))
            alpha = gamma / (float(m @ m) + 1e-5)
            beta = (n - gamma) / (float(np.sum((F @ m - t) ** 2)) + 1e-5)
        A = alpha * np.eye(d) + beta * F.T @ F
        m = beta * np.linalg.solve(A, F.T @ t)
        evidence = (
            n / 2 * math.log(beta)
            + d / 2 * math.log(alpha)
            - n / 2 * math.log(2 * math.pi)
            - beta / 2 * float(np.sum((F @ m - t) ** 2))
            - alpha / 2 * float(m @ m)
            - 0.5 * np.linalg.slogdet(A)[1]
        )
        out.append(evidence / n)
    return float(np.mean(out))


@pytest.fixture
def fixture_data():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, 6))
    return centres[y] + 0.8 * rng.normal(size=(60, 6)), y


def test_logme_matches_the_reference_implementation(fixture_data):
    F, y = fixture_data
    ours, ref = logme(F, y), reference_logme(F, y)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_logme_matches_the_reference_with_more_dimensions_than_images():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 6)
    F = rng.normal(size=(12, 20)) + y[:, None]
    ours, ref = logme(F, y), reference_logme(F, y)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_estimates_prefer_features_that_separate_the_classes(fixture_data):
    F, y = fixture_data
    noise = np.random.default_rng(5).normal(size=F.shape)
    assert logme(F, y) > logme(noise, y)
    assert hscore(F, y) > hscore(noise, y)


def test_hscore_of_a_single_informative_direction():
    # one feature equal to the label (unit variance of the means), one pure-noise feature
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 500)
    F = np.column_stack([2.0 * y - 1, rng.normal(size=1000)])
    assert hscore(F, y) == pytest.approx(1.0, rel=0.05)


def test_logme_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="Received: features="):
        logme(np.zeros((5, 2)), np.zeros(4))


@pytest.mark.parametrize(("n", "d"), [(120, 10), (40, 150)])
def test_hscore_matches_the_ledoit_wolf_covariance_solved_directly(n, d):
    from scipy.linalg import cho_factor, cho_solve
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(n)
    y = rng.integers(0, 4, n)
    F = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, d) + np.eye(4)[y] @ rng.normal(size=(4, d))
    centred = F - F.mean(axis=0)
    means = np.stack([centred[y == k].mean(axis=0) for k in range(4)])
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    solved = cho_solve(cho_factor(covariance), means.T)
    direct = sum(np.mean(y == k) * means[k] @ solved[:, k] for k in range(4))
    assert hscore(F, y) == pytest.approx(direct, rel=1e-9)
