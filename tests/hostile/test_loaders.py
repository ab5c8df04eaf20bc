"""Loaders with limits (issue 24, part 5): hostile skops heads, pipeline specs and caches are
refused in one line before anything is parsed or allocated, naming the limit."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from bottleneck_transfer import limits
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.trust import load_trusted
from heads_fixtures import blobs, write_cache
from loader_fixtures import one_line, run_cli, stored_zip, trained_head, tree_hashes, zip_bomb


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    X, y = blobs(n=90, dim=4, centers=3)
    return write_cache(tmp_path_factory.mktemp("cache") / "c.h5", X, y)


@pytest.fixture(scope="module")
def head(cache, tmp_path_factory):
    return trained_head(cache, tmp_path_factory.mktemp("head") / "head.skops")


def _evaluate(head_file, cache, *names: str) -> str:
    before = tree_hashes(head_file.parent)
    line = one_line(run_cli("evaluate", head_file, cache), str(head_file), *names)
    assert tree_hashes(head_file.parent) == before
    return line


def test_a_4gb_decompression_bomb_is_refused_before_unpacking(cache, tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.skops", claimed=4_000_000_000)
    assert bomb.stat().st_size < 5 * 2**20
    with zipfile.ZipFile(bomb).open("schema.json") as member:  # a real bomb: zeros, on and on
        assert member.read(2**24) == bytes(2**24)
    line = _evaluate(bomb, cache, "MAX_HEAD_UNCOMPRESSED_BYTES", "4,000,000,000 bytes")
    assert "before unpacking" in line


def test_a_member_compressed_too_well_is_refused(cache, tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.skops", name="0.npy", claimed=300 * 2**20)
    _evaluate(bomb, cache, "MAX_HEAD_COMPRESSION_RATIO", "'0.npy'")


@pytest.mark.parametrize(
    ("schema", "limit"),
    [
        ("[" * 100_000 + "]" * 100_000, "MAX_JSON_DEPTH"),
        ('{"a": [' + ",".join(["0"] * 150_000) + "]}", "MAX_JSON_ITEMS"),
        (json.dumps({"x": "[" * 5000}), None),  # brackets inside a string are text
    ],
    ids=["deep", "long-list", "brackets-in-a-string"],
)
def test_a_deep_or_long_schema_is_refused_before_it_is_parsed(cache, tmp_path, schema, limit):
    path = stored_zip(tmp_path / "h.skops", {"schema.json": schema.encode()})
    line = _evaluate(path, cache, *([limit] if limit else []))
    if limit is None:
        assert "names no head kind" in line


def test_a_list_shaped_schema_is_refused(cache, tmp_path):
    path = stored_zip(tmp_path / "h.skops", {"schema.json": b"[1, 2, 3]"})
    _evaluate(path, cache, "schema.json holds a JSON list")


def test_a_head_file_over_the_size_limit_is_not_opened(cache, tmp_path):
    path = tmp_path / "huge.skops"
    with open(path, "wb") as handle:  # sparse: no disk used
        handle.truncate(limits.MAX_HEAD_BYTES + 1)
    _evaluate(path, cache, "MAX_HEAD_BYTES")


def test_too_many_members_are_refused(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_HEAD_MEMBERS", 3)
    path = stored_zip(tmp_path / "h.skops", {f"{i}.npy": b"" for i in range(4)})
    with pytest.raises(HeadError, match=r"a zip of 4 members is over .*MAX_HEAD_MEMBERS = 3"):
        load_trusted(path)


def test_a_fifo_is_not_opened(cache, tmp_path):
    path = tmp_path / "fifo.skops"
    os.mkfifo(path)
    one_line(run_cli("evaluate", path, cache), str(path))


def test_a_real_head_still_loads_within_the_limits(head, cache):
    result = run_cli("evaluate", head, cache)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


SPEC = """[data]
train = "fashion-mnist:train"   # a [bracket] in a comment
test = "fashion-mnist:test"

