"""Issue 26: a memory budget chooses streaming heads; splits stay indices; seeded chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.bench.scale import synthetic_cache
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.heads.budget import MemoryPlan, parse_budget
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.rows import SPAN_FACTOR, RowSubset, chunk_batches
from bottleneck_transfer.heads.streaming import shuffled_steps
from bottleneck_transfer.heads.training import LabeledData, evaluate_head, fit_head, train_head

HEADS = ["logreg", "linear-svm:calibrate=false", "dense", "knn", "nystroem"]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Train and test caches of the same 5 Gaussian classes (64 features, float16)."""
    folder = tmp_path_factory.mktemp("synthetic")
    options = {"dim": 64, "classes": 5, "seed": 3}
    train = synthetic_cache(folder / "train.h5", 4000, part=0, **options)
    test = synthetic_cache(folder / "test.h5", 3000, part=1, **options)
    return train, test


def test_budget_parsing_and_plan():
    assert parse_budget("512M") == 512 * 2**20
    assert parse_budget("1.5G") == int(1.5 * 2**30)
    assert 0 < parse_budget("10%") < parse_budget(None)
    with pytest.raises(HeadError, match="8G, 512M or 40%"):
        parse_budget("lots")
    plan = MemoryPlan.choose(1000, 100, "1M")
    assert plan.path == "in-memory" and plan.feature_bytes == 400_000
    assert MemoryPlan.choose(10_000, 100, "1M").streaming
    assert MemoryPlan.choose(10, 100, "1G", force=True).streaming


@pytest.mark.slow
def test_every_head_streams_under_a_tiny_budget_and_matches_in_memory(caches):
    """The comparison of each kind in memory and streamed (budget 1 kB) on the same test rows:
    within 0.5 accuracy points (3,000 test rows: 15 rows)."""
    train, test = caches
    options = {"heads": HEADS, "n_bootstrap": 100, "progress": False}
    in_memory = compare_heads(train, test, **options)
    streamed = compare_heads(train, test, memory_budget="1K", **options)
    assert in_memory.memory["path"] == "in-memory"
    assert streamed.memory["path"] == "streaming" and streamed.memory["chunk_rows"] == 256
    for spec in HEADS:
        a = in_memory.row(spec).metrics["accuracy"]
        b = streamed.row(spec).metrics["accuracy"]
        assert abs(a - b) <= 0.005, (spec, a, b)


def test_train_and_evaluate_stream_and_say_so(caches, monkeypatch):
    train, test = caches

    def forbidden(self):
        raise AssertionError("streaming must not read all features")

    monkeypatch.setattr(FeatureCache, "features", property(forbidden))
    with FeatureCache.open(train) as cache:
        trained = train_head(cache, "logreg", memory_budget="1K")
    assert trained.metadata["memory"]["path"] == "streaming"
    assert trained.metadata["out_of_core"] is True
    evaluation = evaluate_head(trained, test, memory_budget="1K")
    assert evaluation.memory["path"] == "streaming"
    assert evaluation.metrics["accuracy"] > 0.75  # the in-memory head: 0.80


def test_rbf_svm_is_refused_above_the_budget_naming_alternatives(caches):
    train, _ = caches
    with pytest.raises(HeadError, match=r"rbf-svm cannot stream.*nystroem.*--memory-budget"):
        compare_heads(train, heads=["rbf-svm"], cv=2, memory_budget="1K", progress=False)
    with FeatureCache.open(train) as cache, pytest.raises(HeadError, match="knn"):
        train_head(cache, "knn", memory_budget="1K")


class CountingFeatures:
    """A float32 features array that records the rows of every read."""

    def __init__(self, X: np.ndarray) -> None:
        self.X, self.shape, self.ndim, self.dtype = X, X.shape, 2, np.dtype(np.float32)
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, key):
        block = self.X[key]
        self.reads.append(len(block))
        return block


