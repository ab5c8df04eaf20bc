"""An ONNX file is a base: its features equal the same model in Keras (NHWC) and in PyTorch
(NCHW); layout, size, preprocessing and output come from options or its metadata; its
operators are checked; ``info-base`` shows it; it runs on ONNX Runtime only."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from bottleneck_transfer.errors import BaseModelError, GraphError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.runners import make_context, open_runner
from bottleneck_transfer.features.runtimes import Pass
from bottleneck_transfer.features.store import CACHE_DIR_ENV
from bottleneck_transfer.fingerprint import sha256_file
from feature_checks import assert_features_close, assert_features_differ
from onnx_fixtures import (
    custom_op_model,
    identity_model,
    images,
    keras_cnn,
    torch_nchw,
    two_output_model,
)

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")),
    reason="needs onnx and onnxruntime",
)


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    """A store of this test's own (the runtimes folder keeps the feature graphs)."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


def _run(base, pixels):
    """The base's features of ``pixels``, as extraction runs them."""
    runner = open_runner(Pass(base, (base,)), len(pixels), None, make_context())
    return runner(pixels)


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _cli(*args):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args])


def _cache(path):
    with FeatureCache.open(path) as cache:
        return cache.features.copy(), cache.provenance, cache.fingerprint


@pytest.mark.skipif(not importlib.util.find_spec("tf2onnx"), reason="needs tf2onnx")
def test_features_equal_the_same_model_run_in_keras(tmp_path):
    keras_file, onnx_file = keras_cnn(tmp_path / "m")
    source = images(tmp_path / "imgs", (8, 8))
    extract(source, str(keras_file), tmp_path / "k.h5", progress=False)
    result = _cli("extract", source, "--base", onnx_file, "-o", tmp_path / "o.h5", "--quiet")
    assert result.exit_code == 0, result.output
    keras_rows, _, keras_print = _cache(tmp_path / "k.h5")
    onnx_rows, provenance, onnx_print = _cache(tmp_path / "o.h5")
    assert_features_close(onnx_rows, keras_rows, rtol=1e-4)
    described = provenance["base"]
    assert described["format"] == "onnx" and described["layout"] == "nhwc"
    assert described["file_sha256"] == sha256_file(onnx_file)
    assert provenance["extraction"]["runtime"]["name"] == "onnx"
    assert onnx_print != keras_print  # another base file, another fingerprint
    refused = _cli(
        "extract", source, "--base", onnx_file, "-o", tmp_path / "r.h5", "--runtime", "keras"
    )
    assert refused.exit_code != 0
    message = refused.output.strip()
    assert "\n" not in message and "ONNX Runtime only" in message and "--runtime onnx" in message


def test_the_file_bytes_make_the_fingerprint(tmp_path):
    source = images(tmp_path / "imgs", (8, 8), n=4)
    first = identity_model(tmp_path / "a.onnx", ["N", 3, 8, 8])
    extract(source, str(first), tmp_path / "a.h5", progress=False)
    same_graph = identity_model(tmp_path / "b.onnx", ["N", 3, 8, 8], metadata={"note": "x"})
    extract(source, str(same_graph), tmp_path / "b.h5", progress=False)
    rows_a, _, print_a = _cache(tmp_path / "a.h5")
    rows_b, _, print_b = _cache(tmp_path / "b.h5")
    assert_features_close(rows_b, rows_a, rtol=0)
    assert print_a != print_b


def test_an_nchw_torch_model_equals_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path, net = torch_nchw(tmp_path / "t.onnx")
    base = load_base(path, preprocess="unit", pooling="max")
    assert base.description["layout"] == "nchw"
    assert base.image_size == (10, 12) and base.dim == 5
    pixels = _pixels((4, 10, 12, 3))
    with torch.no_grad():
        fmap = net(torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255))
    expected = fmap.amax(dim=(2, 3)).numpy()
    assert_features_close(_run(base, pixels), expected, rtol=1e-4)


