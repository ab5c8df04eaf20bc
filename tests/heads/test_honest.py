"""Honest by default: compare refuses a test set that holds training images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import LabeledData
from click.testing import CliRunner
from heads_fixtures import blobs, write_cache

PHOTOS = {"kind": "folder", "root": "/data/photos"}


def _ids(rows: range) -> list[str]:
    return [f"cls{i % 3}/img{i:04d}.jpg" for i in rows]


@pytest.fixture()
def train(tmp_path):
    X, y = blobs(n=150, dim=8, centers=3)
    return write_cache(tmp_path / "train.h5", X, y, ids=_ids(range(150)), source_info=PHOTOS)


def test_the_training_cache_as_test_cache_is_refused(train):
    with pytest.raises(HeadError, match=r"holds 150 of the training images .*cls0/img0000.jpg"):
        compare_heads(train, train, heads=["knn"])


def test_a_copy_of_the_training_cache_is_refused(train, tmp_path):
    copy = shutil.copy(train, tmp_path / "test.h5")
    with pytest.raises(HeadError, match="holds 150 of the training images"):
        compare_heads(train, copy, heads=["knn"])


def test_a_test_cache_sharing_images_of_the_same_source_is_refused(train, tmp_path):
    X, y = blobs(n=60, dim=8, centers=3, seed=1)
    rows = range(140, 200)  # 10 of them are training images
    test = write_cache(
        tmp_path / "test.h5", X, y, ids=_ids(rows), source="held-out", source_info=PHOTOS
    )
    with pytest.raises(HeadError) as error:
        compare_heads(train, test, heads=["knn"])
    message = str(error.value)
    assert "holds 10 of the training images" in message and "cls2/img0140.jpg" in message
    assert "\n" not in message and "--cv" in message


def test_the_same_ids_under_another_root_or_image_array_are_other_images(train, tmp_path):
    X, y = blobs(n=150, dim=8, centers=3, seed=1)
    elsewhere = {"kind": "folder", "root": "/data/other-photos"}
    test = write_cache(tmp_path / "test.h5", X, y, ids=_ids(range(150)), source_info=elsewhere)
    assert compare_heads(train, test, heads=["knn"], n_bootstrap=100).mode == "holdout"
    arrays = [{"kind": "fashion-mnist", "images_sha256": f"sha256:{part}"} for part in "ab"]
    ids = [f"array:{i}" for i in range(150)]
    train_arrays, test_arrays = (
        write_cache(tmp_path / f"{name}.h5", X, y, ids=ids, source_info=info)
        for name, info in zip(("train-a", "test-b"), arrays, strict=True)
    )
    assert compare_heads(train_arrays, test_arrays, heads=["knn"], n_bootstrap=100)


def test_identical_arrays_are_refused():
    X, y = blobs(n=90, dim=8, centers=3)
    data = LabeledData.from_arrays(X, y)
    with pytest.raises(HeadError, match="holds 90 of the training images"):
        compare_heads(data, LabeledData.from_arrays(X.copy(), y.copy()), heads=["knn"])
    other = LabeledData.from_arrays(X + np.float32(0.5), y)
    assert compare_heads(data, other, heads=["knn"], n_bootstrap=100).mode == "holdout"


def test_cli_prints_the_refusal_as_one_line(train):
    result = CliRunner().invoke(cli, ["compare", str(train), "--test", str(train), "--quiet"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the test cache")