def test_splits_and_fits_never_materialise_the_rows(caches):
    """A split is a RowSubset of indices, and fits and predictions read chunks only."""
    train, _ = caches
    with FeatureCache.open(train) as cache:
        plan = MemoryPlan.choose(len(cache), cache.dim, "1K")
        data = LabeledData.from_cache(cache, plan)
    counting = CountingFeatures(np.random.default_rng(0).standard_normal((4000, 64), np.float32))
    data.X = counting
    held = data.take(np.arange(0, 4000, 5))
    assert isinstance(held.X, RowSubset) and counting.reads == []
    fit = fit_head("logreg", data, np.arange(1, 4000, 2))
    # a chunk of an index set is read as its span when dense in it (SPAN_FACTOR), never whole
    assert counting.reads and max(counting.reads) <= SPAN_FACTOR * data.chunk_rows < 4000
    assert fit.estimator.predict(counting.X[:3]).shape == (3,)


def test_chunk_order_is_seeded(caches):
    source = np.arange(1000, dtype=np.float32).reshape(500, 2)
    y = np.arange(500) % 3

    def steps(seed):
        return [
            x[:, 0].tolist() for x, _ in shuffled_steps(source, y, 64, np.random.default_rng(seed))
        ]

    assert steps(1) == steps(1) and steps(1) != steps(2)
    assert sorted(v for step in steps(1) for v in step) == source[:, 0].tolist()
    first, second = (chunk_batches(source, y, batch_size=32, chunk_rows=64, seed=5) for _ in "ab")
    assert all(np.array_equal(first[i][0], second[i][0]) for i in range(len(first)))


def test_cli_reports_the_path(caches, tmp_path):
    from bottleneck_transfer.cli.head_cmds import COMMANDS
    from click.testing import CliRunner

    train, _ = caches
    train_cmd = {c.name: c for c in COMMANDS}["train"]
    out = tmp_path / "h.skops"
    args = [str(train), "--head", "logreg", "-o", str(out), "--memory-budget", "1K"]
    result = CliRunner().invoke(train_cmd, [*args, "--json"])
    assert result.exit_code == 0, result.output
    memory = json.loads(result.stdout)["memory"]
    assert memory["path"] == "streaming" and memory["chunk_rows"] == 256
    assert memory["peak_bytes"] > 0
    result = CliRunner().invoke(train_cmd, [*args, "--force"])
    line = "Memory: streaming (2.6 x the features' 1.02 MB exceeds the memory budget 1.02 kB"
    assert f"{line}, chunks of 256 rows); peak memory" in result.output


def test_the_benchmark_writes_classes_through_the_library_writer(caches):
    train, _ = caches
    with FeatureCache.open(train) as cache:
        assert len(cache) == 4000 and cache.dim == 64
        assert cache._h5["features"].dtype == np.float16
        assert np.array_equal(np.bincount(cache.labels), [800] * 5)
        assert cache.features.dtype == np.float32


def test_compare_cli_says_which_path_ran_in_its_output_and_json(caches):
    from bottleneck_transfer.cli.head_cmds import COMMANDS
    from click.testing import CliRunner

    train, _ = caches
    compare_cmd = {c.name: c for c in COMMANDS}["compare"]
    args = [str(train), "--val-split", "0.2", "--heads", "logreg", "--bootstrap", "100"]
    result = CliRunner().invoke(compare_cmd, [*args, "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    memory = json.loads(result.stdout)["memory"]
    assert memory["path"] == "in-memory" and memory["chunk_rows"] is None
    assert memory["feature_bytes"] == 4000 * 64 * 4 and memory["peak_bytes"] > 0
    result = CliRunner().invoke(compare_cmd, [*args, "--memory-budget", "1K"])
    assert result.exit_code == 0, result.output
    assert "Memory: streaming (2.6 x the features' 1.02 MB exceeds the memory budget" in (
        result.output
    )


def test_worker_processes_are_limited_by_the_budget():
    """Each worker holds up to IN_MEMORY_FACTOR x the features beside the calling process."""
    plan = MemoryPlan.choose(1000, 1000, "100M")  # 4 MB features, 10.4 MB a process
    assert plan.jobs(2) == 2 and plan.jobs(None) is None
    assert MemoryPlan.choose(1000, 1000, "20M").jobs(4) == 1  # three processes do not fit
    assert MemoryPlan.choose(1000, 1000, "42M").jobs(4) == 3
    assert MemoryPlan.choose(1000, 1000, "1K").jobs(4) == 4  # streaming: one process anyway
