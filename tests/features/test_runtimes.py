"""Runtimes: ONNX Runtime's features equal Keras', a conversion that breaks parity or the op
check is refused, ``auto`` records its choice and probes once per base and machine."""

from __future__ import annotations

import importlib.util
import json
import time

import numpy as np
import pytest
from bottleneck_transfer.errors import BaseModelError, GraphError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract, extract_layers, layer_paths
from bottleneck_transfer.features.options import ExtractOptions
from bottleneck_transfer.features.runners import RUNTIMES_FOLDER, make_context, probe
from bottleneck_transfer.features.runners import onnx as onnx_runtime
from bottleneck_transfer.features.runners.keras import KerasRunner
from bottleneck_transfer.features.runtimes import Pass
from bottleneck_transfer.features.store import CACHE_DIR_ENV
from fault_fixtures import tiny_base_file, tiny_images
from feature_checks import assert_features_close, relative_difference

# find_spec, not importorskip: importing tf2onnx imports TensorFlow at collection.
pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnxruntime", "tf2onnx")),
    reason="needs onnxruntime and tf2onnx",
)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store of this test's own: conversions and probes start from nothing."""
    folder = tmp_path / "store"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder / RUNTIMES_FOLDER


@pytest.fixture
def tiny(tmp_path):
    return tiny_images(tmp_path / "imgs", n=12, broken=False), tiny_base_file(tmp_path / "b.keras")


@pytest.fixture
def conversions(monkeypatch):
    """Counts the conversions (Keras' exporter calls)."""
    calls = []
    real = onnx_runtime._export

    def counting(model, path):
        calls.append(path)
        real(model, path)

    monkeypatch.setattr(onnx_runtime, "_export", counting)
    return calls


def _features(path):
    with FeatureCache.open(path) as cache:
        return cache.features.copy(), cache.fingerprint, cache.provenance["extraction"]["runtime"]


def _cli(*args):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_onnx_features_equal_keras_and_share_the_fingerprint(tiny, tmp_path, store, conversions):
    images, base = tiny
    extract(images, str(base), tmp_path / "k.h5", progress=False)
    result = _cli("extract", images, "--base", base, "-o", tmp_path / "o.h5", "--runtime", "onnx")
    assert result.exit_code == 0, result.output
    keras_rows, keras_print, keras_runtime = _features(tmp_path / "k.h5")
    onnx_rows, onnx_print, onnx_runtime_record = _features(tmp_path / "o.h5")
    assert_features_close(onnx_rows, keras_rows, rtol=1e-4)
    assert onnx_print == keras_print
    assert keras_runtime["name"] == "keras" and onnx_runtime_record["name"] == "onnx"
    assert onnx_runtime_record["parity"] <= onnx_runtime.TOLERANCE
    assert onnx_runtime_record["opset"] == onnx_runtime.OPSET
    assert onnx_runtime_record["graph_optimization"] == "ORT_ENABLE_ALL"
    (folder,) = [p for p in store.iterdir() if p.is_dir()]
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "conversion.json"}
    assert len(conversions) == 1
    # the stored graph is reused: no second conversion
    extract(images, str(base), tmp_path / "o2.h5", runtime="onnx", progress=False)
    assert len(conversions) == 1
    assert_features_close(_features(tmp_path / "o2.h5")[0], keras_rows, rtol=1e-4)


def test_several_layers_and_views_run_on_onnx(tiny, tmp_path, store):
    images, base = tiny
    layers = ["pool", "conv"]
    views = {"augment": "flip,crop", "views": 2, "seed": 3, "progress": False}
    extract_layers(images, str(base), tmp_path / "k.h5", layers, **views)
    extract_layers(images, str(base), tmp_path / "o.h5", layers, runtime="onnx", **views)
    for want, got in zip(
        layer_paths(tmp_path / "k.h5", layers), layer_paths(tmp_path / "o.h5", layers), strict=True
    ):
        keras_rows, keras_print, _ = _features(want)
        onnx_rows, onnx_print, runtime = _features(got)
        assert runtime["name"] == "onnx" and onnx_print == keras_print
        assert onnx_rows.shape == keras_rows.shape == (12 * 3, 4)
        assert_features_close(onnx_rows, keras_rows, rtol=1e-4)


def _perturbing(real, scale):
    """An exporter writing the graph with its first weight scaled by ``scale``."""
    import onnx
    from onnx import numpy_helper

    def export(model, path):
        real(model, path)
        graph = onnx.load(str(path))
        first = next(t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
        first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * scale, first.name))
        onnx.save(graph, str(path))

    return export


