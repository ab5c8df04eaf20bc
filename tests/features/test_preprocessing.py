"""Preprocessing for anyone's model: named modes on any channels, mean/std per channel."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.bases.preprocessing import (
    candidate_specs,
    check_preprocess,
    describe_preprocess,
    mean_std,
    preprocess_affine,
)
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.loop import cache_identity
from bottleneck_transfer.features.rebuild import rebuild_base
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.fingerprint import fingerprint
from click.testing import CliRunner
from feature_checks import assert_features_close

RGB_STATS = "mean=123.7,116.3,103.5;std=58.4,57.1,57.4"


def _model_file(path, channels: int):
    """A tiny conv net on 8 x 8 images, saved as a user's own model file."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, channels))
    x = keras.layers.Conv2D(4, 3, activation="tanh", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    model.save(path)
    return model


@pytest.fixture
def gray_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "gray.npz", images=images, labels=np.arange(10) % 2)
    return tmp_path / "gray.npz", images


def test_grayscale_model_trained_on_minus_one_to_one_gets_its_inputs(tmp_path, gray_images):
    import keras

    model = _model_file(tmp_path / "gray.keras", 1)
    npz, images = gray_images
    out = tmp_path / "c.h5"
    extract(npz, tmp_path / "gray.keras", out, preprocess="mean=127.5,std=127.5", progress=False)
    trunk = keras.Model(model.inputs, model.get_layer("pool").output)
    scaled = (images[..., None].astype(np.float32) - 127.5) / 127.5
    expected = np.asarray(trunk.predict_on_batch(scaled))
    with FeatureCache.open(out) as cache:
        assert_features_close(cache.features, expected)
        assert cache.provenance["base"]["preprocess"] == {
            "weight": [[round(1 / 127.5, 8)]],
            "bias": [-1.0],
            "mean": [127.5],
            "std": [127.5],
        }


def test_tf_mode_works_on_one_channel_and_equals_its_mean_std(tmp_path):
    _model_file(tmp_path / "gray.keras", 1)
    named = load_base(tmp_path / "gray.keras", preprocess="tf")
    spelled = load_base(tmp_path / "gray.keras", preprocess="mean=127.5,std=127.5")
    for key in ("weight", "bias"):
        assert named.description["preprocess"][key] == spelled.description["preprocess"][key]
    pixels = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1) * 4
    np.testing.assert_array_equal(
        named.model.predict_on_batch(pixels), spelled.model.predict_on_batch(pixels)
    )
    with pytest.raises(BaseModelError, match=r"'torch' has per-colour constants.*mean=M,std=S"):
        load_base(tmp_path / "gray.keras", preprocess="torch")


def test_two_normalisations_give_two_fingerprints(tmp_path, gray_images):
    _model_file(tmp_path / "gray.keras", 1)
    source = open_source(gray_images[0])
    prints = {
        spec: fingerprint(
            cache_identity(load_base(tmp_path / "gray.keras", preprocess=spec), source, None)
        )
        for spec in ("mean=127.5,std=127.5", "mean=0,std=255", "std=255", "unit", "none")
    }
    assert prints["mean=0,std=255"] == prints["std=255"]
    assert len({prints[s] for s in ("mean=127.5,std=127.5", "std=255", "unit", "none")}) == 4


def test_per_channel_statistics_are_applied_and_rebuilt(tmp_path):
    _model_file(tmp_path / "rgb.keras", 3)
    images = np.random.default_rng(1).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=images, labels=np.arange(6) % 2)
    out = tmp_path / "c.h5"
    extract(tmp_path / "rgb.npz", tmp_path / "rgb.keras", out, preprocess=RGB_STATS, progress=False)
    plain = load_base(tmp_path / "rgb.keras", preprocess="none")
    mean, std = np.array([123.7, 116.3, 103.5]), np.array([58.4, 57.1, 57.4])
    expected = plain.model.predict_on_batch((images - mean) / std)
    with FeatureCache.open(out) as cache:
        assert_features_close(cache.features, expected)
        described = cache.provenance["base"]
    rebuilt = rebuild_base(described, base_path=tmp_path / "rgb.keras", cache_path=out)
    assert rebuilt.description == described


def test_affine_of_every_syntax():
    weight, bias = preprocess_affine(RGB_STATS, 3)
    np.testing.assert_allclose(np.diag(weight), 1 / np.array([58.4, 57.1, 57.4]))
    np.testing.assert_allclose(bias, -np.array([123.7, 116.3, 103.5]) / [58.4, 57.1, 57.4])
    assert np.count_nonzero(weight - np.diag(np.diag(weight))) == 0
    weight, bias = preprocess_affine("mean=127.5, std=127.5", 3)  # one number: every channel
    np.testing.assert_allclose(weight, np.eye(3) / 127.5)
    np.testing.assert_allclose(bias, -np.ones(3))
    assert mean_std("std=255") == ([0.0], [255.0])
    assert mean_std("mean=1 2 3 ; std=4") == ([1.0, 2.0, 3.0], [4.0])
    assert preprocess_affine("unit", 4)[0].shape == (4, 4)
    for spec in ("none", "unit", "tf", "torch", "caffe", RGB_STATS, "mean=10,std=2"):
        recorded = describe_preprocess(preprocess_affine(spec, 3), spec)
        candidates = candidate_specs(recorded)
        assert candidates[0] == spec or "=" in spec, (spec, candidates)
        for candidate in candidates:  # bit for bit: the layer's float32 weights are equal
            for got, want in zip(
                preprocess_affine(candidate, 3), preprocess_affine(spec, 3), strict=True
            ):
                np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


@pytest.mark.parametrize(
    ("spec", "channels", "message"),
    [
        ("softmax", 3, "not a named mode nor mean="),
        ("mean=abc,std=1", 3, "mean= needs numbers"),
        ("mean=1,std=0", 3, "std= must be > 0"),
        ("mean=1;mean=2", 3, "mean= given twice"),
        ("scale=2", 3, "not a named mode"),
        ("mean=1,2,std=3", 3, "mean= has 2 values; the base has 3 channel(s): give 1 or 3"),
        (RGB_STATS, 1, "mean= has 3 values; the base has 1 channel(s): give 1"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, channels, message):
    with pytest.raises(BaseModelError, match="Received: preprocess=") as info:
        preprocess_affine(spec, channels)
    assert message in str(info.value) and "\n" not in str(info.value)
    if channels == 3 and "values" not in message:
        with pytest.raises(BaseModelError):
            check_preprocess(spec)


def test_cli_takes_mean_std_and_refuses_garbage_before_loading(tmp_path, gray_images):
    _model_file(tmp_path / "gray.keras", 1)
    args = ["extract", str(gray_images[0]), "--base", str(tmp_path / "gray.keras")]
    out = tmp_path / "c.h5"
    good = CliRunner().invoke(
        cli, [*args, "-o", str(out), "--preprocess", "mean=127.5,std=127.5", "--quiet"]
    )
    assert good.exit_code == 0, good.output
    with FeatureCache.open(out) as cache:
        assert cache.provenance["base"]["preprocess"]["bias"] == [-1.0]
    bad = CliRunner().invoke(cli, [*args, "-o", str(out), "--preprocess", "mean=x"])
    assert bad.exit_code == 2 and "mean= needs numbers" in bad.output
