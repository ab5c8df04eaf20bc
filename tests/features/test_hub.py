"""Hub bases: KerasHub presets (folders, hf:// and kaggle:// handles, named presets) and
SavedModel folders, all built here from tiny random configurations (no network)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import BaseModelError, StaleCacheError
from bottleneck_transfer.features.baselines import randomized
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.inspection import cache_info
from bottleneck_transfer.features.rebuild import rebuild_base
from bottleneck_transfer.features.runtimes import with_compute_dtype
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from feature_checks import assert_features_close
from hub_fixtures import (
    SIZE,
    needs_keras_hub,
    save_images,
    tiny_vit,
)

pytestmark = needs_keras_hub


@pytest.fixture(scope="module")
def presets(hub_root) -> dict[str, Path]:
    """A convolutional (ResNet, 64 features) and a transformer (ViT, 17 tokens of 16) preset."""
    return {kind: hub_root / f"{kind}_tiny" for kind in ("resnet", "vit")}


@pytest.fixture(scope="module")
def saved_model(hub_root) -> Path:
    return hub_root / "tiny_saved_model"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return save_images(tmp_path_factory.mktemp("tiny_images"))


def _reference(preset: Path, pixels: np.ndarray, pooling: str) -> np.ndarray:
    """The preset's backbone on the preset's converter's output, pooled like the base."""
    import keras
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(preset))
    out = keras.ops.convert_to_numpy(backbone(converter(pixels)))
    if pooling == "token":
        return out[:, 0]
    axes = tuple(range(1, out.ndim - 1))
    return out.mean(axis=axes) if pooling == "avg" else out.max(axis=axes)


def _decoded(folder: Path) -> np.ndarray:
    source = open_source(folder)
    return np.stack([source.load(item, (SIZE, SIZE), 3) for item in source.items])


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    ("kind", "pooling", "dim"),
    [("resnet", "avg", 64), ("resnet", "max", 64), ("vit", "token", 16), ("vit", "avg", 16)],
)
def test_preset_features_equal_the_backbone_on_converted_pixels(presets, kind, pooling, dim):
    base = load_base(presets[kind], pooling=pooling)
    assert base.image_size == (SIZE, SIZE) and base.dim == dim and base.channels == 3
    described = base.description
    assert described["preset_folder"] == presets[kind].name
    assert described["preset_class"] == {"resnet": "ResNetBackbone", "vit": "ViTBackbone"}[kind]
    assert described["image_converter"].endswith("ImageConverter")
    assert described["weights"] == "preset" and described["pooling"] == pooling
    assert described["preset_config_sha256"].startswith("sha256:")
    pixels = np.random.default_rng(1).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    assert_features_close(
        base.model.predict_on_batch(pixels), _reference(presets[kind], pixels, pooling)
    )


@pytest.mark.parametrize(("kind", "pooling"), [("resnet", "avg"), ("vit", "token")])
def test_extract_from_a_preset_caches_the_backbone_features(
    presets, images, tmp_path, kind, pooling
):
    out = tmp_path / "c.h5"
    extract(images, str(presets[kind]), out, pooling=pooling, progress=False)
    with FeatureCache.open(out) as cache:
        features = cache.features.copy()
    pixels = _decoded(images).astype(np.float32)
    assert_features_close(features, _reference(presets[kind], pixels, pooling))
    info = cache_info(out)
    assert info["base"] == presets[kind].name and info["pooling"] == pooling
    hub_info = info["hub"]
    assert hub_info["preset_class"].endswith("Backbone")
    assert hub_info["preset_config_sha256"].startswith("sha256:")
    assert hub_info["weights_sha256"].startswith("sha256:")


def test_cli_extracts_with_the_class_token_and_info_shows_the_preset(presets, images, tmp_path):
    out = tmp_path / "c.h5"
    args = ["extract", str(images), "--base", str(presets["vit"]), "--pooling", "token"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["info", str(out)]).output
    assert "base         vit_tiny  weights preset" in shown and "pooling token" in shown
    assert "preset_class           ViTBackbone" in shown
    assert "image_converter        ViTImageConverter" in shown
    assert re.search(r"preset_config_sha256 +sha256:[0-9a-f]{64}", shown)


