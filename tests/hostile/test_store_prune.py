"""Issue 24, part 3: the store deletes only what it wrote.

Each layout puts a user's folder (with a sentinel file) where ``cache prune`` or a
``--force`` replacement used to delete it: inside an unmarked partial folder under a name
like the writer's temporaries, as a folder named like a chunk file, inside an export entry,
behind a link in an export. The sentinel's hash is the same after; the store's own entries
beside them still go; the output names what was left and why.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.atomic import TEMP_SUFFIX, atomic_path
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import BottleneckError, CacheError
from bottleneck_transfer.features.cache import CacheWriter
from bottleneck_transfer.features.cache.partial import PARTIAL_MARKER, partial_path
from bottleneck_transfer.features.store import (
    EXPORT_MODELS,
    EXPORT_SUMMARY,
    EXPORTS_FOLDER,
    CacheStore,
)
from click.testing import CliRunner

SENTINEL = b"four years of work"


def _user_folder(folder: Path) -> Path:
    """A user's folder with a sentinel file in a subfolder; returns the sentinel."""
    (folder / "photos").mkdir(parents=True)
    sentinel = folder / "photos" / "thesis.tex"
    sentinel.write_bytes(SENTINEL)
    return sentinel


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _partial(store: CacheStore, digit: str) -> Path:
    """An unfinished extraction written by the store's writer (one committed chunk)."""
    folder = partial_path(store.path_for("sha256:" + digit * 64))
    writer = CacheWriter.create(
        folder,
        dim=2,
        fingerprint="sha256:" + digit * 64,
        identity={},
        provenance={"source": {}},
        class_names=["a"],
    )
    writer.write_batch(np.ones((2, 2), np.float32), np.zeros(2, np.int32), ["x", "y"], [], 2)
    writer.commit()
    writer.close()
    return folder


def _export(store: CacheStore, digit: str) -> Path:
    """An export entry as the pipeline writes it (a folder model, sealed with its manifest)."""
    folder = store.root / EXPORTS_FOLDER / (digit * 32)
    with atomic_path(folder) as scratch:
        (scratch / EXPORT_MODELS["folder"]).mkdir(parents=True)
        (scratch / EXPORT_MODELS["folder"] / "base.keras").write_bytes(b"zip")
        (scratch / EXPORT_SUMMARY).write_text('{"head": "knn", "kind": "folder"}')
    return folder


def _age(store: CacheStore) -> None:
    for top, folders, files in os.walk(store.root):
        for name in [*folders, *files]:
            os.utime(Path(top, name), (1, 1), follow_symlinks=False)


def _prune(store: CacheStore) -> tuple[int, str]:
    args = ["cache", "prune", "--cache-dir", str(store.root), "--older-than", "1d", "--partial"]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


@pytest.fixture
def store(tmp_path) -> CacheStore:
    store = CacheStore(tmp_path / "store")
    store.root.mkdir()
    return store


def test_a_user_folder_named_like_a_temporary_in_an_unmarked_partial_stays(store):
    unmarked = partial_path(store.path_for("sha256:" + "a" * 64))
    sentinel = _user_folder(unmarked / f".{PARTIAL_MARKER}.k3x9{TEMP_SUFFIX}")
    own = _partial(store, "b")
    before = _digest(sentinel)
    _age(store)
    code, output = _prune(store)
    assert code == 0, output
    assert _digest(sentinel) == before
    assert f"kept {unmarked}: " in output
    assert f"did not write (.{PARTIAL_MARKER}.k3x9{TEMP_SUFFIX})" in output
    assert f"removed {own}" in output and not own.exists()


def test_a_user_folder_named_like_a_chunk_file_stays(store):
    own = _partial(store, "c")
    sentinel = _user_folder(own / "chunk-000007.npz")
    before = _digest(sentinel)
    _age(store)
    code, output = _prune(store)
    assert code == 0, output
    assert _digest(sentinel) == before
    assert f"kept {own}: " in output
    assert "holds files bottleneck did not write (chunk-000007.npz)" in output
    assert (own / "chunk-000000.npz").is_file()  # all or nothing: the entry stays whole


