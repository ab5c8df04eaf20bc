"""Augmented views compose: with batching, --update, --layers, --val-split and a resume.

An image's view ``k`` depends only on (seed, its id, k), so every way of extracting a cache
with views gives a fresh single extraction's cache: same ids in order, features,
``/views/source_row`` and fingerprint. (The Dask engine: tests/features/test_engines.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import StaleCacheError
from bottleneck_transfer.features import views as views_module
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.format import view_id
from bottleneck_transfer.features.extract import extract, extract_layers, layer_paths
from bottleneck_transfer.features.inspection import verify_cache
from bottleneck_transfer.features.sources import Split
from click.testing import CliRunner
from fault_fixtures import tiny_base_file, tiny_images
from feature_checks import assert_features_close
from PIL import Image

RECIPE = {"augment": "flip,crop,rotate,color", "views": 2, "seed": 3}
SIZE = 8


@pytest.fixture(scope="module")
def pixels():
    """A base whose features are the pixels themselves: views compare exactly."""
    return load_base("pixels", image_size=SIZE)


@pytest.fixture
def folder(tmp_path):
    """16 tiny PNGs in classes a and b, and one broken file."""
    return tiny_images(tmp_path / "imgs")


def _assert_same(path, reference, exact: bool = True) -> None:
    """Same ids in order, labels, features, source rows, failures and fingerprint."""
    with FeatureCache.open(path) as got, FeatureCache.open(reference) as want:
        assert got.ids == want.ids and got.failed == want.failed
        assert got.fingerprint == want.fingerprint and got.identity == want.identity
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.source_rows, want.source_rows)
        if exact:
            np.testing.assert_array_equal(got.features, want.features)
        else:
            assert_features_close(got.features, want.features)


def test_views_do_not_depend_on_batching_and_follow_the_layout(folder, pixels, tmp_path):
    one = extract(folder, pixels, tmp_path / "one.h5", batch_size=32, progress=False, **RECIPE)
    small = extract(folder, pixels, tmp_path / "five.h5", batch_size=5, progress=False, **RECIPE)
    assert one.fingerprint == small.fingerprint
    _assert_same(tmp_path / "five.h5", tmp_path / "one.h5")
    with FeatureCache.open(tmp_path / "one.h5") as cache:
        n = len(cache) // 3
        assert n == 16 and cache.has_views
        assert cache.ids[n:] == [view_id(i, k) for k in range(2) for i in cache.ids[:n]]
        np.testing.assert_array_equal(cache.source_rows, np.tile(np.arange(n), 3))
        assert "batch_size" not in cache.identity["views"]


def test_an_images_views_depend_only_on_seed_id_and_k():
    views = views_module.Views.make("flip,crop,rotate,color", 2, seed=0)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    batch = views.augment(pixels, ["x", "y", "z"], k=1)
    alone = views.augment(pixels[2:], ["z"], k=1)
    np.testing.assert_array_equal(batch[2], alone[0])
    assert not np.array_equal(batch[2], views.augment(pixels[2:], ["z"], k=0)[0])
    other_seed = views_module.Views.make("flip,crop,rotate,color", 2, seed=1)
    assert not np.array_equal(alone, other_seed.augment(pixels[2:], ["z"], k=1))


def test_update_with_views_extracts_only_new_images_and_equals_a_fresh_run(
    folder, pixels, tmp_path, monkeypatch
):
    out = tmp_path / "c.h5"
    extract(folder, pixels, out, batch_size=4, progress=False, **RECIPE)
    image = np.random.default_rng(9).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "a" / "99.png")  # added
    Image.fromarray(image[::-1]).save(folder / "b" / "01.png")  # changed
    (folder / "a" / "02.png").unlink()  # removed
    augmented = []
    real = views_module.Views.augment

    def spy(self, pixels, ids, k):
        augmented.extend((i, k) for i in ids)
        return real(self, pixels, ids, k)

    monkeypatch.setattr(views_module.Views, "augment", spy)
    result = extract(folder, pixels, out, update=True, batch_size=4, progress=False, **RECIPE)
    monkeypatch.undo()
    assert sorted(augmented) == sorted((i, k) for i in ("a/99.png", "b/01.png") for k in (0, 1))
    fresh = tmp_path / "fresh.h5"
    assert (
        extract(folder, pixels, fresh, progress=False, **RECIPE).fingerprint == result.fingerprint
    )
    _assert_same(out, fresh)
    with FeatureCache.open(out) as cache:
        assert cache.provenance["extraction"]["update"] == {
            "reused": 15,  # 14 unchanged images and the broken file
            "extracted": 2,
            "dropped": 1,
        }
        assert not any(i.startswith("a/02.png") for i in cache.ids)
    report = verify_cache(out)
    assert report.ok, report.problems
    assert "augmented views: K per image, in order" in [check.name for check in report.checks]
    assert extract(folder, pixels, out, update=True, progress=False, **RECIPE).up_to_date


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"augment": "flip"}, "views.recipe"),
        ({"views": 3}, "views.count"),
        ({"seed": 4}, "views.seed"),
        ({"views": 0}, "views"),
    ],
    ids=["recipe", "count", "seed", "plain"],
)
def test_update_with_other_views_is_refused(folder, pixels, tmp_path, change, differs):
    out = tmp_path / "c.h5"
    extract(folder, pixels, out, progress=False, **RECIPE)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "a" / "99.png")
    with pytest.raises(StaleCacheError, match=rf"differs in: {differs}\); extract afresh") as info:
        extract(folder, pixels, out, update=True, progress=False, **{**RECIPE, **change})
    assert "\n" not in str(info.value)


def test_each_layers_cache_holds_the_views_of_a_single_layer_run(folder, tmp_path):
    model = tiny_base_file(tmp_path / "tiny.keras")
    layers = ["pool", "out"]
    out = tmp_path / "c.h5"
    results = extract_layers(folder, model, out, layers, batch_size=5, progress=False, **RECIPE)
    for layer, path, result in zip(layers, layer_paths(out, layers), results, strict=True):
        alone = tmp_path / f"alone-{layer}.h5"
        single = extract(folder, model, alone, layer=layer, progress=False, **RECIPE)
        assert single.fingerprint == result.fingerprint
        _assert_same(path, alone, exact=False)
        with FeatureCache.open(path) as cache:
            assert len(cache) == 3 * 16 and cache.identity["views"]["count"] == 2


def test_val_split_puts_views_in_the_train_part_only(folder, pixels, tmp_path):
    out, val = tmp_path / "c.h5", tmp_path / "c-val.h5"
    args = ["extract", str(folder), "--base", "pixels", "--image-size", str(SIZE), "-o", str(out)]
    views = ["--augment", RECIPE["augment"], "--views", "2", "--seed", "3"]
    done = CliRunner().invoke(cli, [*args, "--val-split", "0.25", *views, "--json"])
    assert done.exit_code == 0, done.output
    rows = {part: summary["rows"] for part, summary in json.loads(done.stdout).items()}
    split = Split(0.25, "train", 3)
    _assert_same(out, _extract_to(tmp_path / "train.h5", folder, pixels, split, **RECIPE))
    plain_val = _extract_to(tmp_path / "val.h5", folder, pixels, Split(0.25, "val", 3))
    _assert_same(val, plain_val)
    with FeatureCache.open(out) as train, FeatureCache.open(val) as cache:
        assert train.has_views and not cache.has_views and "views" not in cache.provenance
        assert rows == {"train": len(train), "val": len(cache)} and len(train) % 3 == 0
        assert len(train) // 3 + len(cache) == 16


def _extract_to(path, folder, base, split, **options):
    extract(folder, base, path, split=split, progress=False, **options)
    return path


def test_each_file_is_decoded_once_however_many_views(folder, pixels, tmp_path, monkeypatch):
    from bottleneck_transfer.features.sources import Source

    loaded: list[str] = []
    real = Source.load

    def counting(self, item, *args, **kwargs):
        loaded.append(item.id)
        return real(self, item, *args, **kwargs)

    monkeypatch.setattr(Source, "load", counting)
    extract(folder, pixels, tmp_path / "v.h5", batch_size=4, progress=False, **RECIPE)
    with FeatureCache.open(tmp_path / "v.h5") as cache:
        images = [i for i in cache.ids if "#view" not in i]
        failed = [i for i, _ in cache.failed]
        assert len(cache) == 3 * len(images) and failed == ["a/broken.png"]  # 2 views each
    assert sorted(loaded) == sorted([*images, *failed])  # every file decoded once
