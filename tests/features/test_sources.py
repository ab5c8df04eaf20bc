"""Tests for ``features.sources``: folders, CSV manifests, NPZ/IDX arrays, Fashion-MNIST,
class subsets, limits, and the source identity that guards caches against changed inputs."""

from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features.sources import (
    FASHION_MNIST_CLASSES,
    Item,
    Source,
    open_source,
    read_idx,
    reopen_source,
)
from bottleneck_transfer.fingerprint import canonical_json
from PIL import Image

PHOTO_IDS = [
    "animals/chelsea.jpg",
    "animals/horse.png",
    "animals/wild/cat_small.JPG",
    "objects/camera.png",
    "objects/coffee.jpg",
    "objects/coins.jpg",
    "objects/rocket.png",
    "people/astronaut.jpg",
    "people/astronaut_small.png",
]
PHOTO_LABELS = [0, 0, 0, 1, 1, 1, 1, 2, 2]


def _png(path: Path, value: int = 0, size: tuple[int, int] = (6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def _write_idx(path: Path, array: np.ndarray) -> Path:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def _ids(source: Source) -> list[str]:
    return [item.id for item in source.items]


def _labels(source: Source) -> list[int]:
    return [item.label for item in source.items]


@pytest.fixture
def photo_copy(photo_folder, tmp_path) -> Path:
    """A private copy of the photo tree (mtimes preserved) that a test may modify."""
    return Path(shutil.copytree(photo_folder, tmp_path / "photos"))


# --- class-folder trees and flat folders ---------------------------------------------------


def test_class_folder_tree(photo_folder):
    source = open_source(photo_folder)
    assert source.kind == "class-folders"
    assert source.class_names == ["animals", "objects", "people"]
    assert _ids(source) == PHOTO_IDS  # nested found; hidden and .txt ignored; POSIX, relative
    assert _labels(source) == PHOTO_LABELS
    assert len(source) == 9
    assert source.root == str(photo_folder.resolve())
    for item in source.items:
        assert item.path is not None and item.path.is_absolute()
        assert item.path == photo_folder.absolute() / item.id
        assert item.index is None


def test_folder_order_is_deterministic(photo_folder):
    first, second = open_source(photo_folder), open_source(str(photo_folder))
    assert first.items == second.items
    for label in range(3):
        ids = [i.id for i in first.items if i.label == label]
        assert ids == sorted(ids)


def test_hidden_entries_are_ignored_in_class_folders(tmp_path):
    _png(tmp_path / "b" / "y.png")
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "a" / "deep" / "deeper" / "z.png")
    _png(tmp_path / ".stray.png")
    _png(tmp_path / ".cache" / "hidden-class.png")
    _png(tmp_path / "a" / ".thumbs" / "hidden-dir.png")
    source = open_source(tmp_path)
    assert source.class_names == ["a", "b"]
    assert _ids(source) == ["a/deep/deeper/z.png", "a/x.png", "b/y.png"]
    assert _labels(source) == [0, 0, 1]


def test_top_level_images_beside_class_folders_are_refused(tmp_path):
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "y.png")
    _png(tmp_path / "stray.png")
    with pytest.raises(SourceError, match=r"top level \(stray.png\) and image subfolders \(a, b\)"):
        open_source(tmp_path)


def test_flat_folder_with_a_subfolder_without_images_stays_flat(tmp_path):
    # `bottleneck extract photos -o photos/caches/c.h5` puts a subfolder into the source.
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.png")
    (tmp_path / "caches" / "c.h5.partial").mkdir(parents=True)
    (tmp_path / "caches" / "c.h5").write_bytes(b"not an image")
    source = open_source(tmp_path)
    assert source.kind == "folder"
    assert _ids(source) == ["a.png", "b.png"] and _labels(source) == [-1, -1]


