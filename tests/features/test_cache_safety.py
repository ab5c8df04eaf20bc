"""The cache writer and reader under damage: partial folders it did not write, missing or
corrupt chunks, corrupt attributes, full disks, unusable features."""

from __future__ import annotations

import errno
import json
import os

import h5py
import numpy as np
import pytest
from bottleneck_transfer.entries import EntryManifest
from bottleneck_transfer.errors import CacheError, ResumeWarning, StaleCacheError
from bottleneck_transfer.features.cache import CacheWriter, FeatureCache
from bottleneck_transfer.features.cache import writer as cache_module
from bottleneck_transfer.features.cache.format import check_features
from bottleneck_transfer.features.cache.partial import (
    PARTIAL_MARKER,
    discard_partial,
    partial_path,
    partial_progress,
)
from bottleneck_transfer.features.cache.reader import check_existing

DIM = 3
IDS = [f"img{k:02d}.png" for k in range(12)]


def _writer(path, manifest=None) -> CacheWriter:
    return CacheWriter.create(
        partial_path(path),
        dim=DIM,
        fingerprint="sha256:abc",
        identity={"source": {"n": 12}},
        provenance={"source": {}},
        class_names=["a", "b"],
        manifest=manifest,
    )


def _rows(begin: int, end: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    features = np.arange(begin * DIM, end * DIM, dtype=np.float32).reshape(-1, DIM)
    return features, np.arange(begin, end) % 2, IDS[begin:end]


def _partial(path, chunks=((0, 4), (4, 8), (8, 12))) -> CacheWriter:
    """A partial extraction of IDS committed as ``chunks``; item 5 failed."""
    writer = _writer(path)
    for begin, end in chunks:
        features, labels, ids = _rows(begin, end)
        keep = [k for k, i in enumerate(ids) if i != IDS[5]]
        failures = [(IDS[5], "broken")] if begin <= 5 < end else []
        writer.write_batch(features[keep], labels[keep], [ids[k] for k in keep], failures, end)
        writer.commit()
    writer.close()
    return writer


def _resume(path) -> CacheWriter:
    return CacheWriter.resume(partial_path(path), "sha256:abc", {}, item_ids=IDS)


def _finish(writer: CacheWriter, path) -> FeatureCache:
    """Write the items the writer has not done yet, finalize, open the cache."""
    done = writer.items_done
    for begin in range(done, len(IDS), 4):
        end = min(begin + 4, len(IDS))
        features, labels, ids = _rows(begin, end)
        keep = [k for k, i in enumerate(ids) if i != IDS[5]]
        failures = [(IDS[5], "broken")] if begin <= 5 < end else []
        writer.write_batch(features[keep], labels[keep], [ids[k] for k in keep], failures, end)
    writer.finalize(path, {})
    return FeatureCache.open(path)


def _assert_complete(cache: FeatureCache) -> None:
    with cache:
        expected = [i for i in IDS if i != IDS[5]]
        assert cache.ids == expected
        assert cache.failed == [(IDS[5], "broken")]
        features, _, _ = _rows(0, 12)
        np.testing.assert_array_equal(cache.features, np.delete(features, 5, axis=0))


# --- the partial folder: marker, and nothing else deleted -----------------------------------


def test_partial_folder_starts_with_the_marker(tmp_path):
    _partial(tmp_path / "c.h5")
    names = sorted(os.listdir(partial_path(tmp_path / "c.h5")))
    assert PARTIAL_MARKER in names
    assert partial_progress(partial_path(tmp_path / "c.h5")) == {
        "rows": 11,
        "failed": 1,
        "items_done": 12,
    }


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: (p.mkdir(), (p / "thesis.tex").write_text("x")), "was not written by"),
        (lambda p: p.write_text("my notes"), "is a file"),
        (lambda p: p.symlink_to(p.parent / "elsewhere"), "symbolic link"),
    ],
)
def test_what_the_writer_did_not_write_is_never_deleted(tmp_path, make, words):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "precious.txt").write_text("keep me")
    target = partial_path(tmp_path / "backup.h5")
    make(target)
    with pytest.raises(CacheError, match=words):
        _writer(tmp_path / "backup.h5")
    with pytest.raises(CacheError, match=words):
        discard_partial(target)
    assert target.exists() or target.is_symlink()
    assert (tmp_path / "elsewhere" / "precious.txt").read_text() == "keep me"


def test_unknown_files_inside_a_partial_folder_stop_its_removal(tmp_path):
    _partial(tmp_path / "c.h5")
    (partial_path(tmp_path / "c.h5") / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match=r"holds files bottleneck did not write \(notes.txt\)"):
        discard_partial(partial_path(tmp_path / "c.h5"))
    assert (partial_path(tmp_path / "c.h5") / "chunk-000000.npz").exists()


