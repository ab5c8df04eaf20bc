"""Export forms beyond .keras: SavedModel, TFLite, ONNX; labels files; class names; errors."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli.deploy_cmds import COMMANDS
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.errors import ExportError, HeadError, MissingDependencyError
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
N = 72
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow"),
    pytest.mark.filterwarnings("ignore:.*fewer than 20 rows:UserWarning"),
]


@pytest.fixture(scope="module")
def fm(tmp_path_factory, fashion_mnist_available):
    """A 72-image cache, its source pixels in row order, a fitted head and its scores."""
    folder = tmp_path_factory.mktemp("formats")
    cache = folder / "c.h5"
    extract("fashion-mnist:test", FM_BASE, cache, classes=CLASSES, limit=N, progress=False)
    with FeatureCache.open(cache) as opened:
        ids, features, labels = opened.ids, opened.features.copy(), opened.labels.copy()
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, labels)
    keras_export = export(cache, folder / "model.keras", head=head, sample=0)
    source = open_source("fashion-mnist:test", classes=CLASSES, limit=N)
    by_id = {item.id: item for item in source.items}
    return {
        "cache": cache,
        "head": head,
        "pixels": np.stack([source.load(by_id[i], (28, 28), 1) for i in ids]),
        "expected": head_scores(head, features),
        "keras": load_exported(keras_export.path),
        "classes": keras_export.classes,
    }


def _upscaled(pixels: np.ndarray, size: int) -> np.ndarray:
    """Images at ``size`` px (Pillow bicubic), for the model's own resize to bring back."""
    return np.stack(
        [np.asarray(Image.fromarray(p[..., 0]).resize((size, size), Image.BICUBIC)) for p in pixels]
    )[..., None]


def _check(result, fm, run, atol: float = 1e-4) -> np.ndarray:
    """Parity figures, the labels file, and the plain runtime on source images vs the head."""
    assert result.parity.n == N and result.parity.max_abs_diff <= atol
    assert result.parity.argmax_agreement == 1.0
    assert result.labels.read_text(encoding="utf-8").splitlines() == fm["classes"]
    got = run(fm["pixels"])
    np.testing.assert_allclose(got, fm["expected"], atol=atol)
    assert (got.argmax(1) == fm["expected"].argmax(1)).all()
    return got


def test_saved_model_runs_with_tf_saved_model(fm, tmp_path):
    import tensorflow as tf

    out = tmp_path / "sm"
    result = export(fm["cache"], out, head=fm["head"], sample=N, format="saved-model")
    version = out / "1"  # TF Serving's version folder
    assert result.kind == "saved-model" and result.path == version
    assert result.labels == version / "labels.txt"
    loaded = tf.saved_model.load(str(version))
    _check(result, fm, lambda x: loaded.serve(x)["probabilities"].numpy())
    meta = json.loads((version / "bottleneck.json").read_text(encoding="utf-8"))
    assert meta["classes"] == fm["classes"] and meta["resize"].startswith("bilinear, antialiased")


def _tflite(path: Path):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape_signature"]) == [1, 28, 28, 1] and inp["dtype"] == np.uint8
    interpreter.allocate_tensors()

    def run(pixels):  # one image at a time: the input shape is fixed
        out = []
        for image in pixels:
            interpreter.set_tensor(inp["index"], image[None])
            interpreter.invoke()
            out.append(interpreter.get_tensor(outp["index"])[0].copy())
        return np.stack(out)

    return run