def test_a_conversion_off_parity_is_refused_with_the_figure(tiny, tmp_path, store, monkeypatch):
    images, base = tiny
    monkeypatch.setattr(onnx_runtime, "_export", _perturbing(onnx_runtime._export, 1.5))
    with pytest.raises(BaseModelError, match=r"differs from Keras by \d\.\d+(e-0\d)? \(max") as e:
        extract(images, str(base), tmp_path / "o.h5", runtime="onnx", progress=False)
    assert "--runtime keras" in str(e.value) and "\n" not in str(e.value)
    assert float(str(e.value).split("by ")[1].split()[0]) > onnx_runtime.TOLERANCE
    assert not store.exists() or not [p for p in store.iterdir() if p.is_dir()]
    assert not (tmp_path / "o.h5").exists()
    # auto falls back to Keras and says why
    extract(images, str(base), tmp_path / "a.h5", runtime="auto", progress=False)
    runtime = _features(tmp_path / "a.h5")[2]
    assert runtime["name"] == "keras" and runtime["chosen_by"] == "auto"
    assert "differs from Keras" in runtime["probe"]["onnx_unavailable"]


def test_a_graph_off_the_op_allow_list_is_refused(tiny, tmp_path, store, monkeypatch):
    import onnx

    images, base = tiny
    real = onnx_runtime._export

    def custom_domain(model, path):
        real(model, path)
        graph = onnx.load(str(path))
        graph.graph.node[0].domain = "com.example.evil"
        onnx.save(graph, str(path))

    monkeypatch.setattr(onnx_runtime, "_export", custom_domain)
    with pytest.raises(GraphError, match=r"com\.example\.evil.*--trust-graph"):
        extract(images, str(base), tmp_path / "o.h5", runtime="onnx", progress=False)


@pytest.mark.parametrize(("rates", "choice"), [((10.0, 20.0), "onnx"), ((20.0, 10.0), "keras")])
def test_auto_records_its_choice_and_probes_once(tiny, tmp_path, store, monkeypatch, rates, choice):
    images, base = tiny
    probed = []

    def fake_rates(runners, pixels):  # the rates decide; the wall clock never does in a test
        probed.extend(runner.name for runner in runners.values())
        assert len(pixels) == 13  # the run's batch size
        return dict(zip(("keras", "onnx"), rates, strict=True))

    monkeypatch.setattr(probe, "rates", fake_rates)
    extract(images, str(base), tmp_path / "a.h5", runtime="auto", batch_size=13, progress=False)
    runtime = _features(tmp_path / "a.h5")[2]
    assert sorted(probed) == ["keras", "onnx"]
    assert runtime["name"] == choice and runtime["chosen_by"] == "auto"
    assert runtime["probe"]["rates"] == {"keras": rates[0], "onnx": rates[1]}
    assert runtime["probe"]["machine"]["cores"] >= 1
    (stored,) = store.glob("probe-*[0-9a-f].json")  # not its manifest
    assert json.loads(stored.read_text())["choice"] == choice
    # a second run reads the probe back: nothing probed again
    extract(images, str(base), tmp_path / "b.h5", runtime="auto", batch_size=13, progress=False)
    again = _features(tmp_path / "b.h5")[2]
    assert len(probed) == 2
    assert again["name"] == choice and again["probe"]["read_back"] == str(stored)
    keras_rows = extract(images, str(base), tmp_path / "k.h5", progress=False)
    assert_features_close(_features(tmp_path / "b.h5")[0], _features(keras_rows.path)[0], 1e-4)


def test_an_unknown_runtime_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"auto, keras, onnx\. Received: runtime='tflite'"):
        ExtractOptions(runtime="tflite")


@pytest.mark.slow
def test_mobilenet_v2_converts_within_the_tolerance(store):
    """A keras.applications base (random weights, alpha 0.35 at 96) and two of its layers."""
    import keras
    from bottleneck_transfer.features.bases.common import Base

    full = keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(96, 96, 3), weights=None, include_top=False, pooling="avg"
    )
    inner = full.get_layer("block_13_expand_relu").output
    joint = keras.Model(full.input, [keras.layers.GlobalAveragePooling2D()(inner), full.output])
    base = Base(joint, "mobilenet_v2_035", (96, 96), 3, {"name": "mobilenet_v2_035"})
    job = Pass(base, (base, base), (0, 1))
    context = make_context()
    pixels = onnx_runtime.probe_pixels(job, 6, seed=1)
    want = KerasRunner(joint, 6)(pixels)
    got = onnx_runtime.open(job, 6, context)(pixels)
    assert [g.shape for g in got] == [(6, 192), (6, 1280)]
    for a, b in zip(got, want, strict=True):
        assert relative_difference(a, b) <= 1e-4


def test_the_probe_times_the_runtimes_in_turns_and_keeps_each_best_call():
    calls = []

    class Runner:
        def __init__(self, name: str, seconds: list[float]) -> None:
            self.name, self.seconds = name, iter(seconds)

        def __call__(self, pixels):
            calls.append(self.name)
            time.sleep(next(self.seconds))

    runners = {"keras": Runner("keras", [0, 0.02, 0.3]), "onnx": Runner("onnx", [0, 0.2, 0.05])}
    got = probe.rates(runners, np.zeros((4, 2, 2, 3), np.uint8))  # a burst hits each once
    assert calls == ["keras", "onnx"] * (1 + probe.PROBE_CALLS)
    assert got["keras"] > got["onnx"]  # their best calls: 0.02 s against 0.05 s
