"""Exports that serving and mobile stacks accept: one model exported once to every form.

The ONNX graph's named input/outputs/axes, the SavedModel's version folders and image-bytes
signature, the TFLite fixed input (``--batch``) and quantization (``--quantize``), a labels
file beside every form, and every form's predictions against the ``.keras`` export's.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.form_saved_model import next_version
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
CLASSES = "5-7"
N = 90
#: Each export of the fixture: (-o name, export options).
FORMS = {
    "keras": ("model.keras", {}),
    "saved-model": ("sm", {"format": "saved-model"}),
    "onnx": ("model.onnx", {}),
    "tflite": ("model.tflite", {}),
    "tflite-batch4": ("batch4.tflite", {"batch": 4}),
    "dynamic": ("dynamic.tflite", {"quantize": "dynamic"}),
    "float16": ("float16.tflite", {"quantize": "float16"}),
    "int8": ("int8.tflite", {"quantize": "int8"}),
}
QUANTIZED = ("dynamic", "float16", "int8")
pytestmark = [
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx", "onnxruntime")),
        reason="needs TensorFlow, tf2onnx and onnxruntime: pip install -e '.[onnx]'",
    ),
    pytest.mark.filterwarnings("ignore:.*fewer than 20 rows:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning"),
]


@pytest.fixture(scope="module")
def forms(tmp_path_factory, fashion_mnist_available):
    """One head on a 90-image cache, exported once to each form of :data:`FORMS`."""
    folder = tmp_path_factory.mktemp("serving")
    cache = folder / "c.h5"
    extract("fashion-mnist:test", FM_BASE, cache, classes=CLASSES, limit=N, progress=False)
    with FeatureCache.open(cache) as opened:
        ids, X, y = opened.ids, opened.features.copy(), opened.labels.copy()
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    results = {
        form: export(cache, folder / name, head=head, sample=8, **options)
        for form, (name, options) in FORMS.items()
    }
    source = open_source("fashion-mnist:test", classes=CLASSES, limit=N)
    by_id = {item.id: item for item in source.items}
    return {
        "folder": folder,
        "cache": cache,
        "results": results,
        "pixels": np.stack([source.load(by_id[i], (28, 28), 1) for i in ids]),
        "classes": results["keras"].classes,
        "keras": load_exported(results["keras"].path),
    }


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_every_form_predicts_as_the_keras_export(forms):
    """The agreement test: each form, loaded back as ``predict`` loads it, on the same images."""
    want = forms["keras"].predict(forms["pixels"])
    for form, result in forms["results"].items():
        loaded = load_exported(result.path)
        assert loaded.class_names == forms["classes"]
        path = result.path
        labels = path / "labels.txt" if path.is_dir() else path.with_suffix(".labels.txt")
        assert result.labels == labels, form  # model.labels.txt beside model.onnx, ...
        assert labels.read_text(encoding="utf-8").splitlines() == forms["classes"], form
        got = loaded.predict(forms["pixels"])
        agreement = np.mean(got.argmax(1) == want.argmax(1))
        if form in QUANTIZED:
            assert agreement >= 0.95 and _relative(got, want) < 0.1, form
            assert loaded.metadata["quantize"] == form
        else:
            assert agreement == 1.0 and _relative(got, want) <= 1e-4, form


def test_onnx_graph_has_named_input_outputs_and_batch_axis(forms):
    import onnx
    import onnxruntime

    path = forms["results"]["onnx"].path
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (image,) = model.graph.input
    dims = image.type.tensor_type.shape.dim
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 1]
    assert [o.name for o in model.graph.output] == ["probabilities", "label", "label_index"]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == forms["classes"]
    meta = json.loads(props["bottleneck"])
    assert meta["input"]["name"] == "image" and meta["input"]["dtype"] == "uint8"
    assert meta["input"]["normalization"] == {"mean": 0.0, "std": 1.0}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, label, index = session.run(None, {"image": forms["pixels"][:7]})
    np.testing.assert_array_equal(index, probabilities.argmax(1))
    assert list(label) == [forms["classes"][k] for k in probabilities.argmax(1)]


def _png(pixels: np.ndarray, size: int | None = None) -> bytes:
    image = Image.fromarray(pixels[..., 0])
    if size is not None:
        image = image.resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_saved_model_serving_default_takes_encoded_images(forms):
    import tensorflow as tf

    result = forms["results"]["saved-model"]
    assert result.path == forms["folder"] / "sm" / "1"
    loaded = tf.saved_model.load(str(result.path))
    serving = loaded.signatures["serving_default"]
    assert list(serving.structured_input_signature[1]) == ["image_bytes"]
    pixels = forms["pixels"][:6]
    out = serving(image_bytes=tf.constant([_png(p) for p in pixels]))
    want = forms["keras"].predict(pixels)
    assert _relative(out["probabilities"].numpy(), want) <= 1e-4
    names = [forms["classes"][k] for k in want.argmax(1)]
    assert [s.decode() for s in out["label"].numpy()] == names
    np.testing.assert_array_equal(out["label_index"].numpy(), want.argmax(1))
    larger = [_png(p, 45) for p in pixels]  # resized inside, by the model's own layer
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(b)))[..., None] for b in larger])
    got = serving(image_bytes=tf.constant(larger))["probabilities"].numpy()
    assert _relative(got, forms["keras"].predict(decoded)) <= 1e-4


def test_saved_model_versions_folder(forms, tmp_path):
    versions = tmp_path / "models"
    shutil.copytree(forms["results"]["saved-model"].path, versions / "1")
    assert next_version(versions) == versions / "2"
    shutil.copytree(versions / "1", versions / "7")
    assert next_version(versions) == versions / "8"
    assert load_exported(versions).path == versions / "7"  # the newest, as TF Serving serves
    args = ["export", str(forms["cache"]), "-o", str(versions), "--format", "saved-model"]
    done = CliRunner().invoke(cli, [*args, "--dry-run"])  # no --force needed to add one
    assert done.exit_code == 0, done.output
    assert f"Would write {versions / '8'} (saved-model)" in done.output
    (versions / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"models exists and is not an export folder.*notes"):
        next_version(versions)


def test_tflite_input_is_fixed_at_the_base_size(forms):
    import tensorflow as tf

    for form, batch in (("tflite", 1), ("tflite-batch4", 4)):
        path = forms["results"][form].path
        (details,) = tf.lite.Interpreter(model_path=str(path)).get_input_details()
        assert list(details["shape_signature"]) == [batch, 28, 28, 1]  # no -1: nothing dynamic
        assert details["dtype"] == np.uint8
        loaded = load_exported(path)
        assert loaded.metadata["input"]["shape"] == [batch, 28, 28, 1]
        got = loaded.predict(forms["pixels"][:7])  # 7 images: chunks of batch, the last padded
        assert _relative(got, forms["keras"].predict(forms["pixels"][:7])) <= 1e-4
    wrong = r"takes images of shape \[28, 28, 1\], got \[32, 32, 1\]: resize them"
    with pytest.raises(ExportError, match=wrong):
        loaded.predict(np.zeros((1, 32, 32, 1), np.uint8))


def test_quantized_tflite_is_smaller_and_reports_its_accuracy_change(forms):
    from tensorflow.lite.tools import flatbuffer_utils

    results = forms["results"]
    size = {form: results[form].path.stat().st_size for form in ("tflite", *QUANTIZED)}
    assert size["dynamic"] < size["tflite"] / 3 and size["float16"] < size["tflite"] / 1.8
    assert size["int8"] < size["tflite"]  # the base's dense layers, like the head, stay float
    for form in QUANTIZED:
        quantized = results[form].quantized
        assert results[form].parity is None and quantized.quantize == form
        assert abs(quantized.change) <= 0.05 and quantized.agreement >= 0.95
    int8 = results["int8"].quantized
    assert int8.calibration == N // 2 and int8.n == N - N // 2  # the other half measures it
    assert results["dynamic"].quantized.n == N
    flat = flatbuffer_utils.read_model(str(results["int8"].path))
    tensors = flat.subgraphs[0].tensors
    assert 9 in {t.type for t in tensors}  # int8 convolutions (TensorType.INT8)
    head = [t.type for t in tensors if b"head_logits" in t.name]
    assert head and set(head) == {0}  # the head (its folded scaler) stays float32


def test_serving_options_are_checked_before_any_work(forms, tmp_path):
    cache = forms["cache"]
    with pytest.raises(ExportError, match=r"^--quantize applies to --format tflite only, not onnx"):
        export(cache, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(ExportError, match=r"--batch applies to --format tflite only, not keras"):
        export(cache, tmp_path / "m.keras", batch=8)
    with pytest.raises(ExportError, match=r"unknown --quantize 'int4'; choose one of dynamic"):
        export(cache, tmp_path / "m.tflite", quantize="int4")
    assert list(tmp_path.iterdir()) == []
