"""The Dask engine: shards on a cluster of real processes on 127.0.0.1 give a local run's cache."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.engines import shards as engines
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.fingerprint import fingerprint
from feature_checks import assert_features_close, assert_features_differ

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "data" / "bases" / "fashion_mnist_0-4.keras")
N_IMAGES = 640
BATCH = 32
SHARD = 64  # 10 shards
DASK = {"engine": "dask", "shard_images": BATCH}


@pytest.fixture(scope="module")
def source_spec(fashion_mnist_available) -> str:
    return "fashion-mnist:test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def _cluster():
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    workers = [
        _dask(
            "worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--name",
            f"w{i}",
        )
        for i in range(2)
    ]
    try:
        client = distributed.Client(address, timeout="60s")
        client.wait_for_workers(2, timeout=120)
        yield {"address": address, "client": client, "workers": workers}
        client.close()
    finally:
        for proc in [*workers, scheduler]:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster: two workers, whatever ran before (no test kills one of them)."""
    with _cluster() as running:
        yield running


@pytest.fixture(scope="module")
def local_cache(tmp_path_factory, source_spec) -> Path:
    out = tmp_path_factory.mktemp("local") / "local.h5"
    extract(source_spec, BASE, out, limit=N_IMAGES, batch_size=BATCH, progress=False)
    return out


def _assert_same_cache(path: Path, reference: Path) -> dict:
    with FeatureCache.open(path) as got, FeatureCache.open(reference) as want:
        assert got.ids == want.ids
        np.testing.assert_array_equal(got.labels, want.labels)
        assert_features_close(got.features, want.features)
        assert got.fingerprint == want.fingerprint
        assert got.failed == want.failed
        return got.provenance["extraction"]


def _run(cluster, source_spec, out: Path, shard_images: int = SHARD, **options):
    return extract(
        source_spec,
        BASE,
        out,
        limit=N_IMAGES,
        batch_size=BATCH,
        engine="dask",
        scheduler=cluster["address"],
        shard_images=shard_images,
        progress=False,
        **options,
    )


def test_plan_shards_cuts_whole_batches_in_order():
    shards = engines.plan_shards(1000, 300, 64)
    assert [(s.start, s.stop) for s in shards] == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert engines.plan_shards(10, 4096, 64) == [engines.Shard(0, 0, 10)]
    assert engines.plan_shards(0, 64, 64) == []


def test_cluster_cache_equals_a_local_run_and_builds_the_base_once_per_worker(
    cluster, source_spec, local_cache, tmp_path
):
    client = cluster["client"]
    before = client.run(engines.base_builds)
    out = tmp_path / "dask.h5"
    _run(cluster, source_spec, out)
    extraction = _assert_same_cache(out, local_cache)
    assert extraction["engine"] == "dask"
    assert extraction["shards"] == extraction["shards_run"] == N_IMAGES // SHARD
    assert extraction["workers"] == 2
    assert not engines.shard_folder(out).exists()  # shard files joined, then removed
    # A second job on the same workers reuses their bases: built once per worker in all.
    _run(cluster, source_spec, tmp_path / "again.h5")
    builds = client.run(engines.base_builds)
    assert all(count <= 1 for count in builds.values()), builds
    assert sum(builds.values()) - sum(before.values()) <= 2
    assert sum(builds.values()) >= 1


def test_a_job_uses_this_process_client_of_the_scheduler(
    cluster, source_spec, local_cache, tmp_path, monkeypatch
):
    from bottleneck_transfer.features.engines import dask as dask_engine

    def refuse(*args):
        raise AssertionError("a second client was connected")

    monkeypatch.setattr(dask_engine, "_connect", refuse)
    with cluster["client"].as_current():
        _run(cluster, source_spec, tmp_path / "reused.h5")
    _assert_same_cache(tmp_path / "reused.h5", local_cache)
    assert cluster["client"].status == "running"  # the caller's client stays open


def test_a_sharded_job_reads_each_file_s_size_and_time_twice(
    fashion_mnist_available, tmp_path, monkeypatch
):
    """Once for the client's plan and once where the shards run (the check that the worker
    sees the client's files), not again for the task or for each shard."""
    from bottleneck_transfer.bench.sources import write_sources
    from bottleneck_transfer.features.engines import dask as dask_engine
    from bottleneck_transfer.features.sources import items

    spec = write_sources(tmp_path, 4 * BATCH, ("folder",))["folder"]
    real, seen = items.file_stat, collections.Counter()

    def counting(fs, path):
        seen[Path(path).name] += 1
        return real(fs, path)

    def in_process(job):  # each shard as a worker runs it, in this process
        for shard in job.start():
            engines.extract_shard(job.task, shard, job.targets(shard))
        return {"engine": "dask"}

    monkeypatch.setattr(items, "file_stat", counting)
    monkeypatch.setattr(engines, "_SOURCES", {})
    monkeypatch.setattr(dask_engine, "_run_on_dask", in_process)
    options = {"engine": "dask", "shard_images": BATCH, "batch_size": BATCH, "progress": False}
    result = extract(spec, BASE, tmp_path / "c.h5", **options)
    assert result.rows == 4 * BATCH and len(seen) == 4 * BATCH
    assert set(seen.values()) == {2}