def _listing_refused(monkeypatch, locked: str) -> None:
    """Make listing the folder named ``locked`` fail as a permission error would."""
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_subfolder_is_a_named_failure(tmp_path, monkeypatch):
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "y.png")
    _png(tmp_path / "b" / "locked" / "z.png")
    _listing_refused(monkeypatch, "locked")
    source = open_source(tmp_path)
    assert _ids(source) == ["a/x.png", "b/locked/", "b/y.png"]
    assert _labels(source) == [0, 1, 1]
    with pytest.raises(ImageError, match="cannot list this folder \\(Permission denied\\)"):
        source.load(source.items[1], (4, 4))
    assert source.load(source.items[2], (4, 4)).shape == (4, 4, 3)


def test_flat_folder_is_unlabeled(tmp_path):
    for name in ["b.png", "a.PNG", "c.jpeg", ".hidden.png"]:
        _png(tmp_path / name)
    (tmp_path / "readme.md").write_text("x", encoding="utf-8")
    Image.new("RGB", (4, 4)).save(tmp_path / "c.jpeg")
    source = open_source(tmp_path)
    assert source.kind == "folder"
    assert source.class_names == []
    assert _ids(source) == ["a.PNG", "b.png", "c.jpeg"]
    assert _labels(source) == [-1, -1, -1]


def test_relative_spec_gives_paths_independent_of_cwd(photo_folder, monkeypatch, tmp_path):
    monkeypatch.chdir(photo_folder.parent)
    source = open_source(photo_folder.name)
    assert source.root == str(photo_folder.resolve())
    monkeypatch.chdir(tmp_path)
    item = source.items[0]
    assert item.path.is_absolute()
    assert source.load(item, (8, 8)).shape == (8, 8, 3)


