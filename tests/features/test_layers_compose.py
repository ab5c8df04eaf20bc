"""Several layers in one pass compose with --update and --val-split (the Dask engine:
tests/features/test_engines.py): each layer's cache equals a single-layer extraction of it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import StaleCacheError
from bottleneck_transfer.features import update as update_module
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract, extract_layers, layer_paths
from bottleneck_transfer.features.sources import Split
from click.testing import CliRunner
from fault_fixtures import tiny_base_file, tiny_images
from PIL import Image

LAYERS = ["pool", "out"]
RECIPE = {"augment": "flip,crop,rotate,color", "views": 2, "seed": 3}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_base_file(tmp_path_factory.mktemp("base") / "tiny.keras")


@pytest.fixture
def folder(tmp_path):
    """16 tiny PNGs in classes a and b, and one broken file."""
    return tiny_images(tmp_path / "imgs")


def _assert_same(path, reference) -> None:
    """Same ids in order, labels, features, source rows, failures and fingerprint."""
    with FeatureCache.open(path) as got, FeatureCache.open(reference) as want:
        assert got.ids == want.ids and got.failed == want.failed
        assert got.fingerprint == want.fingerprint and got.identity == want.identity
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.source_rows, want.source_rows)
        np.testing.assert_array_equal(got.features, want.features)


def _assert_single_layer_runs(folder, model, out, tmp_path, tag="", **options) -> None:
    """Each layer's cache at ``layer_paths(out)`` equals ``extract(layer=...)`` afresh."""
    for layer, path in zip(LAYERS, layer_paths(out, LAYERS), strict=True):
        alone = tmp_path / f"alone{tag}" / f"{layer}.h5"
        extract(folder, model, alone, layer=layer, batch_size=4, progress=False, **options)
        _assert_same(path, alone)


def _change(folder) -> None:
    image = np.random.default_rng(9).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "a" / "99.png")  # added
    Image.fromarray(image[::-1]).save(folder / "b" / "01.png")  # changed
    (folder / "a" / "02.png").unlink()  # removed


def test_a_single_layer_list_equals_a_single_layer_extraction(folder, model, tmp_path):
    out = tmp_path / "c.h5"
    (result,) = extract_layers(folder, model, out, ["out"], batch_size=4, progress=False)
    alone = tmp_path / "alone.h5"
    assert extract(folder, model, alone, layer="out", progress=False).fingerprint == (
        result.fingerprint
    )
    _assert_same(out, alone)


def test_update_runs_new_and_changed_images_once_for_every_layer(
    folder, model, tmp_path, monkeypatch, spy_extracted_parts
):
    out = tmp_path / "c.h5"
    extract_layers(folder, model, out, LAYERS, batch_size=4, progress=False, **RECIPE)
    _change(folder)
    extracted = spy_extracted_parts()
    results = extract_layers(
        folder, model, out, LAYERS, update=True, batch_size=4, progress=False, **RECIPE
    )
    monkeypatch.undo()
    assert extracted == [["a/99.png", "b/01.png"]]  # one pass, for both layers
    assert not any(r.up_to_date for r in results)
    _assert_single_layer_runs(folder, model, out, tmp_path, **RECIPE)
    for path in layer_paths(out, LAYERS):
        with FeatureCache.open(path) as cache:
            update = cache.provenance["extraction"]["update"]
            assert update == {"reused": 15, "extracted": 2, "dropped": 1}
            assert len(cache) == 3 * 16
        assert not update_module.update_path(path).exists()
    again = extract_layers(folder, model, out, LAYERS, update=True, progress=False, **RECIPE)
    assert all(r.up_to_date for r in again)


def test_update_extracts_what_is_new_for_any_layer_and_a_missing_layer_whole(
    folder, model, tmp_path, spy_extracted_parts
):
    out = tmp_path / "c.h5"
    pool, last = layer_paths(out, LAYERS)
    extract_layers(folder, model, out, LAYERS, batch_size=4, progress=False)
    _change(folder)
    extract(folder, model, last, layer="out", update=True, progress=False)  # only `out` is new
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "b" / "77.png")
    extracted = spy_extracted_parts()
    extract_layers(folder, model, out, LAYERS, update=True, batch_size=4, progress=False)
    assert extracted == [["a/99.png", "b/01.png", "b/77.png"]]  # new for `pool`, or for both
    _assert_single_layer_runs(folder, model, out, tmp_path)
    pool.unlink()  # a layer without a cache: extracted whole, in the same pass
    (folder / "b" / "77.png").unlink()
    extracted.clear()
    results = extract_layers(folder, model, out, LAYERS, update=True, batch_size=4, progress=False)
    assert len(extracted) == 1 and len(extracted[0]) == 17  # every image, the broken one too
    assert [r.up_to_date for r in results] == [False, False]
    _assert_single_layer_runs(folder, model, out, tmp_path, tag="2")


def test_update_of_layers_from_another_base_is_refused(folder, model, tmp_path):
    out = tmp_path / "c.h5"
    extract_layers(folder, model, out, LAYERS, progress=False)
    _change(folder)
    other = tiny_base_file(tmp_path / "other.keras")  # other random weights
    with pytest.raises(
        StaleCacheError, match=r"--update keeps the base.*differs in: base\..*extract afresh"
    ) as info:
        extract_layers(folder, other, out, LAYERS, update=True, progress=False)
    assert "\n" not in str(info.value)


def test_cli_layers_with_val_split_views_and_update(folder, model, tmp_path):
    out, val = tmp_path / "c.h5", tmp_path / "c-val.h5"
    args = ["extract", str(folder), "--base", str(model), "-o", str(out), "--batch-size", "4"]
    args += ["--layers", ",".join(LAYERS), "--val-split", "0.25", "--json"]
    args += ["--augment", RECIPE["augment"], "--views", "2", "--seed", "3"]
    for run in ("fresh", "update"):
        if run == "update":
            _change(folder)
        done = CliRunner().invoke(cli, [*args, *(["--update"] if run == "update" else [])])
        assert done.exit_code == 0, done.output
        summary = json.loads(done.stdout)
        assert list(summary) == ["train", "val"]
        for part, where, options in (("train", out, RECIPE), ("val", val, {})):
            paths = layer_paths(where, LAYERS)
            assert [summary[part][layer]["path"] for layer in LAYERS] == [str(p) for p in paths]
            for layer, path in zip(LAYERS, paths, strict=True):
                alone = tmp_path / run / f"{part}-{layer}.h5"
                split = Split(0.25, part, 3)
                extract(folder, model, alone, layer=layer, split=split, progress=False, **options)
                _assert_same(path, alone)
        with FeatureCache.open(out) as train, FeatureCache.open(val) as held_out:
            assert train.has_views and not held_out.has_views
            updated = "update" in train.provenance["extraction"]
            assert updated == (run == "update") == ("update" in held_out.provenance["extraction"])
    refused = CliRunner().invoke(cli, [*args, "--layer", "out"])
    assert refused.exit_code == 2
    assert "--layers cannot be combined with --layer" in refused.output


def test_layers_in_bfloat16_equal_single_layer_runs_in_bfloat16(folder, model, tmp_path):
    out = tmp_path / "c.h5"
    half = {"compute_dtype": "bfloat16", "batch_size": 4, "progress": False}
    extract_layers(folder, model, out, LAYERS, **half)
    for layer, path in zip(LAYERS, layer_paths(out, LAYERS), strict=True):
        alone = tmp_path / f"alone-{layer}.h5"
        extract(folder, model, alone, layer=layer, **half)
        _assert_same(path, alone)  # the joint model computes in bfloat16 too
