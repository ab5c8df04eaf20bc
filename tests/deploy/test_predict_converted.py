"""load_exported and predict on SavedModel, TFLite and ONNX exports: the .keras export's top-1."""

from __future__ import annotations

import csv
import importlib.util
import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.finetune import finetune
from bottleneck_transfer.errors import ExportError, MissingDependencyError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
N = 36
#: Each converted form and its ``-o`` name.
FORMS = {"saved-model": "sm", "tflite": "model.tflite", "onnx": "model.onnx"}
pytestmark = [
    pytest.mark.skipif(
        not all(importlib.util.find_spec(name) for name in ("tensorflow", "tf2onnx")),
        reason="needs TensorFlow and tf2onnx: pip install -e '.[onnx]'",
    ),
    pytest.mark.filterwarnings("ignore:.*fewer than 20 rows:UserWarning"),
]


@pytest.fixture(scope="module")
def fm(tmp_path_factory, fashion_mnist_available):
    """A class-folder tree of PNGs, its cache, and one head exported to .keras and each form."""
    folder = tmp_path_factory.mktemp("converted")
    photos = folder / "photos"
    source = open_source("fashion-mnist:test", classes="5-7", limit=N)
    for k, item in enumerate(source.items):
        (photos / source.class_names[item.label]).mkdir(parents=True, exist_ok=True)
        pixels = source.load(item, (28, 28), 1)[..., 0]
        Image.fromarray(pixels).save(photos / source.class_names[item.label] / f"{k:02d}.png")
    extract(photos, FM_BASE, folder / "c.h5", progress=False)
    with FeatureCache.open(folder / "c.h5") as opened:
        X, y = opened.features.copy(), opened.labels.copy()
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    keras_path = export(folder / "c.h5", folder / "model.keras", head=head, sample=0).path
    paths = {
        form: export(folder / "c.h5", folder / name, head=head, sample=8, format=form).path
        for form, name in FORMS.items()
    }
    pixels = np.stack([np.asarray(Image.open(p))[..., None] for p in sorted(photos.rglob("*.png"))])
    return {
        "photos": photos,
        "pixels": pixels[: N // 2],
        "keras": load_exported(keras_path),
        "paths": paths,
    }


def _one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ExportError) as raised:
        call(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("form", FORMS)
def test_load_exported_reads_each_converted_form(fm, form):
    keras_export = fm["keras"]
    loaded = load_exported(fm["paths"][form])
    assert loaded.kind == form and loaded.model is None and loaded.runner is not None
    assert loaded.class_names == keras_export.class_names == ["Sandal", "Shirt", "Sneaker"]
    assert loaded.image_size == (28, 28) and loaded.channels == 1
    assert loaded.metadata["fingerprint"] == keras_export.metadata["fingerprint"]
    got, want = loaded.predict(fm["pixels"]), keras_export.predict(fm["pixels"])
    assert got.shape == (N // 2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()


def _cli_predict(model: Path, images: Path) -> list[list[str]]:
    done = CliRunner().invoke(cli, ["predict", str(model), str(images), "--quiet"])
    assert done.exit_code == 0, done.output
    return list(csv.reader(io.StringIO(done.stdout)))


def test_cli_predict_gives_the_keras_exports_top1_with_each_form(fm):
    header, *want = _cli_predict(fm["keras"].path, fm["photos"])
    assert len(want) == N
    for form, path in fm["paths"].items():
        got_header, *got = _cli_predict(path, fm["photos"])
        assert got_header == header
        assert [row[:3] for row in got] == [row[:3] for row in want], form  # id, label, top-1
        got_p = np.array([row[3::2] for row in got], float)
        np.testing.assert_allclose(got_p, np.array([row[3::2] for row in want], float), atol=1e-4)


def test_converted_files_without_metadata_are_refused(fm, tmp_path, monkeypatch):
    from tensorflow.lite.tools import flatbuffer_utils

    model = onnx.load(str(fm["paths"]["onnx"]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    flat = flatbuffer_utils.read_model(str(fm["paths"]["tflite"]))
    flat.metadata = [m for m in flat.metadata if m.name != b"bottleneck"]
    flatbuffer_utils.write_model(flat, str(tmp_path / "bare.tflite"))
    shutil.copytree(fm["paths"]["saved-model"], tmp_path / "bare_sm")
    (tmp_path / "bare_sm" / "bottleneck.json").unlink()
    bare = {"onnx": "bare.onnx", "tflite": "bare.tflite", "saved-model": "bare_sm"}
    for form, name in bare.items():
        assert _one_line_error(load_exported, tmp_path / name) == (
            f"{tmp_path / name} is not a bottleneck export (no readable 'bottleneck' metadata in "
            f"it); export one with `bottleneck export CACHE -o {name} --format {form}`"
        )
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    message = _one_line_error(load_exported, tmp_path / "junk.onnx")
    assert message.startswith(f"cannot read {tmp_path / 'junk.onnx'} (--format onnx): ")
    assert message.endswith(
        "; export one with `bottleneck export CACHE -o junk.onnx --format onnx`"
    )
    done = CliRunner().invoke(cli, ["predict", str(tmp_path / "bare.onnx"), str(fm["photos"])])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "Error: " in done.output and "bare.onnx is not a bottleneck export" in done.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(MissingDependencyError, match=r"bottleneck-transfer\[onnx\]"):
        load_exported(fm["paths"]["onnx"])


def test_finetune_refuses_a_converted_form(fm, tmp_path):
    message = _one_line_error(
        finetune, fm["paths"]["onnx"], fm["photos"], val=fm["photos"], out=tmp_path / "t.keras"
    )
    assert message == (
        f"{fm['paths']['onnx']} is converted for another runtime (--format onnx) and cannot be "
        "fine-tuned; fine-tune the .keras export of the same head (bottleneck export CACHE -o "
        "NAME.keras)"
    )
    assert list(tmp_path.iterdir()) == []
