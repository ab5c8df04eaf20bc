"""Exports of hub bases: a KerasHub preset's export loads with plain ``keras.saving.load_model``
(Keras imports keras_hub), as a ``.keras`` file or a folder; a SavedModel base is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.registry import make_head
from hub_fixtures import SIZE, needs_keras_hub

pytestmark = needs_keras_hub


def _cache(root: Path, base: str, name: str, **options) -> tuple[Path, np.ndarray, np.ndarray]:
    out = root / name
    if not out.exists():
        extract(root / "images", str(root / base), out, progress=False, **options)
    with FeatureCache.open(out) as cache:
        return out, cache.features.copy(), cache.labels.copy()


def _pixels(root: Path) -> np.ndarray:
    source = open_source(root / "images")
    return np.stack([source.load(item, (SIZE, SIZE), 3) for item in source.items])


def test_keras_export_of_a_preset_base_loads_with_plain_keras(hub_root, tmp_path):
    import keras

    cache, features, labels = _cache(hub_root, "vit_tiny", "vit.h5", pooling="token")
    head = make_head("logreg").fit(features, labels)
    out = tmp_path / "model.keras"
    result = export(cache, out, head=head)  # finds vit_tiny beside the cache
    assert result.parity is not None and result.parity.n == len(labels)
    assert result.metadata["requires"] == ["keras-hub"]
    described = result.metadata["base"]
    assert described["preset_folder"] == "vit_tiny" and described["pooling"] == "token"
    assert described["preset_class"] == "ViTBackbone"
    model = keras.saving.load_model(out)
    np.testing.assert_allclose(
        model.predict(_pixels(hub_root), verbose=0), head.predict_proba(features), atol=1e-4
    )


def test_folder_export_of_a_preset_base_predicts_like_the_head(hub_root, tmp_path):
    cache, features, labels = _cache(hub_root, "resnet_tiny", "resnet.h5")
    head = make_head("knn").fit(features, labels)
    out = tmp_path / "exported"
    export(cache, out, head=head, base=hub_root / "resnet_tiny")
    loaded = load_exported(out)
    assert loaded.kind == "folder" and loaded.metadata["requires"] == ["keras-hub"]
    np.testing.assert_allclose(
        loaded.predict(_pixels(hub_root)), head.predict_proba(features), atol=1e-4
    )


def test_a_keras_export_without_keras_hub_says_to_install_it(hub_root, tmp_path):
    cache, features, labels = _cache(hub_root, "vit_tiny", "vit.h5", pooling="token")
    out = tmp_path / "model.keras"
    export(cache, out, head=make_head("logreg").fit(features, labels), sample=0)
    script = (
        "import sys; sys.modules['keras_hub'] = None\n"  # as if keras-hub were not installed
        "from bottleneck_transfer.deploy.exported import load_exported\n"
        "from bottleneck_transfer.errors import ExportError\n"
        f"try:\n    load_exported({str(out)!r})\n"
        "except ExportError as exc:\n    print('ERROR', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, done.stdout + done.stderr
    assert "KerasHub" in lines[0] and "pip install keras-hub" in lines[0]


def test_a_saved_model_base_is_refused_with_one_line(hub_root, tmp_path):
    cache, _, _ = _cache(hub_root, "tiny_saved_model", "sm.h5", preprocess="unit")
    with pytest.raises(ExportError, match="SavedModel tiny_saved_model") as error:
        export(cache, tmp_path / "model.keras", head="logreg")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "model.keras").exists()
