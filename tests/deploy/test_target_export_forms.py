"""Binary, multi-label and regression exports in every form: ``.keras``, ONNX, TFLite and
SavedModel, each loaded back as ``predict`` loads it and set against the ``.keras`` export on
the same images (as tests/deploy/test_export_serving.py does for class exports)."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export, plan_export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.errors import ExportError, HeadError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from target_fixtures import target_images

#: Each target kind: its --target spec and the head exported.
KINDS = {
    "binary": ("binary:column=bright,positive=yes", "logreg"),
    "multilabel": ("multilabel:column=tags", "logreg"),
    "regression": ("regression:column=brightness,unit=mean pixel", "ridge"),
}
#: Each form: its -o name and --format.
FORMS = {
    "keras": ("m.keras", None),
    "onnx": ("m.onnx", None),
    "tflite": ("m.tflite", None),
    "saved-model": ("sm", "saved-model"),
}
pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx", "onnxruntime")),
    reason="needs TensorFlow, tf2onnx and onnxruntime: pip install -e '.[onnx]'",
)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """Each kind's cache of 60 images through the 4x4 pixels base, exported to each form."""
    root = tmp_path_factory.mktemp("target-forms")
    manifest = target_images(root / "imgs")
    source = open_source(str(manifest))
    pixels = np.stack([source.load(item, (4, 4), 3) for item in source.items])
    made: dict = {"images": manifest, "pixels": pixels, "ids": [i.id for i in source.items]}
    for kind, (spec, head) in KINDS.items():
        cache = root / f"{kind}.h5"
        extract(
            str(manifest), load_base("pixels", image_size=4), cache, target=spec, progress=False
        )
        made[kind] = {
            "cache": cache,
            **{
                form: export(cache, root / kind / name, head=head, format=fmt, sample=16)
                for form, (name, fmt) in FORMS.items()
            },
        }
    return made


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_form_predicts_as_the_keras_export(exports, kind):
    """The agreement test: each form, loaded back as ``predict`` loads it, on the same images,
    with the same metadata (target, thresholds) and labels file."""
    keras_export = load_exported(exports[kind]["keras"].path)
    want = keras_export.predict(exports["pixels"])
    with FeatureCache.open(exports[kind]["cache"]) as cache:
        outputs = cache.target.outputs
    assert want.shape == (len(exports["pixels"]), len(outputs))
    for form in FORMS:
        result = exports[kind][form]
        loaded = load_exported(result.path)
        assert loaded.kind == form and result.parity.n == 16, form
        assert loaded.class_names == outputs, form
        for key in ("target", "thresholds", "activation", "outputs", "head"):
            assert loaded.metadata[key] == keras_export.metadata[key], (form, key)
        path = result.path
        labels = path / "labels.txt" if path.is_dir() else path.with_suffix(".labels.txt")
        assert result.labels == labels and labels.read_text().splitlines() == outputs, form
        assert _relative(loaded.predict(exports["pixels"]), want) <= 1e-4, form
    if kind != "regression":  # sigmoid outputs: probabilities, one per positive value or tag
        assert ((want > 0) & (want < 1)).all()
        assert set(keras_export.metadata["thresholds"]) == set(outputs)
    else:
        assert keras_export.metadata["thresholds"] is None
        assert keras_export.metadata["target"]["unit"] == "mean pixel"


@pytest.mark.parametrize("kind", list(KINDS))
def test_converted_forms_name_their_one_output_by_the_target(exports, kind):
    import onnx
    import tensorflow as tf

    name = "values" if kind == "regression" else "probabilities"
    onnx_export = exports[kind]["onnx"]
    assert onnx_export.metadata["output_names"] == [name]
    graph = onnx.load(str(onnx_export.path)).graph
    assert [o.name for o in graph.output] == [name]  # no label, label_index: thresholds decide
    props = {p.key: p.value for p in onnx.load(str(onnx_export.path)).metadata_props}
    assert json.loads(props["bottleneck"])["target"]["kind"] == kind
    served = tf.saved_model.load(str(exports[kind]["saved-model"].path))
    out = served.serve(exports["pixels"][:5])
    assert list(out) == [name]
    want = load_exported(exports[kind]["keras"].path).predict(exports["pixels"][:5])
    assert _relative(out[name].numpy(), want) <= 1e-4


