"""The one decode-and-batch pipeline: pixels, order, slices, failures, fixed-shape model calls."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import ImageError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.batches import decode_batch, iter_batches
from bottleneck_transfer.features.runtimes import (
    BatchRunner,
    accelerator_devices,
    default_batch_size,
)
from bottleneck_transfer.features.sources import open_source
from feature_checks import assert_features_close
from PIL import Image

SIZE = 32


@pytest.fixture(scope="module")
def tiny_base():
    return load_base("mobilenet_v2", weights="none", image_size=SIZE)


@pytest.fixture
def folder(tmp_path):
    """Two classes of 5 noise images of varied sizes, one broken file among them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(5):
            pixels = rng.integers(0, 256, (20 + 3 * k, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    (root / "b" / "2.png").write_bytes(b"broken")
    return root


def test_batches_cover_a_slice_in_order_and_leave_bad_images_out(folder):
    source = open_source(folder)
    batches = list(iter_batches(source, (16, 16), 3, 3, start=2, stop=9, workers=2))
    assert [b.end for b in batches] == [5, 8, 9]
    ids = [item.id for b in batches for item in b.items]
    assert ids == [i.id for i in source.items[2:9] if i.id != "b/2.png"]
    assert [f for b in batches for f in b.failures] == [
        ("b/2.png", "not an image (Pillow cannot identify it)")
    ]
    pixels = np.concatenate([b.pixels for b in batches])
    assert pixels.dtype == np.uint8 and pixels.shape == (6, 16, 16, 3)
    by_id = {item.id: item for item in source.items}
    expected = np.stack([source.load(by_id[i], (16, 16), 3) for i in ids])
    np.testing.assert_array_equal(pixels, expected)


def test_decode_batch_equals_the_pipeline_in_any_order(folder):
    source = open_source(folder)
    items = source.items[::-1]
    batch = decode_batch(source, items, (12, 10), 1)
    assert batch.end is None and batch.pixels.shape == (9, 12, 10, 1)
    assert [f[0] for f in batch.failures] == ["b/2.png"]
    expected = np.stack([source.load(i, (12, 10), 1) for i in batch.items])
    np.testing.assert_array_equal(batch.pixels, expected)


def test_strict_raises_naming_the_image(folder):
    source = open_source(folder)
    with pytest.raises(ImageError, match=r"b/2.png: not an image"):
        list(iter_batches(source, (16, 16), 3, 4, strict=True, workers=2))
    with pytest.raises(ImageError, match=r"b/2.png"):
        decode_batch(source, source.items, (16, 16), 3, strict=True)


def test_prefetch_zero_and_one_worker_give_the_same_batches(folder):
    source = open_source(folder)
    ahead = list(iter_batches(source, (16, 16), 3, 4, workers=2, prefetch=2))
    turns = list(iter_batches(source, (16, 16), 3, 4, workers=1, prefetch=0))
    for a, b in zip(ahead, turns, strict=True):
        assert a.end == b.end and a.items == b.items and a.failures == b.failures
        np.testing.assert_array_equal(a.pixels, b.pixels)


@pytest.mark.parametrize(
    ("shape", "channels"),
    [((9, 28, 28), 1), ((9, 28, 28), 3), ((9, 28, 28, 1), 3), ((9, 28, 28, 3), 3)],
)
def test_array_fast_path_equals_per_image_decoding(tmp_path, shape, channels):
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(shape[0]) % 3)
    source = open_source(tmp_path / "a.npz")
    items = source.items[2:7]
    gathered = decode_batch(source, items, (28, 28), channels)
    per_image = decode_batch(source, items, (28, 28), channels, gather=False)
    assert gathered.pixels.dtype == np.uint8 and gathered.items == per_image.items
    np.testing.assert_array_equal(gathered.pixels, per_image.pixels)
    # Other sizes need a resize: decoded per image, same as the decoder's own output.
    resized = decode_batch(source, items, (32, 32), channels)
    expected = np.stack([source.load(item, (32, 32), channels) for item in items])
    np.testing.assert_array_equal(resized.pixels, expected)


def test_uint8_model_input_equals_float_input(tiny_base):
    pixels = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    runner = BatchRunner(tiny_base.model, batch_size=8)
    assert runner._pixel_model is not None
    got = runner(pixels)
    expected = np.asarray(tiny_base.model.predict_on_batch(pixels.astype(np.float32)))
    assert got.dtype == np.float32 and got.shape == (5, tiny_base.dim)
    assert_features_close(got, expected)
    assert runner(pixels[:0]).shape == (0, tiny_base.dim)


def test_default_batch_size_scales_with_pixels_and_device():
    assert default_batch_size((224, 224), accelerator=False) == 64
    assert default_batch_size((224, 224), accelerator=True) == 256
    assert default_batch_size((28, 28), accelerator=False) == 1024
    assert default_batch_size((28, 28), 5000, accelerator=False) == 1024
    # A smaller source is one batch of exactly its size: no padded, wasted rows.
    assert default_batch_size((28, 28), 300, accelerator=False) == 300
    assert default_batch_size((SIZE, SIZE), 3, accelerator=False) == 3


def test_accelerator_devices_is_a_list():
    devices = accelerator_devices()
    assert isinstance(devices, list)
    assert all(not d.lower().startswith("cpu") for d in devices)
