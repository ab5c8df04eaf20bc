"""Calibrated heads export exactly; uncalibrated ones are named scores, never probabilities."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.training import train_head
from photo_fixtures import write_photo_crops

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
FM = {"source": "fashion-mnist:test", "classes": "5-9", "limit": 150}


@pytest.fixture(scope="module")
def fm_cache(tmp_path_factory, fashion_mnist_available) -> Path:
    """Five classes, 30 images each: features of the shipped clothing base."""
    out = tmp_path_factory.mktemp("fmc") / "fm.h5"
    extract(FM["source"], FM_BASE, out, classes=FM["classes"], limit=FM["limit"], progress=False)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two classes (cat, cup) of 8 photo crops each."""
    return write_photo_crops(tmp_path_factory.mktemp("pcc"), {"train": 8}, (4, 5)) / "train"


@pytest.fixture(scope="module")
def photo_cache(photos) -> Path:
    """The photos' raw pixels at 12 x 12."""
    out = photos.parent / "photos.h5"
    extract(photos, load_base("pixels", image_size=12), out, progress=False)
    return out


def _pixels(cache: Path) -> np.ndarray:
    """The cache's images decoded by the extraction path, in row order (Fashion-MNIST)."""
    with FeatureCache.open(cache) as opened:
        ids = opened.ids
    source = open_source(FM["source"], classes=FM["classes"], limit=FM["limit"])
    by_id = {item.id: item for item in source.items}
    return np.stack([source.load(by_id[i], (28, 28), 1) for i in ids])


@pytest.mark.parametrize(
    ("spec", "method"),
    [("linear-svm", "temperature"), ("linear-svm:C=0.1,calibrate=sigmoid", "sigmoid")],
)
def test_a_calibrated_head_exports_its_probabilities_exactly(spec, method, fm_cache, tmp_path):
    trained = train_head(fm_cache, spec)
    result = export(fm_cache, tmp_path / "m.keras", head=trained)
    assert result.outputs == "probabilities" and result.metadata["calibration"] == method
    assert result.parity.n == 64 and result.parity.max_abs_diff < 1e-4
    import keras

    model = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    got = model.predict(_pixels(fm_cache), verbose=0)
    with FeatureCache.open(fm_cache) as cache:
        expected = trained.estimator.predict_proba(cache.features)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_binary_calibrated_head_exports_exactly_and_predict_names_probabilities(
    photos, photo_cache, tmp_path
):
    result = export(photo_cache, tmp_path / "svm.keras", head="linear-svm", sample=16)
    assert result.classes == ["cat", "cup"] and result.metadata["calibration"] == "temperature"
    assert result.parity.n == 16 and result.parity.max_abs_diff < 1e-4
    predict(tmp_path / "svm.keras", photos, out=tmp_path / "p.csv", top_k=2)
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "id,label,class_1,probability_1,class_2,probability_2"


def test_an_uncalibrated_head_is_exported_and_predicted_as_scores(photos, photo_cache, tmp_path):
    result = export(photo_cache, tmp_path / "raw.keras", head="linear-svm:calibrate=false")
    assert result.outputs == "decision-softmax" and result.metadata["calibration"] is None
    predict(tmp_path / "raw.keras", photos, out=tmp_path / "p.csv", top_k=2)
    with open(tmp_path / "p.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["id", "label", "class_1", "score_1", "class_2", "score_2"]
    assert not any(column.startswith("prob") for column in header)
    predict(tmp_path / "raw.keras", photos, out=tmp_path / "p.json", top_k=1)
    first = json.loads((tmp_path / "p.json").read_text())["predictions"][0]["top_k"][0]
    assert set(first) == {"class", "score"}


def test_isotonic_calibration_has_no_keras_form(photo_cache, tmp_path):
    with pytest.raises(HeadError, match="isotonic calibration has no exact Keras form"):
        export(photo_cache, tmp_path / "iso.keras", head="linear-svm:calibrate=isotonic")
