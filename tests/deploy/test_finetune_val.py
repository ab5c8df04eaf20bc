"""finetune validates on held-out images only (issue 22.6): grouped --val-split, disjoint --val."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from bottleneck_transfer.deploy.finetune import validation_sources
from bottleneck_transfer.errors import SourceError
from duplicate_fixtures import EXACT, write_copies_tree
from PIL import Image


@pytest.fixture(scope="module")
def tree(tmp_path_factory, fashion_mnist_available):
    return write_copies_tree(tmp_path_factory.mktemp("finetune-val"), fashion_mnist_available)


def _ids(source):
    return {item.id for item in source.items}


def test_val_split_is_carved_from_training_images_with_copies_whole(tree):
    for seed in range(6):
        parts = validation_sources(tree, None, val_split=0.3, seed=seed)
        train, val = _ids(parts["train"]), _ids(parts["val"])
        assert not train & val and len(train | val) == 21
        assert sum(set(EXACT) <= side for side in (train, val)) == 1, seed  # copies together
        assert {item.label for item in parts["val"].items} == {0, 1}  # stratified
        assert val == _ids(validation_sources(tree, None, val_split=0.3, seed=seed)["val"])


def test_a_val_folder_holding_a_training_image_is_refused(tree, tmp_path):
    val = tmp_path / "val"
    (val / "shirts").mkdir(parents=True)
    (val / "bags").mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(noise).save(val / "bags" / "new.png")  # an image TRAIN does not hold
    shutil.copyfile(tree / "shirts" / "fm0.png", val / "shirts" / "renamed.png")
    with pytest.raises(SourceError, match=r"shares 1 image\(s\) with the training images") as info:
        validation_sources(tree, val, val_split=None)
    assert "e.g. shirts/renamed.png = shirts/fm0.png" in str(info.value)
    assert "\n" not in str(info.value)
    (val / "shirts" / "renamed.png").unlink()
    parts = validation_sources(tree, val, val_split=None)
    assert _ids(parts["val"]) == {"bags/new.png"} and len(parts["train"]) == 21
