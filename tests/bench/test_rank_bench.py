"""The rank benchmark's agreement statistic: Kendall's tau with a bootstrap interval."""

from __future__ import annotations

import numpy as np
from bottleneck_transfer.bench.rank import kendall_interval


def _correct(rate: float, n: int) -> np.ndarray:
    return np.arange(n) % 100 < round(100 * rate)


def test_tau_is_one_when_the_orders_agree_and_minus_one_when_reversed():
    rates = [0.95, 0.8, 0.6, 0.3]
    sample = [_correct(r, 500) for r in rates]
    full = [_correct(r, 1800) for r in rates]
    agree = kendall_interval(sample, full, n_boot=200)
    assert agree["tau"] == 1.0
    assert agree["interval_95"] == [1.0, 1.0]  # gaps far larger than the resampling noise
    reverse = kendall_interval(sample, full[::-1], n_boot=200)
    assert reverse["tau"] == -1.0


def test_interval_widens_when_bases_are_close():
    rng = np.random.default_rng(0)
    rates = [0.80, 0.79, 0.78, 0.30]  # errors on different images: orders swap on resampling
    sample = [rng.random(100) < r for r in rates]
    full = [rng.random(400) < r for r in rates]
    got = kendall_interval(sample, full, n_boot=300, seed=1)
    low, high = got["interval_95"]
    assert low < got["tau"] <= high <= 1.0
    assert low < 0.5
