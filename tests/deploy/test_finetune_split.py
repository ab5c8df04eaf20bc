"""finetune --val-split (one labelled folder) and --augment (Keras preprocessing layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.finetune import augment_batch, finetune
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import Split, open_source

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"


@pytest.fixture(scope="module")
def fm_model(tmp_path_factory, fashion_mnist_available):
    folder = tmp_path_factory.mktemp("fm")
    extract("fashion-mnist:train", FM_BASE, folder / "c.h5", classes="5-9", limit=200)
    export(folder / "c.h5", folder / "model.keras", head="logreg", sample=8)
    return folder / "model.keras"


def test_augment_batch_is_seeded_keeps_dtype_and_moves_pixels():
    pixels = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 1), dtype=np.uint8)
    once, again = augment_batch(pixels, (0, 0, 1)), augment_batch(pixels, (0, 0, 1))
    assert once.dtype == np.uint8 and once.shape == pixels.shape
    np.testing.assert_array_equal(once, again)
    assert not np.array_equal(once, pixels)
    assert not np.array_equal(once, augment_batch(pixels, (0, 1, 1)))  # next epoch differs


def test_only_training_batches_are_augmented(fashion_mnist_available):
    from bottleneck_transfer.deploy.finetune import ImageBatches

    source = open_source("fashion-mnist:test", classes="5-9", limit=16)
    common = ((28, 28), 1, 8)
    plain = ImageBatches(source, np.arange(5), *common)
    moved = ImageBatches(source, np.arange(5), *common, augment=True)
    (x_plain, y_plain), (x_moved, y_moved) = plain[0], moved[0]
    np.testing.assert_array_equal(y_plain, y_moved)
    assert x_plain.shape == x_moved.shape and not np.array_equal(x_plain, x_moved)


def test_finetune_on_one_folder_with_val_split_and_augment(fm_model, tmp_path):
    out = tmp_path / "tuned.keras"
    spec = "fashion-mnist:test"
    result = finetune(
        fm_model,
        spec,
        out=out,
        val_split=0.25,
        augment=True,
        classes="5-9",
        limit=80,
        epochs=1,
        unfreeze=1,
        batch_size=16,
        seed=2,
        progress=False,
    )
    assert result.path == out and out.exists()
    tuned = load_exported(out).metadata["finetuned"]
    assert tuned["validation"]["val_split"] == 0.25 and tuned["validation"]["seed"] == 2
    assert tuned["validation"]["images"] == {"train": 60, "val": 20}
    assert tuned["augment"] == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation"]
    val = open_source(spec, classes="5-9", limit=80, split=Split(0.25, "val", 2))
    assert len(val) == 20  # validated on the held-out share only


def test_finetune_needs_val_or_val_split(fm_model, tmp_path):
    with pytest.raises(SourceError, match="one of the two"):
        finetune(fm_model, "fashion-mnist:test", out=tmp_path / "t.keras")
    with pytest.raises(SourceError, match="one of the two"):
        finetune(
            fm_model,
            "fashion-mnist:test",
            val="fashion-mnist:test",
            val_split=0.2,
            out=tmp_path / "t.keras",
        )
