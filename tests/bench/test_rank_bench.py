"""The rank benchmark's agreement statistic: Kendall's tau, its interval over sample draws and
full-probe resamples."""

from __future__ import annotations

import numpy as np
from bottleneck_transfer.bench.rank import kendall_over_draws


def _correct(rate: float, n: int) -> np.ndarray:
    return np.arange(n) % 100 < round(100 * rate)


def test_tau_is_one_when_the_orders_agree_and_minus_one_when_reversed():
    rates = [0.95, 0.8, 0.6, 0.3]
    full = [_correct(r, 1800) for r in rates]
    scores = np.tile(rates, (11, 1))  # every draw orders them the same way
    agree = kendall_over_draws(scores, full)
    assert agree["tau"] == 1.0
    assert agree["interval_95"] == [1.0, 1.0]  # gaps far larger than the resampling noise
    assert agree["draws"] == 10
    assert kendall_over_draws(-scores, full)["tau"] == -1.0


def test_interval_spans_the_draws_that_disagree():
    full = [_correct(r, 1800) for r in (0.9, 0.7, 0.5)]
    scores = np.array([[3.0, 2.0, 1.0]] * 6 + [[1.0, 2.0, 3.0]] * 5)  # 5 draws of 10 reversed
    got = kendall_over_draws(scores, full)
    assert got["tau"] == 1.0
    assert got["interval_95"][0] == -1.0 and got["interval_95"][1] == 1.0
    assert got["mean_over_draws"] == 0.0