def test_tflite_converts_and_runs_with_the_interpreter(fm, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    out = tmp_path / "model.tflite"
    result = export(fm["cache"], out, head=fm["head"], sample=N)  # the suffix picks the form
    assert result.kind == "tflite" and result.labels == tmp_path / "model.labels.txt"
    run = _tflite(out)
    _check(result, fm, run)
    flat = flatbuffer_utils.read_model(str(out))
    (entry,) = [m for m in flat.metadata if m.name == b"bottleneck"]
    meta = json.loads(bytes(flat.buffers[entry.buffer].data))
    assert meta["classes"] == fm["classes"]
    assert meta["resize"].startswith("none: the input is fixed")
    assert meta["input"]["shape"] == [1, 28, 28, 1] and meta["input"]["dtype"] == "uint8"
    assert meta["input"]["normalization"] == {"mean": 0.0, "std": 1.0}


def _check_resizes_like_keras(run, fm) -> None:
    """Images of other sizes: the converted model's resize is the .keras model's."""
    for size in (45, 13):  # down (antialiased) and up
        images = _upscaled(fm["pixels"][:24], size)
        np.testing.assert_allclose(run(images), fm["keras"].predict(images), atol=2e-2)


def test_triangle_resize_is_keras_antialiased_bilinear():
    import keras
    from bottleneck_transfer.deploy.resize import TriangleResize

    rng = np.random.default_rng(0)
    for shape, size in [
        ((2, 97, 150, 3), (28, 28)),
        ((1, 20, 13, 1), (28, 32)),
        ((1, 9, 9, 1), (9, 9)),
    ]:
        noise = rng.integers(0, 256, shape).astype(np.uint8)  # aliasing's worst case
        want = np.asarray(keras.layers.Resizing(*size, antialias=True)(noise), np.float32)
        got = np.asarray(TriangleResize(*size)(noise))
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 1e-3  # rounding ties


def test_onnx_runs_with_onnxruntime(fm, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    out = tmp_path / "model.onnx"
    result = export(fm["cache"], out, head=fm["head"], sample=N)
    assert result.kind == "onnx"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    _check(result, fm, lambda x: session.run(None, {name: x})[0])
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["bottleneck"])
    assert meta["classes"] == fm["classes"] and "antialiased" in meta["resize"]
    _check_resizes_like_keras(lambda x: session.run(None, {name: x})[0], fm)


def test_class_names_and_labels_of_keras_and_folder_exports(fm, tmp_path):
    import bottleneck_transfer

    loaded = bottleneck_transfer.load_exported(fm["keras"].path)
    assert loaded.class_names == fm["classes"]
    labels = fm["keras"].path.with_name("model.labels.txt")
    assert labels.read_text(encoding="utf-8") == "\n".join(fm["classes"]) + "\n"
    result = export(fm["cache"], tmp_path / "knn", head="knn", sample=0)
    assert (tmp_path / "knn" / "labels.txt").read_text(encoding="utf-8").split() == fm["classes"]
    assert load_exported(result.path).class_names == fm["classes"]


def test_format_and_output_must_agree(fm, tmp_path):
    cache = fm["cache"]
    with pytest.raises(ExportError, match=r"unknown export format 'tflight'.*tflite"):
        export(cache, tmp_path / "m.tflite", format="tflight")
    with pytest.raises(ExportError, match=r"--format onnx writes a \.onnx file"):
        export(cache, tmp_path / "m.keras", format="onnx")
    with pytest.raises(ExportError, match=r"--format saved-model writes a folder, not a \.tflite"):
        export(cache, tmp_path / "m.tflite", format="saved-model")
    with pytest.raises(HeadError, match=r"rbf-svm has no exact Keras form.*--format tflite"):
        export(cache, tmp_path / "m.tflite", head="rbf-svm", format="tflite")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="busy exists and is not an export folder"):
        export(cache, busy, format="saved-model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_onnx_without_its_packages_says_how_to_install(fm, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"bottleneck-transfer\[onnx\]"):
        export(fm["cache"], tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_tensorflow_formats_refused_on_other_backends(fm, tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    for form in ("saved-model", "tflite", "onnx"):
        with pytest.raises(ExportError) as raised:
            export(fm["cache"], tmp_path / f"m.{form}", format=form if form != "onnx" else None)
        assert str(raised.value) == (
            f"--format {form} needs TensorFlow as the Keras backend, this process runs jax: "
            "rerun with KERAS_BACKEND=tensorflow (or export a .keras file)"
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_format_option(fm, tmp_path):
    from bottleneck_transfer.cli.app import _Group

    group = _Group()
    for command in COMMANDS:
        group.add_command(command)
    out = tmp_path / "m.tflite"
    args = ["export", str(fm["cache"]), "-o", str(out), "--sample", "8", "--json"]
    done = CliRunner().invoke(group, args)
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout[done.stdout.index("{") :])
    assert answer["kind"] == "tflite" and answer["labels"] == str(tmp_path / "m.labels.txt")
    assert answer["parity"]["n"] == 8
    done = CliRunner().invoke(
        group, ["export", str(fm["cache"]), "-o", str(tmp_path / "x.keras"), "--format", "onnx"]
    )
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "Error: --format onnx writes a .onnx file: name it -o NAME.onnx" in done.output