def test_layout_from_the_option_or_metadata_else_refused_when_the_shape_cannot_tell(tmp_path):
    ambiguous = identity_model(tmp_path / "amb.onnx", ["N", 3, 16, 3])
    with pytest.raises(BaseModelError, match="--layout nchw or --layout nhwc"):
        load_base(ambiguous)
    nchw = load_base(ambiguous, layout="nchw")
    nhwc = load_base(ambiguous, layout="nhwc")
    assert nchw.image_size == (16, 3) and nhwc.image_size == (3, 16)
    assert nchw.description["layout"] == "nchw" and nhwc.description["layout"] == "nhwc"
    pixels = _pixels((2, 16, 3, 3))
    assert_features_close(_run(nchw, pixels), pixels.mean(axis=(1, 2)), rtol=1e-6)
    tagged = identity_model(tmp_path / "tag.onnx", ["N", 3, 16, 3], metadata={"layout": "nhwc"})
    assert load_base(tagged).image_size == (3, 16)


def test_size_and_preprocessing_from_metadata_or_options(tmp_path):
    meta = {"image_size": "20x24", "preprocess": "unit"}
    path = identity_model(tmp_path / "dyn.onnx", ["N", 3, "H", "W"], metadata=meta)
    base = load_base(path)
    assert base.image_size == (20, 24)
    pixels = _pixels((2, 20, 24, 3))
    assert_features_close(_run(base, pixels), pixels.mean(axis=(1, 2)) / 255, rtol=1e-6)
    given = load_base(path, image_size=16, preprocess="none")
    assert given.image_size == (16, 16)
    assert_features_close(_run(given, pixels[:, :16, :16]), pixels[:, :16, :16].mean((1, 2)), 1e-6)
    fixed = identity_model(tmp_path / "fixed.onnx", ["N", 3, 8, 8])
    with pytest.raises(BaseModelError, match="takes 8x8 images"):
        load_base(fixed, image_size=16)


def test_a_file_using_the_feature_graphs_own_names_composes(tmp_path):
    from onnx import helper
    from onnx_fixtures import helper_model

    node = helper.make_node("Relu", ["pixels"], ["features"])
    shape = ["N", 8, 8, 3]
    path = helper_model(
        tmp_path / "p.onnx", [node], shape, {"features": shape}, input_name="pixels"
    )
    pixels = _pixels((2, 8, 8, 3))
    assert_features_close(_run(load_base(path), pixels), pixels.mean(axis=(1, 2)), rtol=1e-6)


def test_the_output_is_chosen_by_name_and_pooled_if_4d(tmp_path):
    path = two_output_model(tmp_path / "two.onnx")
    pixels = _pixels((3, 8, 8, 3))
    mapped = load_base(path, layer="map")
    assert mapped.dim == 3 and load_base(path).description["layer"] == "map"
    assert_features_close(_run(mapped, pixels), pixels.mean(axis=(1, 2)), rtol=1e-6)
    peak = load_base(path, layer="map", pooling="max")
    assert_features_close(_run(peak, pixels), pixels.max(axis=(1, 2)), rtol=1e-6)
    flat = load_base(path, layer="flat")
    assert flat.dim == 192
    assert_features_close(_run(flat, pixels), pixels.transpose(0, 3, 1, 2).reshape(3, -1), 1e-6)
    assert_features_differ(_run(peak, pixels), _run(mapped, pixels))
    with pytest.raises(BaseModelError, match=r"no output 'nope'.*'map', 'flat'"):
        load_base(path, layer="nope")
    source = images(tmp_path / "imgs", (8, 8), n=2)
    result = _cli("extract", source, "--base", path, "--output", "nope", "-o", tmp_path / "c.h5")
    assert result.exit_code != 0 and "its outputs are: 'map', 'flat'" in result.output