def test_layer_cuts_the_preset_backbone(presets):
    import keras
    import keras_hub

    base = load_base(presets["resnet"], layer="stack0_block0_1_relu")
    backbone = keras_hub.models.Backbone.from_preset(str(presets["resnet"]))
    converter = keras_hub.layers.ImageConverter.from_preset(str(presets["resnet"]))
    cut = keras.Model(backbone.inputs, backbone.get_layer("stack0_block0_1_relu").output)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(cut(converter(pixels))).mean(axis=(1, 2))
    assert_features_close(base.model.predict_on_batch(pixels), expected)
    assert base.description["layer"] == "stack0_block0_1_relu"
    with pytest.raises(BaseModelError, match="layer 'nope' not found") as error:
        load_base(presets["vit"], layer="nope")
    _one_line(error)


def test_token_pooling_needs_a_transformer(presets):
    with pytest.raises(BaseModelError, match="class token") as error:
        load_base(presets["resnet"], pooling="token")
    _one_line(error)
    with pytest.raises(BaseModelError, match="Received: pooling='token'"):
        load_base("mobilenet_v2", weights="none", image_size=SIZE, pooling="token")


def test_preset_random_weights_are_seeded_and_other_weights_refused(presets):
    own = load_base(presets["vit"]).description["weights_sha256"]
    first, again = (load_base(presets["vit"], weights="none") for _ in range(2))
    assert first.description["weights"] == "none"
    assert first.description["weights_sha256"] == again.description["weights_sha256"] != own
    with pytest.raises(BaseModelError, match="Received: weights='imagenet'") as error:
        load_base(presets["vit"], weights="imagenet")
    _one_line(error)


@pytest.mark.parametrize("handle", ["hf://someone/vit_tiny", "kaggle://keras/vit/keras/vit_tiny"])
def test_hub_handles_go_to_keras_hub_and_into_the_provenance(presets, monkeypatch, handle):
    import keras_hub

    asked = []

    def redirect(original):
        def from_preset(preset, **kwargs):
            asked.append(preset)
            return original(str(presets["vit"]) if preset == handle else preset, **kwargs)

        return from_preset

    for owner in (keras_hub.models.Backbone, keras_hub.layers.ImageConverter):
        monkeypatch.setattr(owner, "from_preset", redirect(owner.from_preset))
    base = load_base(handle, pooling="token")
    assert asked == [handle, handle]
    assert base.name == handle and base.description["preset"] == handle
    assert "preset_folder" not in base.description
    local = load_base(presets["vit"], pooling="token")
    assert base.description["weights_sha256"] == local.description["weights_sha256"]


def test_a_named_preset_offline_fails_with_one_line_saying_how_to_get_it(monkeypatch):
    import keras_hub

    def offline(preset, **kwargs):
        raise OSError(
            "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded\n"
            "(Caused by NameResolutionError)"
        )

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(BaseModelError, match="could not load the KerasHub preset") as error:
        load_base("keras-hub:resnet_50_imagenet")
    message = _one_line(error)
    assert "Offline?" in message and "save_to_preset" in message and "--base DIR" in message


def test_an_unknown_named_preset_is_refused_before_any_download():
    with pytest.raises(BaseModelError, match="unknown KerasHub preset 'no_such_net'") as error:
        load_base("keras-hub:no_such_net")
    assert "Received: base='keras-hub:no_such_net'" in _one_line(error)


def test_a_folder_that_is_neither_a_preset_nor_a_saved_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BaseModelError, match="neither a KerasHub preset") as error:
        load_base(tmp_path)
    _one_line(error)


