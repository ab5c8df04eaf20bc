"""Baselines (random-base, raw-pixels) extracted through the normal path and compared."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import BaseModelError, BottleneckError
from bottleneck_transfer.features.baselines import (
    baseline_bases,
    randomized,
    randomized_in_place,
)
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from click.testing import CliRunner
from feature_checks import assert_features_differ

BASE = "data/bases/fashion_mnist_0-4.keras"


def test_randomized_keeps_architecture_and_preprocessing():
    base = load_base("mobilenet_v2", weights="none", image_size=32, seed=3)
    random = randomized(base, seed=0)
    assert random.description["weights_sha256"] != base.description["weights_sha256"]
    assert random.description["preprocess"] == base.description["preprocess"]
    np.testing.assert_array_equal(
        random.model.get_layer("preprocess").get_weights()[0],
        base.model.get_layer("preprocess").get_weights()[0],
    )
    assert (
        randomized(base, seed=0).description["weights_sha256"]
        == (random.description["weights_sha256"])
    )
    assert random.dim == base.dim


def test_randomized_in_place_is_randomized_on_the_base_own_model():
    base = load_base(BASE)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1)).astype("float32")
    own = np.asarray(base.model.predict_on_batch(pixels))
    want = randomized(base, seed=2)
    expected = np.asarray(want.model.predict_on_batch(pixels))
    with randomized_in_place(base, seed=2) as random:
        assert random.model is base.model  # its compiled predict function serves both
        assert random.description == want.description  # so the same cache fingerprint
        got = np.asarray(random.model.predict_on_batch(pixels))
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-6
    assert np.max(np.abs(got - own)) / np.max(np.abs(own)) > 0.1
    after = np.asarray(base.model.predict_on_batch(pixels))
    assert np.array_equal(after, own)  # its own weights are back


def test_raw_pixels_are_capped_and_keep_channels():
    base = load_base("mobilenet_v2", weights="none", image_size=96)
    pixels = baseline_bases(base, ["raw-pixels"])["raw-pixels"]
    assert pixels.image_size == (32, 32) and pixels.dim == 32 * 32 * 3
    with pytest.raises(BottleneckError, match="unknown baseline 'noise'"):
        baseline_bases(base, ["noise"])


def test_random_base_of_a_random_base_is_refused_as_noise_against_noise():
    base = load_base("mobilenet_v2", weights="none", image_size=32)
    with pytest.raises(BaseModelError, match="noise with noise") as error:
        baseline_bases(base, ["raw-pixels", "random-base"])
    assert "\n" not in str(error.value) and "--baseline random-base" in str(error.value)
    assert set(baseline_bases(base, ["raw-pixels"])) == {"raw-pixels"}


def test_compare_cli_extracts_and_reports_baselines(tmp_path, fashion_mnist_available):
    train, test = tmp_path / "train.h5", tmp_path / "test.h5"
    extract("fashion-mnist:train", BASE, train, classes="5-9", limit=500, progress=False)
    extract("fashion-mnist:test", BASE, test, classes="5-9", limit=250, progress=False)
    args = ["compare", str(train), "--test", str(test), "--heads", "logreg", "--json"]
    args += ["--baseline", "random-base", "--baseline", "raw-pixels", "--bootstrap", "200"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    names = [row["name"] for row in report["rows"]]
    assert set(names) == {"logreg", "logreg@random-base", "logreg@raw-pixels"}
    assert report["transfer"]["baseline"] in ("logreg@random-base", "logreg@raw-pixels")
    assert report["transfer"]["verdict"] in ("gain", "negative", "inconclusive")
    caches = sorted(p for p in tmp_path.glob("*.h5") if p not in (train, test))
    assert len(caches) == 4  # two baselines x two splits, named by fingerprint
    with FeatureCache.open(train) as main:
        ids, features = main.ids, main.features.copy()
    dims = set()
    for path in caches:
        with FeatureCache.open(path) as cache:
            dims.add(cache.dim)
            if len(cache) == len(ids):
                assert cache.ids == ids
                if cache.dim == features.shape[1]:
                    assert_features_differ(cache.features, features)
    assert dims == {128, 784}
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0
    assert sorted(p for p in tmp_path.glob("*.h5") if p not in (train, test)) == caches
