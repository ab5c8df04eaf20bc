"""One way to compare features: relative to their scale, ``max|a - b| / max|b|``.

An absolute tolerance cannot compare features: a random-weight base gives features of about
1e-11, so ``atol=1e-5`` passes for any two such arrays. Every test that compares features
uses these two checks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def relative_difference(actual: ArrayLike, desired: ArrayLike) -> float:
    """``max|actual - desired| / max|desired|`` (0 for equal arrays, inf against zeros)."""
    a = np.asarray(actual, np.float64)
    b = np.asarray(desired, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} != {b.shape}"
    difference = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    if difference == 0.0:
        return 0.0
    return difference / scale if scale > 0 else float("inf")


def assert_features_close(actual: ArrayLike, desired: ArrayLike, rtol: float = 1e-5) -> None:
    """Assert ``relative_difference(actual, desired) <= rtol`` (and equal shapes)."""
    got = relative_difference(actual, desired)
    assert got <= rtol, f"features differ: max|a-b|/max|b| = {got:.3g} > {rtol:g}"


def assert_features_differ(actual: ArrayLike, desired: ArrayLike, rtol: float = 1e-3) -> None:
    """Assert ``relative_difference(actual, desired) > rtol``: other features, not noise."""
    got = relative_difference(actual, desired)
    assert got > rtol, f"features are the same: max|a-b|/max|b| = {got:.3g} <= {rtol:g}"