# --- resume: contiguous chunks that account for every item ----------------------------------


def test_resume_of_an_intact_partial_keeps_everything(tmp_path):
    _partial(tmp_path / "c.h5")
    writer = _resume(tmp_path / "c.h5")
    assert (writer.rows, writer.n_failed, writer.items_done) == (11, 1, 12)
    _assert_complete(_finish(writer, tmp_path / "c.h5"))
    assert not partial_path(tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    ("damage", "kept_items", "words"),
    [
        (lambda d: (d / "chunk-000001.npz").unlink(), 4, "chunk-000001.npz is missing"),
        (lambda d: (d / "chunk-000000.npz").unlink(), 0, "chunk-000000.npz is missing"),
        (lambda d: _truncate(d / "chunk-000001.npz"), 4, "chunk-000001.npz is damaged"),
        (lambda d: _flip_byte(d / "chunk-000002.npz"), 8, "chunk-000002.npz is damaged"),
        (
            lambda d: os.replace(d / "chunk-000002.npz", d / "chunk-000001.npz"),
            4,
            "chunk-000001.npz is damaged or changed",
        ),
    ],
)
def test_resume_redoes_missing_or_damaged_chunks(tmp_path, damage, kept_items, words):
    """Old behaviour: a deleted chunk became a "complete" cache with rows lost or doubled."""
    _partial(tmp_path / "c.h5")
    damage(partial_path(tmp_path / "c.h5"))
    with pytest.warns(ResumeWarning, match=words):
        writer = _resume(tmp_path / "c.h5")
    assert writer.items_done == kept_items
    _assert_complete(_finish(writer, tmp_path / "c.h5"))


def test_resume_checks_the_chunk_ids_against_the_items(tmp_path):
    _partial(tmp_path / "c.h5")
    shuffled = IDS[4:8] + IDS[:4] + IDS[8:]
    with pytest.warns(ResumeWarning, match="chunk-000000.npz .*not those of items 0-4"):
        writer = CacheWriter.resume(
            partial_path(tmp_path / "c.h5"), "sha256:abc", {}, item_ids=shuffled
        )
    assert writer.items_done == 0


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_with_an_unreadable_meta_is_one_line_advice(tmp_path):
    _partial(tmp_path / "c.h5")
    (partial_path(tmp_path / "c.h5") / "meta.json").write_text("{not json")
    with pytest.raises(CacheError, match=r"meta\.json is unreadable .*rerun with --force"):
        _resume(tmp_path / "c.h5")


def test_resume_rewrites_a_missing_manifest(tmp_path):
    manifest = {"ids": IDS, "size": [1] * 12, "mtime_ns": [2] * 12}
    writer = _writer(tmp_path / "c.h5", manifest)
    writer.close()
    (partial_path(tmp_path / "c.h5") / "manifest.npz").unlink()
    writer = CacheWriter.resume(
        partial_path(tmp_path / "c.h5"), "sha256:abc", {}, item_ids=IDS, manifest=manifest
    )
    with _finish(writer, tmp_path / "c.h5") as cache:
        assert list(cache.manifest["ids"]) == IDS


def test_stale_partial_names_the_files_that_changed(tmp_path):
    before = {"ids": IDS, "size": [1] * 12, "mtime_ns": [2] * 12}
    _writer(tmp_path / "c.h5", before).close()
    after = {"ids": [*IDS[:11], "new.png"], "size": [1] * 11 + [3], "mtime_ns": [2] * 10 + [9, 9]}
    with pytest.raises(StaleCacheError) as caught:
        CacheWriter.resume(partial_path(tmp_path / "c.h5"), "sha256:other", {}, manifest=after)
    message = str(caught.value)
    assert "1 file(s) added: new.png" in message and "1 file(s) removed: img11.png" in message
    assert "1 file(s) modified: img10.png" in message


def test_a_marker_only_partial_starts_over(tmp_path):
    folder = partial_path(tmp_path / "c.h5")
    folder.mkdir()
    EntryManifest(folder / PARTIAL_MARKER).save()
    assert _resume(tmp_path / "c.h5") is None


def test_a_partial_with_an_invalid_manifest_is_not_ours(tmp_path):
    folder = partial_path(tmp_path / "c.h5")
    folder.mkdir()
    (folder / PARTIAL_MARKER).write_text("{}")
    with pytest.raises(CacheError, match="was not written by bottleneck"):
        _resume(tmp_path / "c.h5")
    assert (folder / PARTIAL_MARKER).read_text() == "{}"


