"""Fuzzed loaders (issue 24): any bytes, and real files with bytes flipped or cut off, given
to the cache reader, the spec loader and the skops loader give either a result or one
project error (a one-line :class:`BottleneckError`), never a hang or another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.heads.trust import load_trusted
from bottleneck_transfer.pipeline.spec import load_spec
from heads_fixtures import blobs, write_cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loader_fixtures import trained_head

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SPEC = """# a real spec
[data]
train = "fashion-mnist:train"
test = "fashion-mnist:test"
classes = "5-9"
limit = 100

[base]
name = "mobilenet_v2"
image_size = 96

[heads]
use = ["logreg", "knn:n_neighbors=3"]
cv = 3

[export]
head = "best"
"""


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a real small cache (with a failure), spec and trained head."""
    folder = tmp_path_factory.mktemp("originals")
    X, y = blobs(n=40, dim=3, centers=2)
    cache = write_cache(folder / "c.h5", X, y, class_names=["a", "b"])
    head = trained_head(cache, folder / "h.skops")
    return {"cache": cache.read_bytes(), "spec": SPEC.encode(), "head": head.read_bytes()}


def _damaged(original: bytes, data: st.DataObject) -> bytes:
    """``original`` with 1 to 8 bytes flipped anywhere (uniformly), or cut short, or both."""
    rng = data.draw(st.randoms(use_true_random=False), label="rng")
    out = bytearray(original)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    if rng.random() < 0.3:
        out = out[: rng.randrange(len(out))]
    return bytes(out)


def _refused_or_read(load, path: Path) -> None:
    try:
        load(path)
    except BottleneckError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), str(exc)


def _read_cache(path: Path) -> None:
    with FeatureCache.open(path) as cache:
        cache.arrays()
        cache.ids, cache.class_names, cache.failed, cache.manifest  # noqa: B018
        cache.provenance, cache.identity, cache.fingerprint, cache.source_rows  # noqa: B018


LOADERS = {"cache": _read_cache, "spec": load_spec, "head": load_trusted}
SUFFIXES = {"cache": ".h5", "spec": ".toml", "head": ".skops"}


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(data=st.binary(max_size=4096))
def test_any_bytes_are_refused_cleanly(kind, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / f"x{SUFFIXES[kind]}"
    path.write_bytes(data)
    _refused_or_read(LOADERS[kind], path)


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(data=st.data())
def test_a_damaged_real_file_is_refused_cleanly(kind, data, originals, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / f"x{SUFFIXES[kind]}"
    path.write_bytes(_damaged(originals[kind], data))
    _refused_or_read(LOADERS[kind], path)


@FUZZ
@given(data=st.data())
def test_a_head_with_a_damaged_schema_is_refused_cleanly(data, originals, tmp_path_factory):
    """The schema's JSON damaged inside an intact zip: what skops would parse and build."""
    import io
    import zipfile

    path = tmp_path_factory.mktemp("fuzz") / "x.skops"
    with zipfile.ZipFile(io.BytesIO(originals["head"])) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["schema.json"] = _damaged(members["schema.json"], data)
    with zipfile.ZipFile(path, "w") as archive:
        for name, member in members.items():
            archive.writestr(name, member)
    _refused_or_read(load_trusted, path)