@pytest.mark.parametrize("content", ["empty", "no-images"])
def test_folder_without_images_is_a_source_error(tmp_path, content):
    if content == "no-images":
        (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
        (tmp_path / "cls").mkdir()
        (tmp_path / "cls" / "data.csv.bak").write_text("x", encoding="utf-8")
    with pytest.raises(SourceError, match="no images found"):
        open_source(tmp_path)


def test_missing_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope")


def test_unknown_file_kind_is_a_source_error(tmp_path):
    path = _png(tmp_path / "single.png")
    with pytest.raises(SourceError, match="cannot tell what"):
        open_source(path)


def test_load_decodes_file_items_and_reports_missing_files(photo_copy):
    source = open_source(photo_copy)
    out = source.load(source.items[0], (16, 24))
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    assert source.load(source.items[0], (16, 24), channels=1).shape == (16, 24, 1)
    (photo_copy / source.items[0].id).unlink()
    with pytest.raises(ImageError, match="not found"):
        source.load(source.items[0], (16, 24))
    with pytest.raises(ImageError, match="too large"):
        source.load(source.items[-2], (16, 24), max_pixels=100)


# --- CSV manifests -------------------------------------------------------------------------


def test_csv_manifest_paths_relative_to_the_csv(tmp_path, monkeypatch):
    _png(tmp_path / "data" / "img" / "a.png", 10)
    _png(tmp_path / "data" / "img" / "b.png", 20)
    _png(tmp_path / "data" / "img" / "c.png", 30)
    manifest = tmp_path / "data" / "list.csv"
    manifest.write_text("path,label\nimg/b.png,dog\nimg/a.png,cat\nimg/c.png,dog\n", "utf-8")
    monkeypatch.chdir(tmp_path)  # relative spec, resolved against the CSV's folder
    source = open_source("data/list.csv")
    assert source.kind == "csv"
    assert source.class_names == ["cat", "dog"]
    assert _ids(source) == ["img/b.png", "img/a.png", "img/c.png"]  # manifest order
    assert _labels(source) == [1, 0, 1]
    monkeypatch.chdir("/")
    for item in source.items:
        assert item.path == (tmp_path / "data" / item.id).absolute()
    assert source.load(source.items[1], (2, 2))[0, 0, 0] == 10


def test_csv_manifest_label_column_is_optional(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("path\na.png\nmissing.png\n", "utf-8")
    source = open_source(tmp_path / "m.csv")
    assert source.class_names == []
    assert _labels(source) == [-1, -1]
    assert _ids(source) == ["a.png", "missing.png"]  # missing files fail at decode, not here


def test_csv_numeric_labels_sort_numerically(tmp_path):
    rows = [("a.png", "10"), ("b.png", "2"), ("c.png", "1"), ("d.png", "2")]
    text = "path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows)
    (tmp_path / "m.csv").write_text(text, "utf-8")
    source = open_source(tmp_path / "m.csv")
    assert source.class_names == ["1", "2", "10"]
    assert _labels(source) == [2, 1, 0, 1]


def test_csv_tolerates_bom_spaces_blank_labels_extra_fields_and_absolute_paths(tmp_path):
    absolute = _png(tmp_path / "elsewhere" / "abs.png")
    text = (
        "\ufeff path , label \n"
        " a.png , cat \n"
        "b.png,\n"
        f"{absolute},dog\n"
        "c.png,cat,unexpected extra field\n"
        ",cat\n"
    )
    (tmp_path / "m.csv").write_text(text, "utf-8")
    source = open_source(tmp_path / "m.csv")
    assert source.class_names == ["cat", "dog"]
    assert _ids(source) == ["a.png", "b.png", str(absolute), "c.png"]  # blank path skipped
    assert _labels(source) == [0, -1, 1, 0]
    assert source.items[2].path == absolute


def test_csv_extra_field_in_first_row_is_ignored(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("path,label\na.png,cat,extra\n", "utf-8")
    source = open_source(tmp_path / "m.csv")
    assert _ids(source) == ["a.png"] and source.class_names == ["cat"]


@pytest.mark.parametrize("body", ["file,label\na.png,cat\n", "file,label\n"])
def test_csv_without_path_column_names_the_columns(tmp_path, body):
    (tmp_path / "m.csv").write_text(body, "utf-8")
    with pytest.raises(SourceError, match=r"no 'path' column \(columns: file, label\)"):
        open_source(tmp_path / "m.csv")


def test_csv_with_no_rows_has_no_images(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\n", "utf-8")
    with pytest.raises(SourceError, match="no images found"):
        open_source(tmp_path / "m.csv")


def test_csv_that_is_not_utf8_is_a_source_error(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"path\n\xff\xfe\xfa.png\n")
    with pytest.raises(SourceError, match="cannot read manifest"):
        open_source(tmp_path / "m.csv")


def test_csv_listing_a_file_twice_is_refused_naming_the_lines(tmp_path):
    text = "path,label\na.png,cat\nb.png,dog\n./a.png,dog\nc.png,cat\nb.png,dog\n"
    (tmp_path / "m.csv").write_text(text, "utf-8")
    with pytest.raises(
        SourceError,
        match=r"lists 2 file\(s\) more than once: a.png on lines 2, 4; b.png on lines 3, 6",
    ):
        open_source(tmp_path / "m.csv")


def test_csv_label_minus_one_means_unlabeled(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,1\nb.png,-1\nc.png,0\n", "utf-8")
    source = open_source(tmp_path / "m.csv")
    assert source.class_names == ["0", "1"]
    assert _labels(source) == [1, -1, 0]


# --- NPZ arrays ----------------------------------------------------------------------------


@pytest.fixture
def npz_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 5, 7), dtype=np.uint8), np.array([2, 0, 1, 2, 0, 1])


def test_npz_images_labels_and_class_names(tmp_path, npz_arrays):
    images, labels = npz_arrays
    path = tmp_path / "d.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["a", "b", "c"]))
    source = open_source(path)
    assert source.kind == "npz"
    assert source.class_names == ["a", "b", "c"]
    assert _labels(source) == labels.tolist()
    assert _ids(source) == [f"array:{i}" for i in range(6)]
    assert [item.index for item in source.items] == list(range(6))
    assert all(item.path is None for item in source.items)
    np.testing.assert_array_equal(source.load(source.items[3], (5, 7), 1)[:, :, 0], images[3])
    assert source.manifest() is None
    assert source.identity()["npz_sha256"].startswith("sha256:")


@pytest.mark.parametrize(
    ("labels", "words"), [([0.0, 1.5, 1.0], "label 1 is 1.5"), ([0, np.nan, 1], "label 1 is nan")]
)
def test_npz_fractional_labels_are_refused_not_truncated(tmp_path, labels, words):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((3, 4, 4), np.uint8), labels=np.array(labels))
    with pytest.raises(SourceError, match=words):
        open_source(path)


def test_npz_whole_float_labels_are_class_indices(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((3, 4, 4), np.uint8), labels=np.array([1.0, 0.0, -1.0]))
    assert _labels(open_source(path)) == [1, 0, -1]


def test_npz_x_y_keys_and_default_class_names(tmp_path, npz_arrays):
    images, labels = npz_arrays
    np.savez(tmp_path / "d.npz", x=images, y=labels)
    source = open_source(tmp_path / "d.npz")
    assert source.class_names == ["0", "1", "2"]
    assert _labels(source) == labels.tolist()


def test_npz_without_labels_is_unlabeled_and_rgb_arrays_work(tmp_path):
    images = np.zeros((3, 4, 4, 3), np.uint8)
    images[1, ..., 0] = 255
    np.savez(tmp_path / "d.npz", images=images)
    source = open_source(tmp_path / "d.npz")
    assert source.class_names == [] and _labels(source) == [-1, -1, -1]
    np.testing.assert_array_equal(source.load(source.items[1], (4, 4))[0, 0], [255, 0, 0])


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _PickleTrap:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_npz_with_object_array_fails_without_unpickling(tmp_path):
    sentinel = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([_PickleTrap(str(sentinel))], dtype=object))
    with pytest.raises(SourceError, match="without pickle"):
        open_source(path)
    assert not sentinel.exists()
    with np.load(path, allow_pickle=True) as data:  # the trap is live when pickle is allowed
        data["images"]
    assert sentinel.exists()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: np.savez(p, pixels=np.zeros((2, 3, 3), np.uint8)), "no 'images'"),
        (lambda p: np.savez(p, images=np.zeros((2, 3, 3), np.uint8), y=[0]), "2 images but 1"),
        (lambda p: np.savez(p, images=np.zeros((3, 3), np.uint8)), "expected"),
        (
            lambda p: np.savez(p, x=np.zeros((2, 3, 3), np.uint8), y=[0, 3], class_names=["a"]),
            "labels range",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "cannot read"),
        (lambda p: p.write_bytes(b""), "cannot read"),
        (lambda p: p.write_bytes(_npy_bytes(np.zeros((2, 3, 3), np.uint8))), "single array"),
    ],
    ids=["no-images", "label-count", "bad-ndim", "labels-beyond-names", "bad-zip", "empty", "npy"],
)
def test_bad_npz_is_a_source_error(tmp_path, make, words):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(SourceError, match=words):
        open_source(path)