[base]
name = "mobilenet_v2"
"""


def _run(spec, *names: str) -> str:
    before = tree_hashes(spec.parent)
    line = one_line(run_cli("run", spec, "--dry-run"), str(spec), *names)
    assert tree_hashes(spec.parent) == before  # no runs/ or caches/ folder either
    return line


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
        (b"PK\x03\x04" + bytes(64), "a zip file"),
        (b"[data]\ntrain = '\xff\xfe'\n", "not UTF-8 text"),
        (b"[data]\x00\ntrain = 'x'\n", "NUL bytes"),
    ],
    ids=["hdf5", "zip", "latin-1", "nul"],
)
def test_a_binary_spec_is_refused_by_name(tmp_path, data, looks_like):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(data)
    assert "not a TOML pipeline spec" in _run(spec, "binary file", looks_like)


def test_a_deeply_nested_spec_is_refused_before_it_is_parsed(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + "[extract]\nseed = " + "[" * 50_000 + "]" * 50_000 + "\n")
    _run(spec, "MAX_SPEC_DEPTH", "50,000 deep")


def test_brackets_in_strings_and_comments_are_not_nesting(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("mobilenet_v2", "[[[[" * 10 + '\\"') + "# " + "[" * 100 + "\n")
    assert "MAX_SPEC_DEPTH" not in run_cli("run", spec, "--dry-run").output


def test_an_oversized_spec_is_not_read(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + "# padding\n" * (limits.MAX_SPEC_BYTES // 10))
    _run(spec, "MAX_SPEC_BYTES")


def test_a_fifo_spec_is_not_opened(tmp_path):
    spec = tmp_path / "spec.toml"
    os.mkfifo(spec)
    _run(spec, "not a regular file")


def _forged(cache, tmp_path, change) -> object:
    """A copy of ``cache`` changed in place with h5py by ``change(handle)``."""
    import shutil

    import h5py

    path = tmp_path / "forged.h5"
    shutil.copyfile(cache, path)
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def _train(path, *names: str) -> str:
    before = tree_hashes(path.parent)
    out = path.parent / "head.skops"
    line = one_line(run_cli("train", path, "-o", out), str(path), *names)
    assert tree_hashes(path.parent) == before and not out.exists()
    return line


def _replace(handle, name: str, **kwargs) -> None:
    del handle[name]
    handle.create_dataset(name, **kwargs)


@pytest.mark.parametrize(
    ("dataset", "kwargs", "named"),
    [
        ("features", {"shape": (90, 10**7), "dtype": "f4"}, "the size of the whole file"),
        (
            "features",
            {"shape": (90, 10**7), "dtype": "f4", "chunks": (1, 10**5), "compression": "gzip"},
            "MAX_CACHE_COMPRESSION_RATIO",
        ),
    ],
    ids=["contiguous", "compressed"],
)
def test_a_header_claiming_a_huge_dataset_allocates_nothing(
    cache, tmp_path, dataset, kwargs, named
):
    path = _forged(cache, tmp_path, lambda h5: _replace(h5, dataset, **kwargs))
    assert path.stat().st_size < 2**20
    _train(path, f"/{dataset}", "claims", named)


def test_a_string_over_the_limit_is_refused(tmp_path):
    X, y = blobs(n=30, dim=4, centers=3)
    ids = [f"{i}.png" for i in range(30)]
    ids[7] = "x" * (limits.MAX_CACHE_STRING_BYTES + 1)
    path = write_cache(tmp_path / "c.h5", X, y, ids=ids)
    _train(path, "/ids", "MAX_CACHE_STRING_BYTES")


def test_a_forged_string_length_is_refused_before_hdf5_reads_it(cache, tmp_path):
    """The length field of one id's record on disk says 2 GB: nothing allocates it."""
    import h5py

    path = _forged(cache, tmp_path, lambda h5: None)
    with h5py.File(path, "r") as handle:
        offset = handle["ids"].id.get_offset()
    with open(path, "r+b") as raw:
        raw.seek(offset + 16 * 3)
        raw.write((2**31).to_bytes(4, "little"))
    _train(path, "/ids", "MAX_CACHE_STRING_BYTES", "2,147,483,648 bytes")


def test_a_deeply_nested_json_attribute_is_refused(cache, tmp_path):
    def deep(handle):
        handle.attrs["provenance"] = "[" * 100_000 + "]" * 100_000

    path = _forged(cache, tmp_path, deep)
    before = tree_hashes(tmp_path)
    one_line(run_cli("info", path), str(path), "'provenance'", "MAX_JSON_DEPTH")
    assert tree_hashes(tmp_path) == before


def test_a_fifo_cache_is_not_opened(tmp_path):
    path = tmp_path / "fifo.h5"
    os.mkfifo(path)
    one_line(run_cli("info", path), str(path), "not a regular file")