@pytest.mark.parametrize("form", ["onnx", "tflite", "saved-model"])
def test_predict_writes_the_same_columns_and_decisions_from_every_form(exports, form, tmp_path):
    for kind in KINDS:
        rows = {}
        for made in ("keras", form):
            out = tmp_path / f"{kind}-{made}.csv"
            predict(exports[kind][made].path, str(exports["images"]), out=out)
            with open(out, newline="") as handle:
                rows[made] = list(csv.DictReader(handle))
        keras_rows, form_rows = rows["keras"], rows[form]
        assert [list(r) for r in form_rows] == [list(r) for r in keras_rows], kind
        assert [r["id"] for r in form_rows] == exports["ids"]
        numbers = [c for c in keras_rows[0] if c not in ("id", "predicted")]
        got = np.array([[float(r[c]) for c in numbers] for r in form_rows])
        want = np.array([[float(r[c]) for c in numbers] for r in keras_rows])
        assert _relative(got, want) <= 1e-4, kind
        if "predicted" in keras_rows[0]:  # no image within 1e-4 of a threshold here
            assert [r["predicted"] for r in form_rows] == [r["predicted"] for r in keras_rows]


def test_what_a_target_export_cannot_be_is_refused_before_any_work(exports, tmp_path):
    binary, regression = exports["binary"]["cache"], exports["regression"]["cache"]
    with pytest.raises(ExportError, match=r"^a binary head exports as one model .*not as a folder"):
        export(binary, tmp_path / "folder", head="logreg")
    with pytest.raises(ExportError, match=r"^--quantize is measured as a change of top-1 acc"):
        export(binary, tmp_path / "q.tflite", head="logreg", quantize="dynamic")
    refused = r"^kernel-ridge has no exact Keras form for a regression target; export one of "
    with pytest.raises(HeadError, match=refused + "dense, ridge, linear-svr$"):
        export(regression, tmp_path / "k.onnx", head="kernel-ridge")
    with pytest.raises(HeadError, match=refused):
        plan_export(regression, tmp_path / "k.keras", head="kernel-ridge")
    with pytest.raises(HeadError, match=r"^knn has no exact Keras form for a binary target"):
        plan_export(binary, tmp_path / "k.tflite", head="knn")
    with pytest.raises(HeadError, match=r"^head 'logreg' does not fit regression targets"):
        plan_export(regression, tmp_path / "k.keras", head="logreg")
    assert list(tmp_path.iterdir()) == []


def test_export_dry_run_of_a_target_names_its_outputs_and_writes_nothing(exports, tmp_path):
    cache = exports["multilabel"]["cache"]
    plan = plan_export(cache, tmp_path / "m.onnx", head="logreg")
    assert plan.kind == "onnx" and plan.classes == ["blue", "green", "red"]
    assert plan.head_bytes == 4 * (4 * 4 * 3 + 1) * 3
    args = ["export", str(cache), "--head", "ridge", "-o", str(tmp_path / "v.tflite")]
    done = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert done.exit_code != 0 and "ridge" in done.output  # ridge fits values, not tags
    regression = exports["regression"]["cache"]
    args = ["export", str(regression), "--head", "ridge", "-o", str(tmp_path / "sm")]
    done = CliRunner().invoke(cli, [*args, "--format", "saved-model", "--dry-run"])
    assert done.exit_code == 0, done.output
    assert f"Would write {tmp_path / 'sm' / '1'} (saved-model)" in done.output
    assert "brightness" in done.output
    assert list(tmp_path.iterdir()) == []


def test_a_target_head_of_an_onnx_file_base_is_refused_in_one_line(tmp_path, monkeypatch):
    from bottleneck_transfer.features.store import CACHE_DIR_ENV
    from onnx_fixtures import two_output_model

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "store"))
    manifest = target_images(tmp_path / "imgs", n=20)  # 8x8 images: the base's input size
    base = two_output_model(tmp_path / "base.onnx")
    cache = tmp_path / "r.h5"
    extract(str(manifest), str(base), cache, target=KINDS["regression"][0], progress=False)
    with pytest.raises(ExportError, match=r"ONNX file base.*a regression head of it is not") as e:
        export(cache, tmp_path / "r.onnx", head="ridge")
    assert "\n" not in str(e.value) and not (tmp_path / "r.onnx").exists()
