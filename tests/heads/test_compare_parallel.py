"""Fits over worker processes give the very comparison the one-after-another fits give."""

from __future__ import annotations

import bottleneck_transfer.heads.parallel as parallel_module
import numpy as np
import pytest
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import blobs, write_cache

HEADS = ["logreg", "linear-svm", "knn"]


def _data(seed: int, n: int = 240) -> LabeledData:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 16)).astype(np.float32) + y[:, None] * 0.4
    return LabeledData.from_arrays(X, y, ids=[f"{seed}:{i}" for i in range(n)])


def _same(a, b) -> None:
    assert [r.name for r in a.rows] == [r.name for r in b.rows]
    for ra, rb in zip(a.rows, b.rows, strict=True):
        np.testing.assert_array_equal(ra.predictions, rb.predictions)
        assert ra.metrics == rb.metrics
        assert ra.fold_metrics == rb.fold_metrics
    assert a.verdict.split("(")[0] == b.verdict.split("(")[0]


@pytest.mark.slow  # worker processes start, for 4 comparisons
def test_parallel_folds_equal_serial_folds(monkeypatch):
    train = _data(0)
    calls = []
    real = parallel_module.Parallel

    def counting_parallel(*args, **kwargs):
        calls.append(kwargs["n_jobs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel_module, "Parallel", counting_parallel)
    serial = compare_heads(train, heads=HEADS, cv=3, n_jobs=1, progress=False)
    assert calls == []  # one core: no worker processes
    monkeypatch.setattr(parallel_module, "PARALLEL_MIN_VALUES", 0)
    parallel = compare_heads(train, heads=HEADS, cv=3, n_jobs=2, progress=False)
    assert calls == [2, 2]  # the folds of every head, then each fold's choice
    _same(serial, parallel)
    assert [c.chosen for c in serial.choices] == [c.chosen for c in parallel.choices]
    assert [c.scores for c in serial.choices] == [c.scores for c in parallel.choices]
    baselines = {"noise": (np.random.default_rng(1).normal(size=train.X.shape), None)}
    tuned = [
        compare_heads(train, heads=HEADS[:2], cv=2, tune=True, n_jobs=n, baselines=baselines)
        for n in (1, 2)
    ]
    _same(*tuned)
    # n_jobs=2: the heads and their choices, then the winner on the baseline and its choices
    assert calls == [2] * 6
    assert [c.scores for c in tuned[0].baseline_choices] == [
        c.scores for c in tuned[1].baseline_choices
    ]


def test_the_default_heads_on_a_cache_score_the_same_in_workers(monkeypatch, tmp_path):
    """logreg, linear-svm, rbf-svm and dense, five folds of a cache: the worker processes
    give the sequential run's scores exactly."""
    X, y = blobs(n=300, dim=24, centers=4, std=4.0)
    cache = write_cache(tmp_path / "train.h5", X, y)
    heads = ["logreg", "linear-svm", "rbf-svm", "dense:epochs=5"]
    serial = compare_heads(cache, heads=heads, n_jobs=1, n_bootstrap=100, progress=False)
    monkeypatch.setattr(parallel_module, "PARALLEL_MIN_VALUES", 0)
    parallel = compare_heads(cache, heads=heads, n_jobs=2, n_bootstrap=100, progress=False)
    assert serial.n_folds == 5 and len(serial.rows) == 4
    _same(serial, parallel)
    for a, b in zip(serial.rows, parallel.rows, strict=True):
        assert a.intervals == b.intervals and a.calibration == b.calibration


def test_small_data_stays_in_process(monkeypatch):
    monkeypatch.setattr(parallel_module, "Parallel", None)  # would fail if used
    comparison = compare_heads(_data(0), heads=HEADS, cv=3, n_jobs=2, progress=False)
    assert len(comparison.rows) == 3


_QUIET_WORKERS = """
import numpy as np
import bottleneck_transfer.heads.compare as compare
import bottleneck_transfer.heads.parallel as parallel
from bottleneck_transfer.quiet import muted_backend_start
from bottleneck_transfer.heads.training import LabeledData

muted_backend_start()  # as the CLI does in its own process
parallel.PARALLEL_MIN_VALUES = 0
X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
data = LabeledData.from_arrays(X, np.arange(60) % 2)
compare.compare_heads(data, heads=["dense:epochs=2"], cv=2, n_jobs=2, progress=False)
"""


@pytest.mark.slow  # a fresh interpreter whose workers start Keras
def test_worker_processes_start_the_backend_without_its_chatter():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _QUIET_WORKERS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    chatter = [line for line in done.stderr.splitlines() if "I0000" in line or "E0000" in line]
    assert chatter == []