# --- full disk, read-only folder ------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_at_a_commit_is_one_line_and_keeps_the_rows_pending(tmp_path, monkeypatch):
    writer = _partial(tmp_path / "c.h5", chunks=((0, 4),))
    writer = _resume(tmp_path / "c.h5")
    features, labels, ids = _rows(4, 8)
    writer.write_batch(features, labels, ids, [], 8)
    monkeypatch.setattr(cache_module.np, "savez", _no_space)
    with pytest.raises(CacheError, match="No space left on device; free some space, then rerun"):
        writer.commit()
    assert writer.items_done == 8 and writer.pending_bytes > 0
    monkeypatch.undo()
    assert _resume(tmp_path / "c.h5").items_done == 4


def test_full_disk_at_assembly_writes_nothing_final(tmp_path, monkeypatch):
    """HDF5 cannot recover from a full disk (it crashes the process): space is reserved."""
    _partial(tmp_path / "c.h5")
    writer = _resume(tmp_path / "c.h5")
    monkeypatch.setattr(cache_module.os, "posix_fallocate", _no_space, raising=False)
    with pytest.raises(CacheError, match=r"cannot write .*c\.h5: No space left on device"):
        writer.finalize(tmp_path / "c.h5", {})
    assert sorted(os.listdir(tmp_path)) == ["c.h5.partial"]
    monkeypatch.undo()
    _assert_complete(_finish(_resume(tmp_path / "c.h5"), tmp_path / "c.h5"))


def test_assembled_file_keeps_no_reserved_slack(tmp_path):
    _partial(tmp_path / "c.h5")
    _resume(tmp_path / "c.h5").finalize(tmp_path / "c.h5", {})
    assert os.path.getsize(tmp_path / "c.h5") < 2**20  # the reservation is 1 MiB + 10 %


# --- the reader: corrupt attributes and datasets --------------------------------------------


def _complete(tmp_path):
    path = tmp_path / "c.h5"
    _finish(_writer(path), path).close()
    return path


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda h5: h5.attrs.__setitem__("identity", "{bad json"), "'identity' is not valid JSON"),
        (lambda h5: h5.attrs.__setitem__("class_names", "[1,"), "'class_names' is not valid JSON"),
        (lambda h5: h5.attrs.__setitem__("provenance", "[]"), "'provenance' is not a JSON dict"),
        (lambda h5: h5.attrs.__delitem__("fingerprint"), "has no valid fingerprint"),
        (lambda h5: h5.attrs.__setitem__("fingerprint", ""), "has no valid fingerprint"),
        (lambda h5: h5.attrs.__setitem__("format_version", "1"), "format version 1"),
        (lambda h5: h5.attrs.__setitem__("complete", "yes"), "marked incomplete"),
        (lambda h5: _replace(h5, "ids", np.arange(11)), "/ids must be strings; got int64"),
        (
            lambda h5: _replace(h5, "labels", np.linspace(0, 1.5, 11)),
            "/labels must be integer class indices; got float64",
        ),
        (lambda h5: _replace(h5, "failed/reasons", np.arange(1)), "/failed must hold"),
    ],
)
def test_corrupt_attributes_and_datasets_are_one_line_errors(tmp_path, mutate, words):
    path = _complete(tmp_path)
    with h5py.File(path, "r+") as h5:
        mutate(h5)
    with pytest.raises(CacheError, match=words):
        FeatureCache.open(path)


def _replace(h5: h5py.File, name: str, data: np.ndarray) -> None:
    del h5[name]
    h5[name] = data


def test_an_unreadable_file_at_the_output_says_force(tmp_path):
    path = tmp_path / "c.h5"
    path.write_bytes(b"my own model, not HDF5")
    with pytest.raises(CacheError, match=r"not a readable HDF5 file.*Rerun with --force"):
        check_existing(path, "sha256:abc", {})


def test_complete_stale_cache_names_the_files_that_changed(tmp_path):
    path = tmp_path / "c.h5"
    manifest = {"ids": IDS, "size": [1] * 12, "mtime_ns": [2] * 12}
    _finish(_writer(path, manifest), path).close()
    changed = {**manifest, "size": [1] * 11 + [5]}
    with pytest.raises(StaleCacheError, match=r"1 file\(s\) modified: img11.png"):
        check_existing(path, "sha256:new", {}, changed)


# --- features heads can use -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 3e38])
def test_check_features_names_the_unusable_rows(bad):
    features = np.ones((10, 4), np.float32)
    features[[2, 7], 1] = bad
    with pytest.raises(
        CacheError, match=r"2 rows hold NaN, Inf or overflowing .*rows 2, 7: ids r2, r7"
    ):
        check_features(features, [f"r{k}" for k in range(10)], "c.h5")
    check_features(np.full((3, 4), 1e18, np.float32), ["a", "b", "c"], "c.h5")


def test_meta_json_records_the_dim(tmp_path):
    _partial(tmp_path / "c.h5")
    meta = json.loads((partial_path(tmp_path / "c.h5") / "meta.json").read_text())
    assert meta["dim"] == DIM and meta["fingerprint"] == "sha256:abc"
