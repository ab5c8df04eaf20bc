"""Tests for the shipped Fashion-MNIST source base (``data/bases/fashion_mnist_0-4.keras``).

The model is produced by ``python data/bases/train_fashion_mnist_base.py``; these tests check
the shipped artifacts against the model contract that the transfer demo depends on. No network.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BASES_DIR = REPO_ROOT / "data" / "bases"
MODEL_PATH = BASES_DIR / "fashion_mnist_0-4.keras"
META_PATH = BASES_DIR / "fashion_mnist_0-4.json"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

MAX_BYTES = 2 * 1024 * 1024
EXPECTED_CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
SAMPLE_SIZE = 500


def _read_idx(path: Path) -> np.ndarray:
    """Minimal reader for the gzip-compressed uint8 IDX files of (Fashion-)MNIST."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    assert raw[:3] == b"\x00\x00\x08", f"{path} is not a uint8 IDX file"
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4"))
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(shape)


@pytest.fixture(scope="module")
def model():
    import keras

    return keras.saving.load_model(MODEL_PATH, safe_mode=True, compile=False)


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads(META_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def test_sample() -> tuple[np.ndarray, np.ndarray]:
    """500 real Fashion-MNIST test images of classes 0-4 (fixed random sample)."""
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} is absent")
    images = _read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)
    candidates = np.flatnonzero(labels < 5)
    idx = np.random.default_rng(0).choice(candidates, size=SAMPLE_SIZE, replace=False)
    x = images[idx].astype("float32")[..., None]  # raw 0..255, the model rescales itself
    y = labels[idx].astype("int64")
    return x, y


def test_model_file_exists_and_is_small():
    assert MODEL_PATH.is_file(), f"missing {MODEL_PATH}; run data/bases/train_fashion_mnist_base.py"
    size = MODEL_PATH.stat().st_size
    assert 0 < size < MAX_BYTES, f"{MODEL_PATH} is {size} bytes"


def test_metadata_sha256_matches_file(metadata):
    digest = hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()
    assert metadata["sha256"] == digest


def test_metadata_describes_the_base(metadata):
    assert metadata["source_dataset"] == "Fashion-MNIST"
    assert metadata["class_indices"] == [0, 1, 2, 3, 4]
    assert metadata["class_names"] == EXPECTED_CLASS_NAMES
    assert [c["index"] for c in metadata["classes"]] == [0, 1, 2, 3, 4]
    assert [c["name"] for c in metadata["classes"]] == EXPECTED_CLASS_NAMES
    assert metadata["seed"] == 0
    assert isinstance(metadata["epochs"], int) and metadata["epochs"] >= 1
    assert 0.8 < metadata["test_accuracy"] <= 1.0
    assert metadata["backend"] in {"tensorflow", "jax", "torch"}
    assert metadata["keras_version"].split(".")[0] == "3"
    assert metadata["training_seconds"] > 0
    assert metadata["model_file"] == MODEL_PATH.name


def test_loads_in_safe_mode_with_expected_io(model):
    assert model.name == "fashion_mnist_0_4"
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert tuple(model.output_shape) == (None, 5)


def test_first_layer_rescales_raw_pixels(model):
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    first = layers[0]
    assert isinstance(first, keras.layers.Rescaling)
    assert first.scale == pytest.approx(1.0 / 255.0)
    assert first.offset == pytest.approx(0.0)


def test_no_lambda_or_custom_layers(model):
    import keras

    for layer in model.layers:
        assert not isinstance(layer, keras.layers.Lambda), layer.name
        assert type(layer).__module__.startswith("keras."), (layer.name, type(layer))


def test_bottleneck_feeds_softmax_predictions(model):
    import keras

    bottleneck = model.get_layer("bottleneck")
    predictions = model.get_layer("predictions")
    assert isinstance(bottleneck, keras.layers.Dense)
    assert bottleneck.units == 128
    assert keras.activations.serialize(bottleneck.activation) == "relu"
    assert isinstance(predictions, keras.layers.Dense)
    assert predictions.units == 5
    assert keras.activations.serialize(predictions.activation) == "softmax"
    # "directly before": predictions consumes exactly the bottleneck's output, and is the output.
    assert model.layers[-1] is predictions
    assert model.layers[-2] is bottleneck
    assert predictions.input is bottleneck.output
    assert model.outputs[0] is predictions.output
    assert tuple(predictions.kernel.shape) == (128, 5)


def test_bottleneck_extractor_gives_128_features(model, test_sample):
    import keras

    x, _ = test_sample
    extractor = keras.Model(model.inputs, model.get_layer("bottleneck").output)
    feats = np.asarray(extractor.predict(x[:32], verbose=0))
    assert feats.shape == (32, 128)
    assert np.all(np.isfinite(feats))
    assert np.all(feats >= 0.0)  # relu
    assert np.count_nonzero(feats.std(axis=0)) > 16  # features actually vary across images


def test_classifies_real_fashion_mnist_classes_0_to_4(model, test_sample):
    x, y = test_sample
    assert x.shape == (SAMPLE_SIZE, 28, 28, 1)
    assert set(np.unique(y)) == {0, 1, 2, 3, 4}
    probs = np.asarray(model.predict(x, batch_size=250, verbose=0))
    assert probs.shape == (SAMPLE_SIZE, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    pred = probs.argmax(axis=1)
    accuracy = float(np.mean(pred == y))
    assert accuracy > 0.8, f"accuracy {accuracy:.3f} on {SAMPLE_SIZE} test images"
    # Not a degenerate classifier: every class is predicted for some of the images.
    assert set(np.unique(pred)) == {0, 1, 2, 3, 4}
