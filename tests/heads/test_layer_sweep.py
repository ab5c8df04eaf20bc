"""Layer sweeps: the same rows for every layer, the best layer tested against the others."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.layer_sweep import format_sweep, layer_sweep, write_sweep_report
from bottleneck_transfer.heads.stats import family_tests
from heads_fixtures import write_cache
from sklearn.datasets import load_digits

HEADS = ["logreg", "knn"]


def _base(layer: str, dim: int, **other) -> dict:
    return {
        "name": "test-base",
        "layer": layer,
        "feature_dim": dim,
        "weights_sha256": f"sha256:{layer}",
        **other,
    }


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """Digits through three 'layers' of one base: clean, slightly noisy, and drowned."""
    folder = tmp_path_factory.mktemp("layers")
    X, y = load_digits(return_X_y=True)
    test = np.random.default_rng(0).random(len(y)) < 0.3
    rng = np.random.default_rng(1)
    versions = {
        "block5": X,
        "block4": X + rng.normal(0, 1.0, X.shape),
        "block1": (X + rng.normal(0, 12.0, X.shape))[:, :32],
        "block5-copy": X,
    }
    names = [str(i) for i in range(10)]
    out = {}
    for layer, features in versions.items():
        base = _base(layer, features.shape[1])
        out[layer] = tuple(
            write_cache(
                folder / f"{layer}-{split}.h5",
                features[rows],
                y[rows],
                class_names=names,
                base=base,
                source=split,
            )
            for split, rows in (("train", ~test), ("test", test))
        )
    return out


def test_holdout_sweep_ranks_layers_and_tests_the_best(layers, tmp_path):
    sweep = layer_sweep(
        [layers["block1"], layers["block4"], layers["block5"]], heads=HEADS, n_bootstrap=200
    )
    assert [layer.name for layer in sweep.layers][-1] == "block1"
    assert sweep.best.name in ("block5", "block4") and sweep.mode == "holdout"
    # Ranked by validation scores on training rows only; the chosen layer first.
    assert sweep.best.name == sweep.choices[0].chosen
    validation = [layer.validation for layer in sweep.layers]
    assert validation == sorted(validation, reverse=True)
    assert all(
        len(c.val_rows) and np.intersect1d(c.val_rows, c.fit_rows).size == 0 for c in sweep.choices
    )
    labels = sweep.best.comparison.eval_labels
    right = sweep.best.best.predictions == labels
    pairs = [(right, layer.best.predictions == labels) for layer in sweep.layers[1:]]
    expected = family_tests(pairs, "layers vs best layer")
    for layer, result in zip(sweep.layers[1:], expected, strict=True):
        assert (layer.test["b"], layer.test["c"]) == (result["b"], result["c"])
        assert layer.test["p_holm"] == pytest.approx(result["p_holm"])
        assert layer.test["family"] == "layers vs best layer"
    assert sweep.layers[-1].test["p_holm"] < 0.05
    assert sweep.verdict.startswith(f"Layer {sweep.best.name} (")
    assert "block1" in format_sweep(sweep)

    files = write_sweep_report(sweep, tmp_path / "report")
    data = json.loads(files["layer_sweep.json"].read_text())
    assert data["best_layer"] == sweep.best.name and len(data["layers"]) == 3
    assert "| block1 |" in files["layer_sweep.md"].read_text()


def test_tied_layers_are_called_not_significant(layers):
    sweep = layer_sweep([layers["block5"], layers["block5-copy"]], heads=["logreg"])
    assert [layer.name for layer in sweep.layers] == ["block5", "block5-copy"]
    assert sweep.layers[1].test["p_holm"] == 1.0
    assert "The lead is NOT significant: block5-copy is statistically tied" in sweep.verdict


def test_cv_sweep_uses_the_same_folds_for_every_layer(layers):
    sweep = layer_sweep(
        [(layers["block5"][0], None), (layers["block1"][0], None)], heads=["logreg"], cv=3
    )
    first, second = (layer.comparison for layer in sweep.layers)
    assert sweep.mode == "cv" and first.n_folds == 3
    for (fit_a, eval_a), (fit_b, eval_b) in zip(first.splits, second.splits, strict=True):
        np.testing.assert_array_equal(fit_a, fit_b)
        np.testing.assert_array_equal(eval_a, eval_b)
    assert "Nadeau–Bengio corrected t-interval" in format_sweep(sweep)
    assert sweep.layers[1].test["method"] == "Nadeau–Bengio corrected t"


def test_caches_of_another_base_or_other_images_are_refused(layers, tmp_path):
    X, y = load_digits(return_X_y=True)
    train, _ = layers["block5"]
    names = [str(i) for i in range(10)]
    rows = np.random.default_rng(0).random(len(y)) >= 0.3
    other_base = write_cache(
        tmp_path / "other-base.h5",
        X[rows],
        y[rows],
        class_names=names,
        base=_base("block5", 64, name="another-base"),
        source="train",
    )
    with pytest.raises(HeadError, match=r"another base .*differs in: name"):
        layer_sweep([(train, None), (other_base, None)], cv=3)
    other_images = write_cache(
        tmp_path / "other-images.h5",
        X[rows],
        y[rows],
        class_names=names,
        base=_base("block2", 64),
        source="elsewhere",
    )
    with pytest.raises(HeadError, match="holds other images"):
        layer_sweep([(train, None), (other_images, None)], cv=3)
    with pytest.raises(HeadError, match="at least two layer caches"):
        layer_sweep([(train, None)])
    with pytest.raises(HeadError, match="test cache for every layer"):
        layer_sweep([layers["block5"], (layers["block4"][0], None)])
