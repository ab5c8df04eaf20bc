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


def test_rank_cost_table_says_each_full_extraction_and_the_ratio():
    from bottleneck_transfer.bench.rank_cost import format_rank_cost

    def cost(wall: float, cpu: float) -> dict[str, float]:
        return {"wall_s": wall, "cpu_s": cpu}

    bases = [
        {
            "base": "MobileNetV2",
            "sample_rank": 2,
            "full_extract": cost(100.0, 150.0),
            "estimated_full_seconds": 120.4,
        },
        {
            "base": "EfficientNetB0",
            "sample_rank": 1,
            "full_extract": cost(300.0, 450.0),
            "estimated_full_seconds": 350.0,
        },
    ]
    report = {
        "collection_images": 5000,
        "image_size": 128,
        "sample": {"size": "50/class", "images": 250},
        "sample_caches": 5,
        "bases": bases,
        "rank": cost(80.0, 60.0),
        "full_extract": cost(400.0, 600.0),
        "ratio": {"wall_s": 0.2, "cpu_s": 0.1},
    }
    lines = format_rank_cost(report)
    assert lines[0].startswith("| base (128 px) | sample rank | full extraction of 5,000 images")
    assert "| EfficientNetB0 | 1 | 300 | 450 | 350 |" in lines
    assert "| MobileNetV2 | 2 | 100 | 150 | 120 |" in lines
    assert "| **all 2: full extraction** | | **400** | **600** | |" in lines
    assert "| **`rank-bases`, 50/class (250 images)** | | **80** | **60** | |" in lines
    assert lines[-1].startswith(
        "Ranking the 2 bases on the sample took 20% of the wall time (10% of the CPU time) of "
        "extracting all 5,000 images with each; it wrote 5 sample caches"
    )
