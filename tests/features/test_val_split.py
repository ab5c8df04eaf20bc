"""One labelled folder is enough: a stratified, seeded, recorded train/validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.sources import Split, holdout_mask, open_source, reopen_source
from click.testing import CliRunner


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """30 labelled 8x8 images: 12, 10 and 8 per class."""
    path = tmp_path_factory.mktemp("npz") / "imgs.npz"
    labels = np.repeat([0, 1, 2], [12, 10, 8])
    images = np.random.default_rng(0).integers(0, 255, (30, 8, 8), dtype=np.uint8)
    np.savez(path, images=images, labels=labels, class_names=["a", "b", "c"])
    return path


def test_holdout_mask_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 20, 3])
    held = holdout_mask(labels, 0.2, seed=0)
    assert [int(held[labels == c].sum()) for c in range(3)] == [10, 4, 1]
    np.testing.assert_array_equal(held, holdout_mask(labels, 0.2, seed=0))
    assert not np.array_equal(held, holdout_mask(labels, 0.2, seed=1))
    assert holdout_mask(np.array([0, 0, 1, 1]), 0.01).sum() == 2  # one per class at least
    assert (~holdout_mask(np.array([0, 0, 1, 1]), 0.99)).sum() == 2  # and one left to train


def test_holdout_mask_refuses_what_it_cannot_split():
    with pytest.raises(SourceError, match="needs labelled images; 1 are unlabelled"):
        holdout_mask(np.array([0, 0, 1, 1, -1]), 0.2)
    with pytest.raises(SourceError, match="at least 2 images per class; class 1 has 1"):
        holdout_mask(np.array([0, 0, 1]), 0.2)
    with pytest.raises(SourceError, match=r"Received: val_split=1\.5"):
        Split(1.5)


def test_split_parts_are_disjoint_ordered_recorded_and_reopen(npz):
    whole = open_source(npz)
    train = open_source(npz, split=Split(0.25, "train", seed=3))
    val = open_source(npz, split=Split(0.25, "val", seed=3))
    train_ids, val_ids = [i.id for i in train.items], [i.id for i in val.items]
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == sorted(i.id for i in whole.items)
    assert train_ids == [i.id for i in whole.items if i.id in set(train_ids)]  # source order
    assert [sum(i.label == c for i in val.items) for c in range(3)] == [3, 2, 2]
    described = val.describe()
    assert described["options"]["split"] == {"fraction": 0.25, "part": "val", "seed": 3}
    assert train.identity() != val.identity()  # other images, other fingerprint
    assert [i.id for i in reopen_source(described).items] == val_ids


def test_extract_val_split_writes_two_recorded_caches(npz, tmp_path):
    runner = CliRunner()
    out = tmp_path / "imgs.h5"
    args = ["extract", str(npz), "--base", "pixels", "--image-size", "8", "-o", str(out)]
    done = runner.invoke(cli, [*args, "--val-split", "0.25", "--seed", "3", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["train"]["path"] == str(out)
    assert result["val"]["path"] == str(tmp_path / "imgs-val.h5")
    assert (result["train"]["rows"], result["val"]["rows"]) == (23, 7)
    with FeatureCache.open(out) as train, FeatureCache.open(tmp_path / "imgs-val.h5") as val:
        assert not set(train.ids) & set(val.ids)
        assert val.provenance["source"]["options"]["split"]["part"] == "val"
        expected = [i.id for i in open_source(npz, split=Split(0.25, "val", 3)).items]
        assert val.ids == expected
    info = runner.invoke(cli, ["info", str(tmp_path / "imgs-val.h5")])
    assert "(val part of a 0.25 split, seed 3)" in info.output
    verify = runner.invoke(cli, ["verify", str(tmp_path / "imgs-val.h5")])
    assert verify.exit_code == 0, verify.output
