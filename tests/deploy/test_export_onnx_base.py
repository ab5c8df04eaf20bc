"""Export from an ONNX file base: one ONNX graph (base and head) that ONNX Runtime runs and
that agrees with the head on the cached features; the forms Keras would hold are refused."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.store import CACHE_DIR_ENV
from feature_checks import assert_features_close
from onnx_fixtures import images, two_output_model
from PIL import Image
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime", "tf2onnx")),
    reason="needs onnx, onnxruntime and tf2onnx",
)


@pytest.fixture(params=[17, 21], ids=["opset17", "opset21"])
def onnx_cache(tmp_path, monkeypatch, request):
    """A cache of 12 8x8 images (no resize at decoding) made with an NCHW ONNX base, at opset
    17 and at 21 (beyond what Keras' ONNX exporter writes)."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "store"))
    source = images(tmp_path / "imgs", (8, 8))
    base = two_output_model(tmp_path / "base.onnx", opset=request.param)
    extract(source, str(base), tmp_path / "c.h5", progress=False)
    return tmp_path / "c.h5", source


def test_export_is_one_onnx_graph_that_agrees_with_the_head(onnx_cache, tmp_path):
    import onnx
    import onnxruntime

    cache_path, source = onnx_cache
    with FeatureCache.open(cache_path) as cache:
        features, labels, ids = cache.features.copy(), cache.labels.copy(), list(cache.ids)
    head = LogisticRegression(max_iter=1000).fit(features, labels)
    result = export(cache_path, tmp_path / "m.onnx", head=head)
    assert result.kind == "onnx" and result.parity.n == len(ids)
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model)
    metadata = json.loads(next(p.value for p in model.metadata_props if p.key == "bottleneck"))
    assert metadata["classes"] == ["a", "b"] and metadata["base"]["format"] == "onnx"
    base_opset = onnx.load(str(tmp_path / "base.onnx")).opset_import[0].version
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [base_opset]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    (image,) = session.get_inputs()
    assert (image.name, image.type, image.shape) == ("image", "tensor(uint8)", ["batch", 8, 8, 3])
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    pixels = np.stack([np.asarray(Image.open(source / i).convert("RGB")) for i in ids])
    (got,) = session.run(None, {"image": pixels})
    assert_features_close(got, head.predict_proba(features), rtol=1e-4)


@pytest.mark.parametrize("out", ["m.keras", "folder"])
def test_forms_keras_would_hold_are_refused_in_one_line(onnx_cache, tmp_path, out):
    cache_path, _ = onnx_cache
    with pytest.raises(ExportError) as refused:
        export(cache_path, tmp_path / out, head="logreg")
    message = str(refused.value)
    assert "\n" not in message
    assert "ONNX file base.onnx" in message and "Keras cannot run an ONNX graph" in message
    assert "-o NAME.onnx" in message
    assert not (tmp_path / out).exists()
