"""predict: the file format follows -o's extension or --format; --json prints the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.features.extract import extract
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"


@pytest.fixture(scope="module")
def model(tmp_path_factory, fashion_mnist_available):
    folder = tmp_path_factory.mktemp("fm")
    extract("fashion-mnist:train", FM_BASE, folder / "c.h5", classes="5-9", limit=100)
    export(folder / "c.h5", folder / "model.keras", head="logreg", sample=4)
    return folder / "model.keras"


def _predict(model, *args):
    images = ["fashion-mnist:test", "--classes", "5-9", "--limit", "6", "--quiet"]
    return CliRunner().invoke(cli, ["predict", str(model), *images, *map(str, args)])


def test_file_format_follows_the_extension_or_format(model, tmp_path):
    done = _predict(model, "-o", tmp_path / "p.json")
    assert done.exit_code == 0, done.output
    assert len(json.loads((tmp_path / "p.json").read_text())["predictions"]) == 6
    assert done.stdout.startswith(f"Wrote {tmp_path / 'p.json'}: 6 images")
    done = _predict(model, "-o", tmp_path / "p.txt", "--format", "json")
    assert done.exit_code == 0, done.output
    assert len(json.loads((tmp_path / "p.txt").read_text())["predictions"]) == 6
    done = _predict(model, "-o", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().startswith("id,label,class_1,probability_1")


def test_json_prints_the_result(model, tmp_path):
    done = _predict(model, "-o", tmp_path / "p.csv", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["path"] == str(tmp_path / "p.csv") and summary["images"] == 6
    assert 0 <= summary["accuracy"] <= 1 and summary["failed"] == []
    assert (tmp_path / "p.csv").read_text().startswith("id,label")  # the file stays CSV
    printed = _predict(model, "--json")
    assert len(json.loads(printed.stdout)["predictions"]) == 6
    assert _predict(model, "--format", "json").stdout == printed.stdout
    assert _predict(model).stdout.startswith("id,label,class_1")