# --- IDX arrays ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_images_with_labels_beside(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 5, 6), dtype=np.uint8)
    labels = np.arange(12) % 4
    images_path = _write_idx(tmp_path / f"toy-images-idx3-ubyte{suffix}", images)
    _write_idx(tmp_path / f"toy-labels-idx1-ubyte{suffix}", labels)
    np.testing.assert_array_equal(read_idx(images_path), images)
    source = open_source(images_path)
    assert source.kind == "idx"
    assert source.class_names == ["0", "1", "2", "3"]
    assert _labels(source) == labels.tolist()
    assert _ids(source) == [f"array:{i}" for i in range(12)]
    np.testing.assert_array_equal(source.load(source.items[5], (5, 6), 1)[:, :, 0], images[5])
    assert set(source.identity()) >= {"images_sha256", "labels_sha256", "selection"}


def test_idx_without_labels_is_unlabeled(tmp_path):
    path = _write_idx(tmp_path / "only-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    source = open_source(path)
    assert _labels(source) == [-1, -1, -1] and source.class_names == []
    assert "labels_sha256" not in source.identity()


def _good_idx_bytes() -> bytes:
    return bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (4, 3, 3)) + bytes(36)


@pytest.mark.parametrize(
    ("name", "payload", "words"),
    [
        ("cut-images-idx3-ubyte", _good_idx_bytes()[:-5], "truncated"),
        ("long-images-idx3-ubyte", _good_idx_bytes() + b"xx", "header says"),
        ("head-images-idx3-ubyte", _good_idx_bytes()[:9], "truncated"),
        ("gz-images-idx3-ubyte.gz", gzip.compress(_good_idx_bytes())[:-12], "truncated"),
        ("notgz-images-idx3-ubyte.gz", _good_idx_bytes(), "cannot read IDX"),
        ("float-images-idx3-ubyte", b"\x00\x00\x0d\x03" + _good_idx_bytes()[4:], "unsigned-byte"),
        ("tiny-images-idx3-ubyte", b"\x00\x00", "unsigned-byte"),
    ],
    ids=["cut", "too-long", "cut-header", "cut-gzip", "not-gzip", "not-uint8", "tiny"],
)
def test_bad_idx_is_a_source_error(tmp_path, name, payload, words):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(SourceError, match=words):
        open_source(path)
    with pytest.raises(SourceError):
        read_idx(path)


