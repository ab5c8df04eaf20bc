"""The runtime, cluster and GPU benchmarks' measuring parts: marginal rates cancel fixed costs,
runs take turns, medians resist a slow outlier, shards split evenly; no wall-clock assert."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from bottleneck_transfer.bench import cluster, gpu, runtimes
from bottleneck_transfer.features.engines.shards import plan_shards


def test_a_marginal_rate_cancels_the_fixed_cost():
    fixed, per_image = 7.0, 0.1  # seconds
    seconds = {n: fixed + per_image * n for n in (192, 64)}
    assert runtimes.marginal(seconds) == pytest.approx(10.0)


def test_a_marginal_rate_of_a_small_run_slower_than_the_large_is_no_number():
    assert math.isnan(runtimes.marginal({64: 9.0, 192: 8.0}))
    assert runtimes.median([math.nan, 3.0, 5.0]) == 4.0
    assert math.isnan(runtimes.median([math.nan]))


def test_rotations_put_each_name_first_once():
    orders = runtimes.rotations(["keras", "onnx", "auto"], 3)
    assert [order[0] for order in orders] == ["keras", "onnx", "auto"]
    assert all(sorted(order) == ["auto", "keras", "onnx"] for order in orders)


class _Sleeper:
    """A runner taking ``seconds`` a call, logging its calls."""

    def __init__(self, name: str, seconds: float, log: list[str]) -> None:
        self.name, self.seconds, self.log = name, seconds, log

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        time.sleep(self.seconds)
        return pixels


def test_model_rates_take_turns_and_rank_the_runners():
    log: list[str] = []
    runners = {"slow": _Sleeper("slow", 0.08, log), "fast": _Sleeper("fast", 0.005, log)}
    rates, cpu_ms = runtimes.model_rates(runners, np.zeros((8, 2, 2, 3), np.uint8), 4)
    timed = log[2:]  # after one warm call each
    assert timed == ["slow", "fast", "fast", "slow", "slow", "fast", "fast", "slow"]
    assert rates["fast"] > rates["slow"]
    assert set(cpu_ms) == {"slow", "fast"}


def test_marginal_rates_take_the_median_over_repeats():
    calls: list[tuple[str, int]] = []
    slow_once = iter([0.5, 0.0, 0.0])  # one repeat hit by a burst of load

    def run(name: str):
        def go(n: int) -> float:
            calls.append((name, n))
            time.sleep(0.001 * n + (next(slow_once) if name == "a" and n == 64 else 0))
            return 0.002 * n  # the steady part's own seconds

        return go

    figures = runtimes.marginal_rates({"a": run("a"), "b": run("b")}, (16, 64), 3)
    assert figures["a"]["rate"] == pytest.approx(figures["b"]["rate"], rel=0.5)  # no outlier
    assert figures["a"]["inner"] == pytest.approx(500.0)
    assert figures["b"]["kept"] == 3
    assert [name for name, n in calls if n == 16] == ["a", "b", "b", "a", "a", "b"]


@pytest.mark.parametrize("n_images", [100, 6000, 18000, 30000])
def test_default_shards_are_two_even_ones_per_worker(n_images):
    size = cluster.default_shard_images(n_images, 2, 64)
    shards = plan_shards(n_images, size, 64)
    assert size % 64 == 0
    assert len(shards) <= 4 and shards[-1].stop == n_images
    if n_images >= 4 * 64:
        assert len(shards) == 4


def test_cluster_summary_gives_marginal_and_whole_ratios():
    rows = {
        "local": [{100: (3.0, 2.0), 300: (5.0, 4.0)}],  # 100/s marginal, 60/s whole
        "dask": [{100: (4.0, 2.2), 300: (6.5, 4.4)}],  # 80/s marginal, ~46/s whole
    }
    summary = cluster._summary(rows, (100, 300))
    assert summary["local"]["marginal"] == pytest.approx(100.0)
    assert summary["dask"]["marginal_vs_local"] == pytest.approx(0.8)
    assert summary["dask"]["whole_vs_local"] == pytest.approx((300 / 6.5) / 60, abs=1e-3)
    assert summary["dask"]["cpu_ms_per_image"] == pytest.approx(11.0)


def test_the_gpu_benchmark_needs_an_accelerator(monkeypatch, capsys, tmp_path):
    from bottleneck_transfer.features import runtimes as runtime_module

    monkeypatch.setattr(runtime_module, "accelerator_devices", lambda: [])
    out = tmp_path / "gpu.json"
    assert gpu.main(["--json", str(out)]) == 2
    assert "no accelerator" in capsys.readouterr().err
    assert not out.exists()
