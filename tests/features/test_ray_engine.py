"""The Ray engine: shards on Ray actors give a local run's cache, the base built once per actor.

Ray serves on the machine's network address whatever it is told, so these tests start it only
inside a network namespace of its own, where loopback is the only interface, and skip
elsewhere. Run them as root with::

    unshare -n -p -f --mount-proc bash -c 'ip link set lo up && python -m pytest \
        tests/features/test_ray_engine.py'

(``-p -f --mount-proc``: a process namespace too, so the fixture's ``ray stop --force`` sees
only this run's Ray processes, and they all end with the shell.)
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.engines import shards
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.fingerprint import fingerprint
from feature_checks import assert_features_close

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "data" / "bases" / "fashion_mnist_0-4.keras")
N_IMAGES = 256
BATCH = 32
SHARD = 64  # 4 shards on 2 actors
WORKERS = 2
HOW = (
    "unshare -n -p -f --mount-proc bash -c "
    "'ip link set lo up && python -m pytest tests/features/test_ray_engine.py'"
)


def why_not_isolated() -> str | None:
    """Why Ray must not start here, or None inside a network namespace whose only interface
    is an up loopback."""
    names = [name for _, name in socket.if_nameindex()]
    others = [name for name in names if name != "lo"]
    if others:
        return f"Ray would serve on {', '.join(others)}: run in a namespace of its own: {HOW}"
    try:
        up = int(Path("/sys/class/net/lo/flags").read_text(), 16) & 1
    except (OSError, ValueError):
        up = 0
    return None if up else f"loopback is down in this namespace: {HOW}"


def test_the_isolation_check_refuses_a_machine_with_a_network(monkeypatch):
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    assert "eth0" in why_not_isolated()


@pytest.fixture(scope="module")
def ray_local():
    """A Ray runtime of two CPUs on 127.0.0.1 (`ray start --head`), started only inside an
    isolated namespace (:func:`bench.sources.start_ray_head`), stopped whatever happens."""
    reason = why_not_isolated()
    if reason is not None:
        pytest.skip(reason)
    ray = pytest.importorskip("ray")
    from bottleneck_transfer.bench.sources import start_ray_head

    try:
        start_ray_head(WORKERS)
        ray.init(address="auto", log_to_driver=False)
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        yield ray
        ray.shutdown()
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True)


@pytest.fixture(scope="module")
def local_cache(tmp_path_factory, fashion_mnist_available) -> Path:
    out = tmp_path_factory.mktemp("local") / "local.h5"
    spec = "fashion-mnist:test"
    extract(spec, BASE, out, limit=N_IMAGES, batch_size=BATCH, progress=False)
    return out


def _run(out: Path, **options):
    return extract(
        "fashion-mnist:test",
        BASE,
        out,
        limit=N_IMAGES,
        batch_size=BATCH,
        engine="ray",
        workers=WORKERS,
        shard_images=SHARD,
        progress=False,
        **options,
    )


def _assert_same_cache(path: Path, reference: Path) -> dict:
    with FeatureCache.open(path) as got, FeatureCache.open(reference) as want:
        assert got.ids == want.ids
        np.testing.assert_array_equal(got.labels, want.labels)
        assert_features_close(got.features, want.features)
        assert got.fingerprint == want.fingerprint
        return got.provenance["extraction"]


def test_ray_equals_local_and_builds_the_base_once_per_actor(ray_local, local_cache, tmp_path):
    out = tmp_path / "ray.h5"
    result = _run(out)
    assert result.rows == N_IMAGES
    extraction = _assert_same_cache(out, local_cache)
    assert extraction["engine"] == "ray"
    assert extraction["shards"] == N_IMAGES // SHARD
    assert extraction["workers"] == WORKERS
    assert extraction["base_builds"] == WORKERS  # 4 shards, 2 actors, one build each
    assert not shards.shard_folder(out).exists()


def test_ray_resumes_by_running_only_the_missing_shards(ray_local, local_cache, tmp_path):
    out = tmp_path / "ray.h5"
    source = open_source("fashion-mnist:test", limit=N_IMAGES)
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.loop import cache_identity

    base = load_base(BASE)
    print_fp = fingerprint(cache_identity(base, source, source.manifest()))
    first = shards.plan_shards(len(source), SHARD, BATCH)[0]
    kept = shards.shard_path(out, print_fp, first)
    extract(shards.shard_source(source, first), base, kept, batch_size=BATCH, progress=False)
    extraction = _assert_same_cache(_run(out).path, local_cache)
    assert extraction["shards_run"] == N_IMAGES // SHARD - 1


def test_ray_on_tar_shards_equals_local(ray_local, fashion_mnist_available, tmp_path):
    from bottleneck_transfer.bench.sources import write_sources

    spec = write_sources(tmp_path, 3 * BATCH, ("tar",))["tar"]  # PNGs in a WebDataset tar
    options = {"batch_size": BATCH, "progress": False}
    local = extract(spec, BASE, tmp_path / "local.h5", **options)
    got = extract(
        spec, BASE, tmp_path / "ray.h5", engine="ray", workers=WORKERS, shard_images=BATCH,
        **options,
    )  # fmt: skip
    extraction = _assert_same_cache(got.path, local.path)
    assert extraction["engine"] == "ray" and extraction["shards"] == 3


def test_a_second_job_of_the_driver_reuses_the_actors_and_their_bases(
    ray_local, local_cache, tmp_path
):
    from bottleneck_transfer.features.engines import ray as ray_engine

    _run(tmp_path / "first.h5")
    actors = [a._actor_id for a in ray_engine.shard_workers(ray_local, WORKERS)]
    extraction = _assert_same_cache(_run(tmp_path / "second.h5").path, local_cache)
    assert [a._actor_id for a in ray_engine.shard_workers(ray_local, WORKERS)] == actors
    assert extraction["base_builds"] == 0  # the same processes, their bases built
    with ray_engine.joblib_backend(None, WORKERS):  # head searches get the CPUs back
        assert not ray_engine._ACTORS