def test_a_user_folder_inside_an_export_entry_stays(store):
    own, other = _export(store, "d"), _export(store, "e")
    sentinel = _user_folder(own / EXPORT_MODELS["folder"] / "mine")
    before = _digest(sentinel)
    _age(store)
    code, output = _prune(store)
    assert code == 0, output
    assert _digest(sentinel) == before
    assert f"kept {own}: left mine not in the manifest" in output
    assert (own / EXPORT_SUMMARY).is_file()
    assert f"removed {other}" in output and not other.exists()


def test_a_listed_folder_turned_into_a_link_is_not_followed(store, tmp_path):
    own = _export(store, "f")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "base.keras").write_bytes(SENTINEL)  # the name the manifest lists
    (own / EXPORT_MODELS["folder"] / "base.keras").unlink()
    (own / EXPORT_MODELS["folder"]).rmdir()
    (own / EXPORT_MODELS["folder"]).symlink_to(elsewhere)
    _age(store)
    code, output = _prune(store)
    assert code == 0, output
    assert (elsewhere / "base.keras").read_bytes() == SENTINEL
    assert f"kept {own}" in output and "symbolic link" in output


def test_force_replacing_a_partial_never_deletes_a_user_folder_in_it(store):
    own = _partial(store, "a")
    sentinel = _user_folder(own / "chunk-000003.npz")
    before = _digest(sentinel)
    with pytest.raises(CacheError, match=r"holds files bottleneck did not write \(chunk-000003"):
        _partial(store, "a")  # what ``extract --force`` does first: discard the old partial
    assert _digest(sentinel) == before


def test_force_replacing_a_folder_the_tool_wrote_replaces_it(tmp_path):
    out = tmp_path / "model"
    for version in ("old", "new"):
        with atomic_path(out) as tmp:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "model.json").write_text(version)
    assert (out / "sub" / "model.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_force_replacing_a_folder_with_a_users_file_in_it_is_refused(tmp_path):
    out = tmp_path / "model"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("old")
    (out / "thesis.tex").write_bytes(SENTINEL)
    with (
        pytest.raises(BottleneckError, match=r"model is not replaced \(.*thesis\.tex"),
        atomic_path(out) as tmp,
    ):
        tmp.mkdir()
        (tmp / "model.json").write_text("new")
    assert (out / "thesis.tex").read_bytes() == SENTINEL
    assert (out / "model.json").read_text() == "old"


def test_force_replacing_a_users_folder_is_refused(tmp_path):
    out = tmp_path / "model"
    sentinel = _user_folder(out)
    (out / "model.json").write_text("{}")  # looks like an export, was not written by one
    with pytest.raises(BottleneckError, match="not written by bottleneck"), atomic_path(out) as tmp:
        tmp.mkdir()
    assert sentinel.read_bytes() == SENTINEL


@pytest.mark.parametrize("name", ["../../victim.txt", "/tmp/victim.txt", "a/../../victim.txt"])
def test_a_manifest_listing_a_path_outside_its_entry_removes_nothing(store, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(SENTINEL)
    cache = store.path_for("sha256:" + "9" * 64)
    cache.write_bytes(b"cache")
    listed = name.replace("/tmp/victim.txt", str(victim))
    entry = {"size": len(SENTINEL), "sha256": hashlib.sha256(SENTINEL).hexdigest()}
    manifest = cache.with_name(cache.name + ".manifest.json")
    manifest.write_text(
        json.dumps({"format": "bottleneck-manifest", "files": {listed: entry}, "folders": []})
    )
    _age(store)
    code, output = _prune(store)
    assert code == 0, output
    assert victim.read_bytes() == SENTINEL and cache.exists()
    assert "is not a bottleneck manifest" in output