def test_idx_label_count_mismatch(tmp_path):
    path = _write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    _write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(SourceError, match="3 images but 2 labels"):
        open_source(path)


# --- Fashion-MNIST -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_test(fashion_mnist_available) -> Source:
    return open_source("fashion-mnist:test")


def test_fashion_mnist_train_and_test(fashion_mnist_available, fashion_test):
    train = open_source("fashion-mnist:train")
    assert len(train) == 60_000 and len(fashion_test) == 10_000
    for source in (train, fashion_test):
        assert source.kind == "fashion-mnist"
        assert source.class_names == FASHION_MNIST_CLASSES
        assert len(source.class_names) == 10
        assert source.arrays.shape[1:] == (28, 28)
        assert source.items[0] == Item("array:0", source.items[0].label, None, 0)
        assert source.items[-1].id == f"array:{len(source) - 1}"
        assert set(_labels(source)) == set(range(10))
    assert np.bincount(_labels(fashion_test)).tolist() == [1000] * 10
    out = fashion_test.load(fashion_test.items[7], (28, 28), 1)
    np.testing.assert_array_equal(out[:, :, 0], fashion_test.arrays[7])
    assert fashion_test.load(fashion_test.items[7], (32, 32)).shape == (32, 32, 3)
    assert train.identity()["images_sha256"] != fashion_test.identity()["images_sha256"]


def test_fashion_mnist_class_range_renumbers_and_keeps_indices(fashion_test):
    subset = open_source("fashion-mnist:test", classes="5-9")
    assert subset.class_names == FASHION_MNIST_CLASSES[5:]
    assert len(subset) == 5000
    assert set(_labels(subset)) == {0, 1, 2, 3, 4}
    for item in subset.items[::97]:
        original = fashion_test.items[item.index]
        assert item.id == original.id == f"array:{item.index}"
        assert item.label == original.label - 5
    indices = [item.index for item in subset.items]
    assert indices == sorted(indices)


@pytest.mark.parametrize(
    "classes",
    ["Sandal,9", ["Ankle boot", "Sandal"], [5, 9], "9, Sandal", ("5", "Ankle boot")],
)
def test_fashion_mnist_classes_by_name_and_index(fashion_test, classes):
    subset = open_source("fashion-mnist:test", classes=classes)
    assert subset.class_names == ["Sandal", "Ankle boot"]  # class order, not request order
    assert len(subset) == 2000
    for item in subset.items[::50]:
        assert fashion_test.items[item.index].label == (5, 9)[item.label]


@pytest.mark.parametrize(
    ("classes", "words"),
    [
        ("Sandals", "Received:"),
        ("10", "Received:"),
        ([-1], "Received:"),
        ("", "selects no class"),
        ("8-12", "outside"),
        ("7-3", "outside"),
    ],
)
def test_fashion_mnist_bad_classes(fashion_test, classes, words):
    with pytest.raises(SourceError, match=words):
        open_source("fashion-mnist:test", classes=classes)


