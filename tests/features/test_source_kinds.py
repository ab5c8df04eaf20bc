"""Source kinds beyond folders: each gives the class folder's features for the same images
(rows matched by id, relative comparison), and bad members are recorded by id, never fatal."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import ImageError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from feature_checks import assert_features_close

PIXELS = {"weights": None, "image_size": 16, "batch_size": 4, "progress": False}


def _key(item_id: str) -> str:
    return item_id.rsplit(".", 1)[0]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """The class folder's images as WebDataset samples: ``{key}.{ext}`` and ``{key}.cls``."""
    source = open_source(folder)
    with tarfile.open(out, "w") as tar:
        for item in source.items:
            _add(tar, item.id, item.path.read_bytes())
            _add(tar, _key(item.id) + ".cls", source.class_names[item.label].encode())
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return out


def _by_id(path: Path, key=lambda i: i) -> dict[str, tuple[np.ndarray, int]]:
    with FeatureCache.open(path) as cache:
        names = cache.class_names
        return {
            key(i): (row, names[label])
            for i, row, label in zip(cache.ids, cache.features, cache.labels, strict=True)
        }


def test_a_tar_shard_gives_the_class_folders_features(photo_folder, tmp_path):
    shard = write_shard(photo_folder, tmp_path / "photos.tar")
    folder = extract(photo_folder, "pixels", tmp_path / "folder.h5", **PIXELS)
    tar = extract(shard, "pixels", tmp_path / "tar.h5", **PIXELS)
    assert tar.rows == folder.rows == 9
    want, got = _by_id(folder.path, _key), _by_id(tar.path)
    assert sorted(got) == sorted(want)
    for key, (row, name) in want.items():
        assert got[key][1] == name
        assert_features_close(got[key][0], row)
    with FeatureCache.open(tar.path) as cache:
        assert cache.provenance["source"]["kind"] == "webdataset"


def test_an_undecodable_member_is_failed_by_its_key_and_skipped(photo_folder, tmp_path):
    extra = {"objects/broken.jpg": b"not a jpeg", "objects/broken.cls": b"objects"}
    shard = write_shard(photo_folder, tmp_path / "photos.tar", extra)
    result = extract(shard, "pixels", tmp_path / "tar.h5", **PIXELS)
    assert result.rows == 9
    assert [i for i, _ in result.failed] == ["objects/broken"]
    with pytest.raises(ImageError, match="objects/broken"):
        extract(shard, "pixels", tmp_path / "strict.h5", strict=True, **PIXELS)


def test_shards_by_brace_pattern_and_a_truncated_shard_is_one_failed_item(photo_folder, tmp_path):
    write_shard(photo_folder, tmp_path / "s-000.tar")
    data = (tmp_path / "s-000.tar").read_bytes()
    (tmp_path / "s-001.tar").write_bytes(b"\x00" * 10 + data[700:1500])
    source = open_source(str(tmp_path / "s-{000..001}.tar"))
    assert source.kind == "webdataset"
    assert len(source) == 10
    assert source.items[-1].id == "s-001.tar" and "cannot list" in source.items[-1].error
    result = extract(source, "pixels", tmp_path / "c.h5", **PIXELS)
    assert result.rows == 9 and [i for i, _ in result.failed] == ["s-001.tar"]


def test_arrays_in_memory_give_the_npz_files_features(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 20, 20, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    from bottleneck_transfer.features.sources import open_arrays

    memory = open_arrays(images, labels, class_names=["a", "b", "c"])
    assert memory.kind == "arrays" and memory.class_names == ["a", "b", "c"]
    got = extract(memory, "pixels", tmp_path / "m.h5", **PIXELS)
    want = extract(tmp_path / "a.npz", "pixels", tmp_path / "f.h5", **PIXELS)
    with FeatureCache.open(got.path) as a, FeatureCache.open(want.path) as b:
        assert a.ids == b.ids == [f"array:{i}" for i in range(12)]
        np.testing.assert_array_equal(a.labels, b.labels)
        assert_features_close(a.features, b.features)
    same = open_arrays(images, labels, class_names=["a", "b", "c"])
    assert extract(same, "pixels", got.path, **PIXELS).up_to_date
