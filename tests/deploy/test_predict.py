"""Predict: sources and files, CSV/JSON output, top-k order, bad images, both export forms."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from bottleneck_transfer.cli.deploy_cmds import COMMANDS
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.errors import BottleneckError, ExportError, ImageError, SourceError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
CLASSES = ["cat", "dog", "eel"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three classes of real photo crops of varied sizes (JPEG and PNG)."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos") / "imgs"
    pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(4):
            photo = pictures[(c + k) % len(pictures)]
            crop = photo[k * 9 : k * 9 + 40 + 17 * k, c * 11 : c * 11 + 50 + 9 * c]
            Image.fromarray(crop).save(root / name / f"{k:02d}.{'jpg' if k % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def exports(photos, tmp_path_factory):
    """A .keras export (logreg) and a folder export (knn) of a pixels base on the photos."""
    folder = tmp_path_factory.mktemp("exports")
    extract(photos, load_base("pixels", image_size=12), folder / "c.h5", progress=False)
    export(folder / "c.h5", folder / "model.keras", head="logreg")
    export(folder / "c.h5", folder / "knn", head="knn:n_neighbors=3")
    return {"keras": folder / "model.keras", "folder": folder / "knn"}


@pytest.fixture
def with_bad_file(photos, tmp_path) -> Path:
    root = tmp_path / "imgs"
    shutil.copytree(photos, root)
    (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def _cli():
    group = click.Group()
    for command in COMMANDS:
        group.add_command(command)
    return group


def _expected_scores(model_path: Path, source_root: Path) -> dict[str, np.ndarray]:
    """Scores from the plain Keras model / folder on Pillow-decoded images, by id."""
    exported = load_exported(model_path)
    source = open_source(source_root)
    good = [item for item in source.items if not item.id.endswith("broken.jpg")]
    pixels = np.stack([source.load(item, exported.image_size, exported.channels) for item in good])
    return dict(zip([item.id for item in good], exported.predict(pixels), strict=True))


@pytest.mark.parametrize("kind", ["keras", "folder"])
def test_csv_rows_columns_and_top_k_order(kind, exports, with_bad_file, tmp_path):
    out = tmp_path / "predictions.csv"
    result = predict(exports[kind], with_bad_file, out=out, top_k=3, batch_size=5, progress=False)
    assert result.failed == [("dog/broken.jpg", "not an image (Pillow cannot identify it)")]
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "id",
        "label",
        "class_1",
        "probability_1",
        "class_2",
        "probability_2",
        "class_3",
        "probability_3",
    ]
    assert len(rows) == 12 == len(result) and result.ids == []  # written as it went
    good = [item.id for item in open_source(with_bad_file).items if item.id != "dog/broken.jpg"]
    assert [row["id"] for row in rows] == good  # source order, the bad image left out
    expected = _expected_scores(exports[kind], with_bad_file)
    for row in rows:
        probs = [float(row[f"probability_{r}"]) for r in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True)
        assert sorted(row[f"class_{r}"] for r in (1, 2, 3)) == CLASSES
        assert row["label"] == row["id"].split("/")[0]
        scores = expected[row["id"]]
        assert row["class_1"] == CLASSES[int(np.argmax(scores))]
        np.testing.assert_allclose(probs, np.sort(scores)[::-1], atol=2e-6)
    assert result.accuracy is not None


def test_json_output_and_top_k_capped(exports, photos, tmp_path):
    out = tmp_path / "p.json"
    result = predict(exports["keras"], photos, out=out, top_k=10, progress=False)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["classes"] == CLASSES and data["failed"] == []
    assert len(data["predictions"]) == 12
    first = data["predictions"][0]
    assert set(first) == {"id", "label", "top_k"}
    assert len(first["top_k"]) == 3  # capped at the number of classes
    assert first["top_k"][0]["class"] == result.predicted[0]
    assert abs(sum(entry["probability"] for entry in first["top_k"]) - 1) < 1e-4


def test_files_manifest_and_npz_inputs(exports, photos, tmp_path):
    files = sorted(photos.glob("*/*.png"))
    by_files = predict(exports["keras"], files, top_k=1, progress=False)
    assert by_files.ids == [str(f) for f in files]
    assert by_files.labels == [None] * len(files)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files), encoding="utf-8"
    )
    by_manifest = predict(exports["keras"], manifest, top_k=1, progress=False)
    np.testing.assert_allclose(by_manifest.top_probabilities, by_files.top_probabilities)
    assert by_manifest.accuracy == by_files.accuracy or by_files.accuracy is None
    arrays = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((12, 12), Image.BILINEAR)) for f in files]
    )
    np.savez(tmp_path / "a.npz", images=arrays, labels=np.zeros(len(files), np.int64))
    by_npz = predict(exports["folder"], tmp_path / "a.npz", top_k=2, progress=False)
    assert by_npz.ids == [f"array:{i}" for i in range(len(files))]
    assert by_npz.top_indices.shape == (len(files), 2)


def test_fashion_mnist_spec_with_classes(tmp_path, fashion_mnist_available):
    cache = tmp_path / "fm.h5"
    extract("fashion-mnist:test", FM_BASE, cache, classes="5-9", limit=150, progress=False)
    export(cache, tmp_path / "fm.keras", head="logreg", sample=8)
    result = predict(
        tmp_path / "fm.keras", "fashion-mnist:test", classes="5-9", limit=150, progress=False
    )
    assert len(result) == 150
    assert result.accuracy > 0.5
    assert set(result.labels) <= set(result.classes)


def test_strict_stops_at_the_bad_image(exports, with_bad_file):
    with pytest.raises(ImageError, match=r"dog/broken\.jpg"):
        predict(exports["keras"], with_bad_file, strict=True, progress=False)


def test_bad_inputs_give_clear_errors(exports, photos, tmp_path):
    import keras

    with pytest.raises(ExportError, match=r"model not found: .*nope\.keras"):
        predict(tmp_path / "nope.keras", photos)
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()]).save(plain)
    with pytest.raises(ExportError, match=r"plain\.keras is a Keras model but not a bottleneck"):
        predict(plain, photos)
    with pytest.raises(SourceError, match="source not found"):
        predict(exports["keras"], tmp_path / "no-such-folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images found"):
        predict(exports["keras"], empty)
    exported = load_exported(exports["keras"])
    with pytest.raises(ExportError, match=r"model\.keras takes images of shape \(N, H, W, 3\)"):
        exported.predict(np.zeros((2, 12, 12, 4), np.uint8))
    assert issubclass(ExportError, BottleneckError)


def test_cli_predict_writes_csv_and_reports_skipped(exports, with_bad_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "p.csv"
    done = runner.invoke(
        _cli(),
        ["predict", str(exports["keras"]), str(with_bad_file), "-o", str(out), "--top-k", "2"],
    )
    assert done.exit_code == 0, done.output
    assert "12 images, 1 skipped" in done.output
    assert "skipped dog/broken.jpg: not an image" in done.output
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,label,class_1,probability_1,class_2,probability_2"
    printed = runner.invoke(
        _cli(), ["predict", str(exports["folder"]), str(with_bad_file), "--json", "--quiet"]
    )
    assert printed.exit_code == 0, printed.output
    data = json.loads(printed.stdout)
    assert data["failed"][0]["id"] == "dog/broken.jpg" and len(data["predictions"]) == 12


def test_cli_predict_missing_model_is_a_clean_error(photos, tmp_path):
    from bottleneck_transfer.cli.app import _Group

    group = _Group()
    for command in COMMANDS:
        group.add_command(command)
    done = CliRunner().invoke(group, ["predict", str(tmp_path / "gone.keras"), str(photos)])
    assert done.exit_code == 1
    assert "Error: model not found:" in done.output and "gone.keras" in done.output
    assert "Traceback" not in done.output
