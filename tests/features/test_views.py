"""Cached augmented views: seeded, tied to their plain rows, K=0 is the plain cache."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.views import AugmentError, Views, parse_recipe
from feature_checks import assert_features_differ

BASE = "data/bases/fashion_mnist_0-4.keras"
N = 32


def _extract(path, **options):
    return extract("fashion-mnist:test", BASE, path, limit=N, progress=False, **options)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views")
    recipe = {"augment": "flip,crop,rotate,color", "views": 2, "seed": 5}
    paths = {
        "plain": folder / "plain.h5",
        "zero": folder / "zero.h5",
        "a": folder / "a.h5",
        "b": folder / "b.h5",
        "other": folder / "other.h5",
    }
    results = {
        "plain": _extract(paths["plain"]),
        "zero": _extract(paths["zero"], augment="flip", views=0, seed=5),
        "a": _extract(paths["a"], **recipe),
        "b": _extract(paths["b"], **recipe),
        "other": _extract(paths["other"], **{**recipe, "seed": 6}),
    }
    return paths, results


def test_views_are_deterministic_with_a_seed(caches):
    paths, results = caches
    with FeatureCache.open(paths["a"]) as a, FeatureCache.open(paths["b"]) as b:
        np.testing.assert_array_equal(a.features, b.features)
        assert a.ids == b.ids
    assert results["a"].fingerprint == results["b"].fingerprint
    assert results["a"].fingerprint != results["other"].fingerprint
    with FeatureCache.open(paths["a"]) as a, FeatureCache.open(paths["other"]) as other:
        assert not np.array_equal(a.features[N:], other.features[N:])


def test_zero_views_is_the_plain_cache(caches):
    paths, results = caches
    assert results["zero"].fingerprint == results["plain"].fingerprint
    assert results["a"].fingerprint != results["plain"].fingerprint
    with FeatureCache.open(paths["zero"]) as zero, FeatureCache.open(paths["plain"]) as plain:
        np.testing.assert_array_equal(zero.features, plain.features)
        assert not zero.has_views
        np.testing.assert_array_equal(zero.source_rows, np.arange(N))


def test_view_rows_follow_the_plain_rows_and_tie_to_them(caches):
    paths, _ = caches
    with FeatureCache.open(paths["a"]) as a, FeatureCache.open(paths["plain"]) as plain:
        assert len(a) == 3 * N and a.has_views
        assert a.ids[:N] == plain.ids
        np.testing.assert_array_equal(a.features[:N], plain.features)
        source = a.source_rows
        np.testing.assert_array_equal(source[:N], np.arange(N))
        np.testing.assert_array_equal(source[N:], np.tile(np.arange(N), 2))
        assert a.ids[N + 3] == f"{a.ids[3]}#view0" and a.ids[2 * N + 3] == f"{a.ids[3]}#view1"
        np.testing.assert_array_equal(a.labels[N:], np.tile(a.labels[:N], 2))
        X = a.features
        assert_features_differ(X[N:], X[source[N:]])
        assert a.identity["views"]["recipe"] == ["flip", "crop", "rotate", "color"]
        assert a.provenance["views"]["count"] == 2 and a.provenance["views"]["seed"] == 5


def test_unknown_augmentation_lists_the_valid_ones():
    with pytest.raises(AugmentError, match="zoom; valid: flip, crop, rotate, color") as info:
        parse_recipe("flip,zoom")
    assert "\n" not in str(info.value)


def test_views_without_a_recipe_are_refused_in_one_line():
    with pytest.raises(AugmentError, match="--views 8 needs --augment RECIPE") as info:
        Views.make(None, 8, 0)
    assert "\n" not in str(info.value)
    assert Views.make(None, 0, 0) is None and Views.make("flip", 0, 0) is None


def test_info_counts_images_and_names_the_views(caches):
    from bottleneck_transfer.cli import cli
    from bottleneck_transfer.features.inspection import cache_info
    from click.testing import CliRunner

    paths, _ = caches
    info, plain = cache_info(paths["a"]), cache_info(paths["plain"])
    assert (info["rows"], info["images"]) == (3 * N, N)
    assert info["views"] == {"recipe": ["flip", "crop", "rotate", "color"], "count": 2, "seed": 5}
    assert info["classes"] == plain["classes"]  # counts of images, not of rows
    assert plain["views"] is None and plain["store_dtype"] == "float32"
    shown = CliRunner().invoke(cli, ["info", str(paths["a"])]).output
    assert f"rows         {3 * N} ({N} images + 2 augmented views of each: " in shown
    assert "flip,crop,rotate,color, seed 5)" in shown


def _tampered(path, tmp_path, change) -> str:
    import shutil

    import h5py

    copy = tmp_path / "tampered.h5"
    shutil.copy(path, copy)
    with h5py.File(copy, "r+") as h5:
        change(h5)
    return str(copy)


def _set_rows(rows):
    def change(h5):
        del h5["views/source_row"]
        h5["views/source_row"] = rows

    return change


def _chained() -> np.ndarray:
    rows = np.tile(np.arange(N), 3)
    rows[2 * N] = N  # view 1 of image 0 tied to view 0 of image 0
    return rows


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set_rows(np.full(3 * N, 10**6)), "must hold one row index of this cache per row"),
        (_set_rows(np.arange(3 * N, dtype=np.float64)), "must hold one row index"),
        (_set_rows(np.arange(N)), "must hold one row index"),  # too short
        (_set_rows(_chained()), "views themselves"),
        (_set_rows(np.r_[np.arange(2 * N), np.arange(N)]), "rows named as views"),
        (_set_rows(np.r_[np.arange(N), np.roll(np.arange(N), 1), np.arange(N)]), "another label"),
        (lambda h5: h5["views"].__delitem__("source_row"), "must hold one row index"),
    ],
)
def test_a_tampered_source_row_is_one_error_naming_the_cache(caches, tmp_path, change, words):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    paths, _ = caches
    with FeatureCache.open(paths["a"]) as cache:
        labels = cache.labels
    if words == "another label":
        assert (labels != np.roll(labels, 1)).any()  # the roll ties a view to another label
    path = _tampered(paths["a"], tmp_path, change)
    result = CliRunner().invoke(cli, ["compare", path, "--heads", "logreg", "--cv", "2"])
    assert result.exit_code != 0
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and path in message and words in message
    assert "re-extract" in message