def test_a_resumed_job_runs_only_the_missing_shards(cluster, source_spec, local_cache, tmp_path):
    out = tmp_path / "resumed.h5"
    source = open_source(source_spec, limit=N_IMAGES)
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.loop import cache_identity

    base = load_base(BASE)
    print_fp = fingerprint(cache_identity(base, source, source.manifest()))
    shards = engines.plan_shards(len(source), SHARD, BATCH)
    # A client died after three shards had finished: their shard caches are there.
    for shard in shards[:3]:
        path = engines.shard_path(out, print_fp, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        extract(engines.shard_source(source, shard), base, path, batch_size=BATCH, progress=False)
    extraction = _run(cluster, source_spec, out)
    provenance = _assert_same_cache(out, local_cache)
    assert provenance["shards_run"] == len(shards) - 3
    assert extraction.rows == N_IMAGES


def test_views_on_the_cluster_equal_a_local_run(cluster, source_spec, tmp_path):
    views = {"augment": "flip,crop,rotate,color", "views": 2, "seed": 7}
    local = tmp_path / "local-views.h5"
    extract(source_spec, BASE, local, limit=N_IMAGES, batch_size=BATCH, progress=False, **views)
    out = tmp_path / "dask-views.h5"
    _run(cluster, source_spec, out, **views)
    _assert_same_cache(out, local)
    with FeatureCache.open(out) as got, FeatureCache.open(local) as want:
        assert len(got) == 3 * N_IMAGES and got.identity["views"]["seed"] == 7
        np.testing.assert_array_equal(got.source_rows, want.source_rows)


def test_layers_on_the_cluster_equal_a_local_multi_layer_run(cluster, source_spec, tmp_path):
    from bottleneck_transfer.cli import cli
    from bottleneck_transfer.features.extract import extract_layers, layer_paths
    from click.testing import CliRunner

    layers = ["bottleneck", "pool2"]
    local = tmp_path / "local.h5"
    options = {"limit": N_IMAGES, "batch_size": BATCH, "progress": False}
    extract_layers(source_spec, BASE, local, layers, **options)
    out = tmp_path / "dask.h5"
    args = ["extract", source_spec, "--base", BASE, "--limit", N_IMAGES, "--batch-size", BATCH]
    args += ["-o", out, "--layers", ",".join(layers), "--engine", "dask"]
    args += ["--scheduler", cluster["address"], "--shard-images", SHARD, "--quiet"]
    done = CliRunner().invoke(cli, [str(a) for a in args])
    assert done.exit_code == 0, done.output
    for got, want in zip(layer_paths(out, layers), layer_paths(local, layers), strict=True):
        extraction = _assert_same_cache(got, want)
        with FeatureCache.open(got) as a, FeatureCache.open(want) as b:
            np.testing.assert_array_equal(a.features, b.features)
        assert extraction["engine"] == "dask"
        assert extraction["shards_run"] == N_IMAGES // SHARD  # one task per shard, all layers
        assert not engines.shard_folder(got).exists()


def test_cli_runs_against_a_scheduler(cluster, source_spec, local_cache, tmp_path):
    out = tmp_path / "cli.h5"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bottleneck_transfer",
            "extract",
            source_spec,
            "--base",
            BASE,
            "--limit",
            str(N_IMAGES),
            "--batch-size",
            str(BATCH),
            "-o",
            str(out),
            "--engine",
            "dask",
            "--scheduler",
            cluster["address"],
            "--shard-images",
            str(SHARD),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_cache(out, local_cache)


def test_compare_tune_on_the_cluster_equals_a_local_run(cluster, tmp_path):
    import json

    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner
    from heads_fixtures import digits_caches

    train, test = digits_caches(tmp_path)
    args = ["compare", str(train), "--test", str(test), "--heads", "logreg,knn", "--tune"]
    args += ["--bootstrap", "100", "--json"]
    runs = {}
    for engine in (["--engine", "local"], ["--engine", "dask", "--scheduler", cluster["address"]]):
        done = CliRunner().invoke(cli, [*args, *engine], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        rows = json.loads(done.output[done.output.index("{") :])["rows"]
        runs[engine[1]] = {r["name"]: (r["spec"], r["metrics"], r["reused"]) for r in rows}
    assert runs["dask"] == runs["local"]
    tasks = cluster["client"].run_on_scheduler(
        lambda dask_scheduler: len(dask_scheduler.task_prefixes)
    )
    assert tasks > 0


def test_a_spec_extracts_on_the_cluster(cluster, local_cache, tmp_path):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'''[data]
train = "fashion-mnist:test"
limit = {N_IMAGES}
[base]
name = "{BASE}"
[extract]
batch_size = {BATCH}
engine = "dask"
scheduler = "{cluster["address"]}"
shard_images = {SHARD}
[heads]
use = ["logreg"]
cv = 2
[export]
predict = 0
[outputs]
dir = "{tmp_path / "runs"}"
'''
    )
    done = CliRunner().invoke(
        cli, ["run", str(spec), "--cache-dir", str(tmp_path / "store"), "--quiet"]
    )
    assert done.exit_code == 0, done.output
    (cache,) = (tmp_path / "store").glob("*.h5")
    extraction = _assert_same_cache(cache, local_cache)
    assert extraction["engine"] == "dask"


def test_unreachable_scheduler_is_one_line(source_spec, tmp_path):
    with pytest.raises(
        BottleneckError,
        match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:\d+ within 3 s",
    ):
        extract(
            source_spec,
            BASE,
            tmp_path / "x.h5",
            limit=64,
            engine="dask",
            scheduler=f"tcp://127.0.0.1:{_free_port()}",
            timeout=3,
            progress=False,
        )


def test_a_base_object_is_refused_for_dask(source_spec, tmp_path):
    from bottleneck_transfer.features.bases import load_base

    with pytest.raises(BottleneckError, match="give the base by name or model path"):
        extract(
            source_spec, load_base(BASE), tmp_path / "x.h5", limit=64, engine="dask", progress=False
        )


RANDOM = {"weights": "none", "image_size": 32, "limit": 64, "batch_size": BATCH}


def test_random_weights_on_the_cluster_equal_a_local_run(cluster, source_spec, tmp_path):
    """``--weights none --seed S``: each worker builds the local run's weights (same features,
    same fingerprint); another seed gives other weights, features and fingerprint."""
    runs = {}
    for name, seed, engine in (("local", 0, {}), ("dask", 0, DASK), ("other", 1, {})):
        out = tmp_path / f"{name}.h5"
        engine = {**engine, "scheduler": cluster["address"]} if engine else {}
        extract(source_spec, "mobilenet_v2", out, seed=seed, progress=False, **RANDOM, **engine)
        with FeatureCache.open(out) as cache:
            runs[name] = (cache.fingerprint, np.asarray(cache.features))
    assert runs["dask"][0] == runs["local"][0]
    assert_features_close(runs["dask"][1], runs["local"][1])
    assert runs["other"][0] != runs["local"][0]
    assert_features_differ(runs["other"][1], runs["local"][1])


def test_a_worker_that_builds_other_weights_is_refused():
    from bottleneck_transfer.errors import BaseModelError
    from bottleneck_transfer.features.runtimes import load_pass

    job = load_pass(BASE)
    client = {**job.bases[0].description, "weights_sha256": "sha256:other"}
    with pytest.raises(BaseModelError, match=r"built another base .*\(weights_sha256 differ\)"):
        engines.check_same_bases(job, [client])
    engines.check_same_bases(job, [job.bases[0].description])


@pytest.fixture
def own_cluster():
    """A cluster for one test alone (one that kills a worker)."""
    with _cluster() as running:
        yield running


def test_a_worker_killed_mid_job_loses_and_duplicates_no_row(
    own_cluster, source_spec, local_cache, tmp_path
):
    """SIGKILL one of the two workers while shards run: its shards run again on the other.

    On a cluster of its own: the other tests' cluster keeps its two workers.
    """
    cluster = own_cluster
    out = tmp_path / "killed.h5"
    errors: list[BaseException] = []

    def job():
        try:
            _run(cluster, source_spec, out, shard_images=BATCH)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    folder = engines.shard_folder(out)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list(folder.glob("*.h5")) and not errors:
        time.sleep(0.02)
    assert list(folder.glob("*.h5")), f"no shard finished: {errors}"
    assert thread.is_alive(), "the job ended before a worker could be killed"
    os.kill(cluster["workers"][0].pid, signal.SIGKILL)
    thread.join(300)
    assert not thread.is_alive()
    assert not errors, errors
    extraction = _assert_same_cache(out, local_cache)
    assert extraction["shards"] == N_IMAGES // BATCH
    assert extraction["workers"] == 1  # the killed worker is gone


def test_missing_dask_is_one_line(monkeypatch, source_spec, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(BottleneckError, match=r"pip install 'bottleneck-transfer\[dask\]'"):
        extract(source_spec, BASE, tmp_path / "x.h5", limit=64, engine="dask", progress=False)
    assert not (tmp_path / "x.h5").exists()