def test_a_changed_preset_is_a_stale_cache(presets, images, tmp_path):
    preset = shutil.copytree(presets["vit"], tmp_path / "vit_tiny")
    out = tmp_path / "c.h5"
    extract(images, str(preset), out, progress=False)
    assert extract(images, str(preset), out, progress=False).up_to_date
    tiny_vit(seed=1).save_to_preset(str(preset))  # the same architecture, other weights
    with pytest.raises(StaleCacheError, match="weights_sha256"):
        extract(images, str(preset), out, progress=False)


def test_a_preset_base_rebuilds_from_the_cache_and_randomizes(presets, images, tmp_path):
    out = tmp_path / "c.h5"
    extract(images, str(presets["vit"]), out, pooling="token", progress=False)
    with FeatureCache.open(out) as cache:
        described = cache.provenance["base"]
    rebuilt = rebuild_base(described, base_path=presets["vit"], cache_path=out)
    assert rebuilt.description == described
    random = randomized(rebuilt, seed=3)
    assert random.dim == rebuilt.dim and random.description["weights"] == "none"
    assert random.description["weights_sha256"] != described["weights_sha256"]
    half = with_compute_dtype(rebuilt, "bfloat16")
    pixels = _decoded(images).astype(np.float32)
    full = rebuilt.model.predict_on_batch(pixels)
    got = np.asarray(half.model.predict_on_batch(pixels), np.float32)
    assert_features_close(got, full, rtol=0.1)


# ----------------------------------------------------------------------------- SavedModels


def test_saved_model_features_equal_the_model_on_preprocessed_pixels(saved_model, images, tmp_path):
    import keras

    base = load_base(saved_model, preprocess="unit")
    assert base.image_size == (SIZE, SIZE) and base.dim == 5
    described = base.description
    assert described["saved_model"] == "tiny_saved_model" and described["endpoint"] == "serve"
    assert described["weights"] == "saved_model" and described["pooling"] == "none"
    assert described["saved_model_sha256"].startswith("sha256:")
    reloaded = keras.layers.TFSMLayer(str(saved_model), call_endpoint="serve")
    out = tmp_path / "c.h5"
    extract(images, str(saved_model), out, preprocess="unit", progress=False)
    with FeatureCache.open(out) as cache:
        features = cache.features.copy()
        rebuilt = rebuild_base(cache.provenance["base"], base_path=saved_model, cache_path=out)
    pixels = _decoded(images).astype(np.float32)
    expected = keras.ops.convert_to_numpy(reloaded(pixels / 255.0))
    assert_features_close(features, expected)
    assert rebuilt.description == described
    assert cache_info(out)["hub"]["endpoint"] == "serve"


def test_saved_model_needs_preprocessing_and_its_own_size(saved_model):
    with pytest.raises(BaseModelError, match="pass --preprocess") as error:
        load_base(saved_model)
    _one_line(error)
    with pytest.raises(BaseModelError, match="takes 32x32 images") as error:
        load_base(saved_model, preprocess="unit", image_size=64)
    _one_line(error)
    with pytest.raises(BaseModelError, match="--layer does not apply") as error:
        load_base(saved_model, preprocess="unit", layer="conv2d")
    _one_line(error)


def test_saved_model_graph_cannot_change_dtype_or_weights(saved_model):
    base = load_base(saved_model, preprocess="unit")
    with pytest.raises(BaseModelError, match="--compute-dtype bfloat16 does not apply") as error:
        with_compute_dtype(base, "bfloat16")
    _one_line(error)
    with pytest.raises(BaseModelError, match="random-base baseline does not apply") as error:
        randomized(base)
    _one_line(error)


def test_saved_model_on_the_jax_backend_is_a_one_line_error(saved_model, images, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    command = [sys.executable, "-m", "bottleneck_transfer", "extract", str(images)]
    command += ["--base", str(saved_model), "--preprocess", "unit", "-o", str(tmp_path / "c.h5")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert "only on the TensorFlow backend" in errors[0] and "uses jax" in errors[0]
    assert "KERAS_BACKEND=tensorflow" in errors[0]
