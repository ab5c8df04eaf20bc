"""Tiny hub bases built offline, shared by the features, deploy and bench tests: KerasHub
presets saved with ``save_to_preset`` from small random configurations, a SavedModel written
by ``model.export()``, and a dozen tiny images in two classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.bench.small_bases import tiny_resnet
from PIL import Image

#: Mark for the tests of KerasHub bases (a module-level ``pytestmark``): skipped without
#: keras-hub, which is not imported before a test runs.
needs_keras_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="keras-hub is not installed"
)

SIZE = 32
#: ImageNet mean/std as a ResNet converter holds them: x * scale + offset.
TORCH_SCALE = [1 / (255 * s) for s in (0.229, 0.224, 0.225)]
TORCH_OFFSET = [-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]


def tiny_vit(seed: int):
    """A two-layer ViT on 32 px images: 16 patches + the class token, 16 features each."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        mlp_dim=32,
    )  # fmt: skip


def save_presets(root: Path, seed: int = 7) -> dict[str, Path]:
    """The ResNet and ViT presets, each with its image converter, in ``root``."""
    import keras_hub

    converters = {
        "resnet": keras_hub.layers.ResNetImageConverter(
            image_size=(SIZE, SIZE), scale=TORCH_SCALE, offset=TORCH_OFFSET
        ),
        "vit": keras_hub.layers.ViTImageConverter(
            image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0
        ),
    }
    backbones = {"resnet": tiny_resnet(seed), "vit": tiny_vit(seed)}
    folders = {}
    for kind, backbone in backbones.items():
        folders[kind] = root / f"{kind}_tiny"
        backbone.save_to_preset(str(folders[kind]))
        converters[kind].save_to_preset(str(folders[kind]))
    return folders


def save_saved_model(folder: Path) -> Path:
    """A tiny model taking [0, 1] pixels (5 features), written by ``model.export()``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(5)(x)).export(str(folder), verbose=False)
    return folder


def save_images(root: Path) -> Path:
    """12 PNGs of 40x36 px in two classes: reddish and bluish noise."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "blue"]):
        (root / name).mkdir(parents=True)
        for k in range(6):
            pixels = rng.integers(0, 120, (36, 40, 3))
            pixels[..., 0 if c == 0 else 2] += 120
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{k}.png")
    return root


def save_hub_root(root: Path) -> Path:
    """Presets, a SavedModel (``tiny_saved_model``) and images (``images``) side by side in
    ``root`` (export finds a base folder by name)."""
    save_presets(root)
    save_saved_model(root / "tiny_saved_model")
    save_images(root / "images")
    return root
