"""``bottleneck compare --learning-curve`` and ``--layer-sweep``: output, report files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from click.testing import CliRunner
from heads_fixtures import BASE, digits_caches, write_cache
from sklearn.datasets import load_digits


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Digits train/test, a noisy baseline of the same images, and a second 'layer'."""
    folder = tmp_path_factory.mktemp("cli")
    train, test = digits_caches(folder)
    X, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(0).random(len(y)) < 0.25  # digits_caches' split
    names = [str(i) for i in range(10)]
    noisy = X + np.random.default_rng(1).normal(0, 10, X.shape)
    out = {"train": train, "test": test}
    for role, features, base in (
        ("noisy", noisy, {**BASE, "name": "noise"}),
        ("layer", X[:, ::2], {**BASE, "layer": "block3", "weights_sha256": "sha256:bbbb"}),
    ):
        for split, keep in (("train", ~rows), ("test", rows)):
            out[f"{role}-{split}"] = write_cache(
                folder / f"{role}-{split}.h5",
                features[keep],
                y[keep],
                class_names=names,
                base=base,
                source=split,
            )
    return out


def _run(*args: str) -> object:
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_learning_curve_prints_the_table_and_writes_the_plot(caches, tmp_path):
    result = _run(
        caches["train"],
        "--test",
        caches["test"],
        "--heads",
        "logreg,knn",
        "--learning-curve",
        "5,all",
        "--repeats",
        "3",
        "--baseline-cache",
        f"noisy={caches['noisy-train']},{caches['noisy-test']}",
        "-o",
        tmp_path / "report",
    )
    assert result.exit_code == 0, result.output
    assert "Learning curve" in result.output and "transfer gain (points)" in result.output
    assert "Transfer is worth it" in result.output
    assert (tmp_path / "report" / "learning_curve.png").stat().st_size > 0
    data = json.loads((tmp_path / "report" / "learning_curve.json").read_text())
    assert data["repeats"] == {"5": 3, "all": 1} and data["baseline_lines"] == ["noisy"]


def test_learning_curve_json_and_refusals(caches):
    result = _run(caches["train"], "--heads", "logreg", "--learning-curve", "5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sizes"] == [5] and "held out" in data["evaluation"]
    refused = _run(caches["train"], "--cv", "3", "--learning-curve", "5")
    assert refused.exit_code == 1 and "Error: --learning-curve scores on --test" in refused.output
    bad = _run(caches["train"], "--learning-curve", "5,lots")
    assert bad.exit_code == 1 and "Error: learning-curve sizes are labels per class" in bad.output


def test_layer_sweep_names_the_best_layer(caches, tmp_path):
    result = _run(
        caches["train"],
        "--test",
        caches["test"],
        "--heads",
        "logreg",
        "--layer-sweep",
        f"{caches['layer-train']},{caches['layer-test']}",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "Layer sweep" in result.output and "transfers best" in result.output
    assert "block3" in result.output and "avg_pool" in result.output
    assert json.loads((tmp_path / "layer_sweep.json").read_text())["mode"] == "holdout"
    missing_test = _run(
        caches["train"], "--test", caches["test"], "--layer-sweep", caches["layer-train"]
    )
    assert missing_test.exit_code == 2 and "give TRAIN.h5,TEST.h5" in missing_test.output
    other_base = _run(caches["train"], "--cv", "3", "--layer-sweep", caches["noisy-train"])
    assert other_base.exit_code == 1 and "comes from another base" in other_base.output
    mixed = _run(caches["train"], "--learning-curve", "5", "--layer-sweep", caches["layer-train"])
    assert mixed.exit_code == 1 and "--layer-sweep compares layers on their own" in mixed.output