def test_the_op_check_refuses_an_operator_off_the_standard_domains(tmp_path):
    path = custom_op_model(tmp_path / "evil.onnx")
    with pytest.raises(GraphError, match=r"'Exec'.*com\.example.*--trust-graph"):
        load_base(path)


def test_info_base_shows_inputs_outputs_and_op_domains(tmp_path):
    result = _cli("info-base", two_output_model(tmp_path / "two.onnx"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "layout       nchw" in lines
    assert any(line.split() == ["x", "?x3x8x8", "float32"] for line in lines)
    assert any(line.split() == ["map", "?x3x8x8", "float32"] for line in lines)
    assert any(line.split() == ["flat", "?x192", "float32"] for line in lines)
    assert any(line.split()[:4] == ["ai.onnx", "opset", "17", "standard:"] for line in lines)
    result = _cli("info-base", custom_op_model(tmp_path / "evil.onnx"), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    custom = next(d for d in info["domains"] if d["domain"] == "com.example")
    assert custom == {"domain": "com.example", "version": 1, "standard": False, "ops": ["Exec"]}
    assert info["inputs"] == [{"name": "x", "shape": ["?", 3, 8, 8], "dtype": "float32"}]


def test_info_base_of_another_kind_shows_the_base_its_settings_build():
    result = _cli("info-base", "pixels", "--image-size", "8", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["kind"], info["input"], info["features"]) == ("pixels", [8, 8, 3], 192)
    assert info["description"]["application"] == "pixels"


def test_what_rebuilds_a_keras_graph_is_refused(tmp_path):
    from bottleneck_transfer.features.baselines import randomized
    from bottleneck_transfer.features.runtimes import with_compute_dtype

    base = load_base(identity_model(tmp_path / "i.onnx", ["N", 3, 8, 8]))
    with pytest.raises(BaseModelError, match=r"ONNX file i\.onnx"):
        with_compute_dtype(base, "bfloat16")
    with pytest.raises(BaseModelError, match=r"ONNX file i\.onnx"):
        randomized(base)
    with pytest.raises(BaseModelError, match="--weights"):
        load_base(tmp_path / "i.onnx", weights="imagenet")
    with pytest.raises(BaseModelError, match=r"--layout applies to \.onnx bases"):
        load_base("pixels", layout="nchw")
    auto = open_runner(Pass(base, (base,)), 2, "auto", make_context())
    assert auto.provenance["name"] == "onnx"


def test_cache_ls_lists_the_runtimes_folder_and_prune_removes_its_entries(tmp_path, store):
    from bottleneck_transfer.entries import EntryManifest, manifest_path
    from bottleneck_transfer.features.store import CacheStore

    source = images(tmp_path / "imgs", (8, 8), n=2)
    extract(source, str(identity_model(tmp_path / "i.onnx", ["N", 3, 8, 8])), tmp_path / "x.h5")
    runtimes = store / "runtimes"
    probe = runtimes / f"probe-{'0' * 24}.json"
    with EntryManifest(manifest_path(probe)).writing(probe.name) as tmp:
        tmp.write_text('{"choice": "onnx"}', encoding="utf-8")
    stray = runtimes / f"probe-{'1' * 24}.json"
    stray.write_text("{}", encoding="utf-8")
    result = _cli("cache", "ls", "--cache-dir", store, "--long")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.splitlines() if not line.startswith("#")]
    kinds = {row[0]: (row[1], row[4]) for row in rows}
    (graph,) = [p for p in runtimes.iterdir() if p.is_dir()]
    assert kinds[str(graph)] == ("runtime", "complete")
    assert kinds[str(probe)] == ("probe", "complete")
    assert kinds[str(stray)] == ("probe", "not ours")
    pruned = CacheStore(store).prune(only=[graph, probe, stray])
    assert sorted(pruned.removed) == sorted([graph, probe])
    assert [path for path, _ in pruned.kept] == [stray]
    assert not graph.exists() and not probe.exists() and stray.exists()