def test_limit_spreads_evenly_and_is_deterministic(fashion_test):
    first = open_source("fashion-mnist:test", limit=5)
    assert _ids(first) == ["array:0", "array:2500", "array:5000", "array:7499", "array:9999"]
    assert first.items == open_source("fashion-mnist:test", limit=5).items
    assert len(open_source("fashion-mnist:test", limit=1000)) == 1000
    assert len(open_source("fashion-mnist:test", limit=10**6)) == 10_000
    both = open_source("fashion-mnist:test", classes="Bag", limit=3)
    assert both.class_names == ["Bag"] and _labels(both) == [0, 0, 0]
    assert all(fashion_test.items[i.index].label == 8 for i in both.items)


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_must_be_positive(photo_folder, limit):
    with pytest.raises(SourceError, match="Received: limit="):
        open_source(photo_folder, limit=limit)


def test_limit_on_folders(photo_folder):
    source = open_source(photo_folder, limit=3)
    assert _ids(source) == [PHOTO_IDS[0], PHOTO_IDS[4], PHOTO_IDS[8]]
    assert source.class_names == ["animals", "objects", "people"]


def test_class_subset_on_folders(photo_folder):
    source = open_source(photo_folder, classes="people,animals")
    assert source.class_names == ["animals", "people"]
    assert _labels(source) == [0, 0, 0, 1, 1]


def test_fashion_mnist_unknown_split():
    with pytest.raises(SourceError, match="train\\|test"):
        open_source("fashion-mnist:validation")


def test_fashion_mnist_missing_points_to_apt_get(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(SourceError, match="apt-get install dataset-fashion-mnist"):
        open_source("fashion-mnist:train")
    # Half an install (images but no labels) is the same error, not a FileNotFoundError.
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(SourceError, match="apt-get"):
        open_source("fashion-mnist:test")


def test_fashion_mnist_dir_from_environment(tmp_path, monkeypatch):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 0, 4]))
    monkeypatch.setenv("BOTTLENECK_FASHION_MNIST_DIR", str(tmp_path))
    source = open_source("fashion-mnist:test")
    assert source.root == str(tmp_path)
    assert source.class_names == FASHION_MNIST_CLASSES
    assert _labels(source) == [9, 0, 4]
    described = source.describe()
    assert reopen_source(described).items == source.items


# --- identity, manifest, reopen ------------------------------------------------------------


def test_identity_is_stable_and_does_not_include_the_root(photo_copy):
    source = open_source(photo_copy)
    identity = source.identity()
    assert identity == open_source(photo_copy).identity()
    assert identity["kind"] == "class-folders"
    assert identity["n_items"] == 9
    assert identity["class_names"] == ["animals", "objects", "people"]
    assert "root" not in identity and str(photo_copy) not in canonical_json(identity)
    assert source.describe()["root"] == str(photo_copy.resolve())


def test_identity_changes_when_a_file_is_touched(photo_copy):
    before = open_source(photo_copy).identity()
    path = photo_copy / "objects" / "coffee.jpg"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert open_source(photo_copy).identity() != before


def test_identity_changes_when_a_file_is_rewritten(photo_copy):
    before = open_source(photo_copy).identity()
    path = photo_copy / "objects" / "coffee.jpg"
    stat = path.stat()
    Image.open(path).convert("L").save(path, format="JPEG")  # new content, new size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    assert path.stat().st_size != stat.st_size
    assert open_source(photo_copy).identity() != before


def test_identity_changes_when_a_file_is_added_or_removed(photo_copy):
    before = open_source(photo_copy).identity()
    extra = photo_copy / "people" / "extra.png"
    shutil.copy2(photo_copy / "objects" / "rocket.png", extra)
    added = open_source(photo_copy).identity()
    assert added != before and added["n_items"] == 10
    extra.unlink()
    assert open_source(photo_copy).identity() == before
    (photo_copy / "animals" / "horse.png").unlink()
    removed = open_source(photo_copy).identity()
    assert removed != before and removed["n_items"] == 8


