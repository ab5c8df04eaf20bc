"""Timing helpers the benchmarks share: marginal rates over two sizes (fixed costs cancel),
medians that skip failed repeats, and orders in which measured things take turns."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["marginal", "median", "rotations"]


def marginal(seconds: dict[int, float]) -> float:
    """Images/s between the smallest and largest run: ``dn / dt`` (fixed costs cancel); NaN
    where the larger run was not the longer (a burst of load in the small one)."""
    (small, t_small), (large, t_large) = min(seconds.items()), max(seconds.items())
    return (large - small) / (t_large - t_small) if t_large > t_small else math.nan


def median(values: Sequence[float]) -> float:
    """The median of the values that are numbers (NaN: none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def rotations(names: Sequence[str], repeats: int) -> list[list[str]]:
    """``repeats`` orders of ``names``, each starting one further (they take turns first)."""
    k = len(names)
    return [[names[(r + i) % k] for i in range(k)] for r in range(repeats)]
