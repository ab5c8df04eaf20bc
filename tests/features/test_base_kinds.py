"""Base kinds by registry: each kind one module, found from the ``--base`` spec."""

from __future__ import annotations

import types

import numpy as np
import pytest
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import load_base, load_layers, registry
from bottleneck_transfer.features.bases.built import Built


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("pixels", "pixels"),
        ("Pixels", "pixels"),
        ("resnet50", "application"),
        ("MobileNetV2", "application"),
        ("keras-hub:resnet_18_imagenet", "preset"),
        ("hf://keras/x", "preset"),
        ("models/base.keras", "model_file"),
        ("./pixels", "model_file"),  # a path, never the name
    ],
)
def test_each_spec_is_detected_as_its_kind(spec, kind):
    assert kind == registry.base_kind(spec).KIND


def test_folders_are_saved_models_or_presets_or_refused(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "preset").mkdir()
    (tmp_path / "preset" / "config.json").write_text("{}")
    (tmp_path / "other").mkdir()
    assert registry.base_kind(tmp_path / "sm").KIND == "saved_model"
    assert registry.base_kind(tmp_path / "preset").KIND == "preset"
    with pytest.raises(BaseModelError, match="neither a KerasHub preset"):
        registry.base_kind(tmp_path / "other")


def test_every_kind_declares_what_the_registry_needs():
    for name, module in registry.BASE_KINDS.items():
        assert name == module.KIND
        assert callable(module.detect) and callable(module.build)
        assert callable(module.rebuild_spec)
    assert [k for k, m in registry.BASE_KINDS.items() if registry.cuts_layers(m)] == [
        "model_file",
        "application",
    ]
    assert "token" in registry.poolings(registry.BASE_KINDS["preset"])
    assert "token" not in registry.poolings(registry.BASE_KINDS["application"])


@pytest.mark.parametrize(
    ("described", "spec", "weights"),
    [
        ({"application": "pixels", "weights": "none"}, "pixels", ["none"]),
        ({"application": "MobileNetV2", "weights": "imagenet"}, "MobileNetV2", ["imagenet"]),
        ({"preset": "keras-hub:vit", "weights": "preset"}, "keras-hub:vit", ["preset"]),
    ],
)
def test_a_cache_base_is_rebuilt_by_the_kind_that_made_it(described, spec, weights, tmp_path):
    from bottleneck_transfer.features.rebuild import _base_spec

    assert _base_spec(described, None, None, tmp_path / "c.h5") == (spec, weights)
    with pytest.raises(BaseModelError, match="the provenance names no base"):
        _base_spec({"kind": "imported"}, None, None, tmp_path / "c.h5")


def test_a_new_kind_is_one_module_and_one_entry(monkeypatch):
    import keras

    def build(base, request):
        inputs = keras.Input((*request.size, 3))
        features = keras.layers.GlobalAveragePooling2D()(inputs)
        model = keras.Model(inputs, features)
        affine = (np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
        origin = {"mean_color": base.removeprefix("mean:")}
        return Built(model, "mean", origin, "none", request.size, 3, affine, None, "avg")

    kind = types.ModuleType("mean_color")
    kind.KIND, kind.build = "mean_color", build
    kind.detect = lambda base: str(base).startswith("mean:")
    monkeypatch.setattr(registry, "BASE_KINDS", {"mean_color": kind, **registry.BASE_KINDS})
    base = load_base("mean:rgb", image_size=4)
    assert base.dim == 3 and base.image_size == (4, 4)
    assert base.description["mean_color"] == "rgb"
    pixels = np.full((1, 4, 4, 3), 7.0, np.float32)
    np.testing.assert_allclose(np.asarray(base.model(pixels)), [[7.0, 7.0, 7.0]])
    with pytest.raises(BaseModelError, match=r"--layers applies to keras\.applications"):
        load_layers("mean:rgb", ["x"])
    with pytest.raises(BaseModelError, match=r"invalid --pooling.*valid: avg, max"):
        load_base("mean:rgb", pooling="token")