def test_identity_changes_when_a_file_changes_class(photo_copy):
    before = open_source(photo_copy).identity()
    shutil.move(photo_copy / "objects" / "coins.jpg", photo_copy / "people" / "coins.jpg")
    assert open_source(photo_copy).identity() != before


def test_identity_survives_moving_or_copying_the_root(photo_copy, tmp_path):
    before = open_source(photo_copy)
    identity, old_root = before.identity(), before.describe()["root"]  # stat before moving
    copied = Path(shutil.copytree(photo_copy, tmp_path / "elsewhere" / "copy"))
    moved = Path(shutil.move(photo_copy, tmp_path / "moved"))
    for root in (copied, moved):
        after = open_source(root)
        assert after.identity() == identity
        assert after.describe()["root"] not in (old_root, str(photo_copy))


def test_identity_hidden_and_non_image_files_do_not_count(photo_copy):
    before = open_source(photo_copy).identity()
    (photo_copy / "objects" / "notes.txt").write_text("edited", encoding="utf-8")
    (photo_copy / "animals" / ".hidden.jpg").unlink()
    (photo_copy / "stray-root-notes.md").write_bytes(b"x")
    assert open_source(photo_copy).identity() == before


def test_identity_of_array_sources_follows_content_and_selection(tmp_path, npz_arrays):
    images, labels = npz_arrays
    path = tmp_path / "d.npz"
    np.savez(path, images=images, labels=labels)
    base = open_source(path).identity()
    assert open_source(path).identity() == base
    assert open_source(path, limit=3).identity() != base
    assert open_source(path, classes="1,2").identity() != base
    images[0, 0, 0] ^= 1
    np.savez(path, images=images, labels=labels)
    assert open_source(path).identity() != base


def test_manifest_sizes_and_mtimes(photo_copy):
    source = open_source(photo_copy)
    manifest = source.manifest()
    assert manifest["ids"] == PHOTO_IDS
    for item, size, mtime in zip(source.items, manifest["size"], manifest["mtime_ns"], strict=True):
        stat = (photo_copy / item.id).stat()
        assert size == stat.st_size > 0
        assert mtime == stat.st_mtime_ns
    assert source.identity(manifest) == source.identity()
    (photo_copy / PHOTO_IDS[0]).unlink()
    after = source.manifest()
    assert after["size"][0] == -1 and after["mtime_ns"][0] == -1
    assert after["size"][1:] == manifest["size"][1:]


def test_reopen_from_description_gives_the_same_items(photo_folder, tmp_path, npz_arrays):
    _png(tmp_path / "img" / "a.png")
    (tmp_path / "m.csv").write_text("path,label\nimg/a.png,x\n", "utf-8")
    images, labels = npz_arrays
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    _write_idx(tmp_path / "t-images-idx3-ubyte.gz", images)
    sources = [
        open_source(photo_folder),
        open_source(photo_folder, classes="objects,people", limit=4),
        open_source(tmp_path / "m.csv"),
        open_source(tmp_path / "d.npz", classes=[0, 2], limit=3),
        open_source(tmp_path / "t-images-idx3-ubyte.gz"),
    ]
    for source in sources:
        described = source.describe()
        canonical_json(described)  # JSON-able provenance
        again = reopen_source(described)
        assert again.items == source.items
        assert again.class_names == source.class_names
        assert again.identity() == source.identity()


def test_reopen_fashion_mnist_with_subset(fashion_test):
    source = open_source("fashion-mnist:test", classes="5-9", limit=20)
    described = source.describe()
    assert described["options"] == {"spec": "fashion-mnist:test", "classes": "5-9", "limit": 20}
    assert reopen_source(described).items == source.items


def test_reopen_without_a_location_is_a_source_error():
    with pytest.raises(SourceError, match="does not say where"):
        reopen_source({"kind": "folder"})
