"""Bases: application names, preprocessing, model files (.keras and legacy .h5), layer cuts,
seeded random weights and their fingerprint."""

from __future__ import annotations

import importlib
import random

import numpy as np
import pytest
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.bases.application import application_names, resolve_application
from bottleneck_transfer.features.bases.common import weights_sha256
from feature_checks import assert_features_close, assert_features_differ


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("resnet50", "ResNet50"),
        ("mobilenet_v2", "MobileNetV2"),
        ("EfficientNet-B0", "EfficientNetB0"),
    ],
)
def test_application_names_in_any_spelling(spelling, name):
    assert resolve_application(spelling) == name
    assert len(application_names()) >= 30


@pytest.mark.parametrize(
    ("name", "size", "dim"),
    [("resnet50", 64, 2048), ("densenet121", 64, 1024), ("efficientnetb0", 64, 1280)],
)
def test_application_features_equal_preprocess_input_then_backbone(name, size, dim):
    import keras

    base = load_base(name, weights="none", image_size=size)
    assert base.dim == dim and base.image_size == (size, size) and base.channels == 3
    app = resolve_application(name)
    module = importlib.import_module(getattr(keras.applications, app).__module__)
    backbone = next(layer for layer in base.model.layers if isinstance(layer, keras.Model))
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = keras.ops.mean(backbone(module.preprocess_input(pixels.copy())), axis=(1, 2))
    assert_features_close(base.model.predict_on_batch(pixels), np.asarray(expected), rtol=1e-4)


def test_default_sizes_follow_the_application():
    assert load_base("mobilenet_v2", weights="none").image_size == (224, 224)


def test_offline_imagenet_weights_fail_with_a_message(monkeypatch):
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", no_network)
    with pytest.raises(BaseModelError, match="could not download the imagenet weights"):
        load_base("mobilenet_v2", weights="imagenet", image_size=96)


def _small_model():
    import keras

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(6, activation="relu", name="penultimate")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="top")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_model_files_are_cut_below_their_last_layer(tmp_path, suffix):
    import keras

    model = _small_model()
    path = tmp_path / f"m{suffix}"
    model.save(path)
    base = load_base(path)
    assert base.dim == 6 and base.image_size == (24, 24)
    assert base.description["file"] == path.name and base.description["weights"] == "file"
    pixels = np.random.default_rng(1).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    cut = keras.Model(model.inputs, model.get_layer("penultimate").output)
    assert_features_close(base.model.predict_on_batch(pixels), cut(pixels))
    pooled = load_base(path, layer="conv", pooling="max")
    assert pooled.dim == 4
    assert_features_close(
        pooled.model.predict_on_batch(pixels),
        np.max(keras.Model(model.inputs, model.get_layer("conv").output)(pixels), axis=(1, 2)),
    )
    with pytest.raises(BaseModelError, match="layer 'nope' not found"):
        load_base(path, layer="nope")
    with pytest.raises(BaseModelError, match="takes 24x24 images"):
        load_base(path, image_size=32)
    with pytest.raises(BaseModelError, match=r"imagenet applies to keras\.applications"):
        load_base(path, weights="imagenet")


def test_bad_options_are_named(tmp_path):
    with pytest.raises(BaseModelError, match="Received: pooling='sum'"):
        load_base("mobilenet_v2", weights="none", pooling="sum")
    with pytest.raises(BaseModelError, match="weights file not found"):
        load_base("mobilenet_v2", weights="missing.weights.h5")
    garbage = tmp_path / "broken.keras"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(BaseModelError, match=r"cannot load model file .*broken\.keras"):
        load_base(garbage)


def test_random_weights_depend_on_the_seed_alone(monkeypatch):
    """Python's global ``random``, drawn from by other threads (a Dask worker's), changes
    nothing: ``weights="none"`` gives one set of weights per seed, fingerprinted by value."""
    monkeypatch.setattr(random, "randint", random.SystemRandom().randint)
    first, again, other = (
        load_base("mobilenet_v2", weights="none", image_size=32, seed=seed) for seed in (0, 0, 1)
    )
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    features = first.model.predict_on_batch(pixels)
    assert first.description["weights_sha256"] == again.description["weights_sha256"]
    assert_features_close(again.model.predict_on_batch(pixels), features, rtol=0)
    assert other.description["weights_sha256"] != first.description["weights_sha256"]
    assert_features_differ(other.model.predict_on_batch(pixels), features)


def test_weights_sha256_is_of_the_values_not_the_names():
    import keras

    def model() -> keras.Model:  # Keras numbers the layer names anew each time
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(4)(inputs)))

    one, two = model(), model()
    two.set_weights(one.get_weights())
    assert [w.path for w in one.weights] != [w.path for w in two.weights]
    assert weights_sha256(one) == weights_sha256(two)
    changed = two.get_weights()
    changed[2][1, 0] = np.nextafter(changed[2][1, 0], np.float32(np.inf))  # one float, one ulp
    two.set_weights(changed)
    assert weights_sha256(one) != weights_sha256(two)
