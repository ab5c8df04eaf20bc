"""Several layers in one pass: each stored layer equals a single-layer extraction."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract, extract_layers, layer_paths
from feature_checks import assert_features_close

SIZE = 32
LAYERS = ["out_relu", "block_3_project_BN", "block_1_expand_relu"]
MOBILENET = {"weights": "none", "image_size": SIZE}


@pytest.fixture
def npz(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8)
    path = tmp_path / "a.npz"
    np.savez(path, images=images, labels=np.arange(40) % 4)
    return path


def test_each_layer_equals_a_single_layer_extraction(npz, tmp_path):
    out = tmp_path / "c.h5"
    results = extract_layers(
        npz, "mobilenet_v2", out, LAYERS, batch_size=16, progress=False, **MOBILENET
    )
    paths = layer_paths(out, LAYERS)
    assert paths == [
        out,
        tmp_path / "c.block_3_project_BN.h5",
        tmp_path / "c.block_1_expand_relu.h5",
    ]
    assert [r.path for r in results] == paths
    for layer, path, result in zip(LAYERS, paths, results, strict=True):
        alone = tmp_path / f"alone-{layer}.h5"
        base = load_base("mobilenet_v2", layer=layer, **MOBILENET)
        single = extract(npz, base, alone, batch_size=16, progress=False)
        assert single.fingerprint == result.fingerprint
        with FeatureCache.open(path) as a, FeatureCache.open(alone) as b:
            assert a.ids == b.ids and a.dim == b.dim and a.identity == b.identity
            assert a.provenance["base"]["layer"] == layer
            assert_features_close(a.features, b.features, rtol=1e-4)
        # a later single-layer run at that path finds it up to date
        assert extract(npz, base, path, batch_size=16, progress=False).up_to_date
    again = extract_layers(npz, "mobilenet_v2", out, LAYERS, progress=False, **MOBILENET)
    assert all(r.up_to_date for r in again)


def test_unknown_layers_are_named_with_close_names(npz, tmp_path):
    with pytest.raises(
        BaseModelError, match=r"layer 'out_relux' not found.*Did you mean 'out_relu'"
    ):
        extract_layers(
            npz,
            "mobilenet_v2",
            tmp_path / "c.h5",
            ["out_relux", "block_1_expand_relu"],
            **MOBILENET,
        )
    assert not list(tmp_path.glob("c*"))


def _cli(*args):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_layers_writes_one_cache_per_layer(npz, tmp_path):
    out = tmp_path / "c.h5"
    base = ["--base", "mobilenet_v2", "--weights", "none", "--image-size", SIZE, "-o", out]
    result = _cli("extract", npz, *base, "--layers", "out_relu,block_1_expand_relu", "--json")
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "c.block_1_expand_relu.h5").exists()
    refused = _cli("extract", npz, *base, "--layers", "out_relu", "--layer", "out_relu")
    assert refused.exit_code == 2 and "--layers cannot be combined with --layer" in refused.output


def test_the_classifiers_pooling_layer_is_the_default_cut(npz, tmp_path):
    """``avg_pool`` (the name in ``ResNet50()``'s summary) is the penultimate features."""
    options = {"weights": "none", "image_size": SIZE}
    default = load_base("efficientnetb0", **options)
    named = load_base("efficientnetb0", layer="avg_pool", **options)
    assert named.description == default.description  # so the same cache fingerprint
    results = extract_layers(
        npz,
        "efficientnetb0",
        tmp_path / "c.h5",
        ["avg_pool", "block6a_expand_activation"],
        progress=False,
        **options,
    )
    fresh = extract(npz, "efficientnetb0", tmp_path / "d.h5", progress=False, **options)
    assert results[0].fingerprint == fresh.fingerprint
    with FeatureCache.open(tmp_path / "c.h5") as a, FeatureCache.open(tmp_path / "d.h5") as b:
        np.testing.assert_array_equal(a.features, b.features)
    with pytest.raises(BaseModelError, match="'avg_pool' not found"):
        load_base("efficientnetb0", layer="avg_pool", pooling="max", **options)
