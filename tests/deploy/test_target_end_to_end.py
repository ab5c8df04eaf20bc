"""Each target kind end to end: extract a manifest -> compare -> export .keras -> predict."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.errors import ExportError, HeadError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.target_compare import compare_targets
from target_fixtures import TAGS, target_images

KINDS = {
    "binary": ("binary:column=bright,positive=yes", ["logreg", "linear-svm"], "logreg"),
    "multilabel": ("multilabel:column=tags", ["logreg"], "logreg"),
    "regression": ("regression:column=brightness,unit=mean pixel", ["ridge", "knn"], "ridge"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return target_images(tmp_path_factory.mktemp("target-images") / "imgs")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("kind", list(KINDS))
def test_extract_compare_export_predict(kind, images, tmp_path):
    spec, heads, exported_head = KINDS[kind]
    cache = tmp_path / f"{kind}.h5"
    extract(str(images), load_base("pixels", image_size=4), cache, target=spec, progress=False)
    with FeatureCache.open(cache) as opened:
        assert opened.target.kind == kind and not opened.target.inferred
        truth = opened.targets
    result = compare_targets(cache, heads=heads, cv=3, n_bootstrap=100)
    assert result.row(exported_head).versus_baseline["beats"]
    model = tmp_path / f"{kind}.keras"
    made = export(cache, model, head=exported_head)
    assert made.parity.max_abs_diff < 1e-4
    loaded = load_exported(model)
    final = loaded.model.get_layer("probabilities").get_config()["activation"]
    assert final == ("linear" if kind == "regression" else "sigmoid")
    assert loaded.metadata["target"]["kind"] == kind
    out = tmp_path / f"{kind}.csv"
    predicted = predict(model, str(images), out=out)
    rows = _rows(out)
    assert [r["id"] for r in rows] == predicted.ids and len(rows) == len(truth)
    _check_columns(kind, rows, truth, loaded.metadata)


def _check_columns(kind: str, rows: list[dict], truth: np.ndarray, metadata: dict) -> None:
    if kind == "regression":
        assert list(rows[0]) == ["id", "brightness"]
        values = np.array([float(r["brightness"]) for r in rows])
        assert np.abs(values - truth).max() / np.abs(truth).max() < 0.05
        return
    if kind == "binary":
        assert list(rows[0]) == ["id", "prob_yes", "predicted"]
        threshold = metadata["thresholds"]["yes"]
        for row in rows:
            expected = "yes" if float(row["prob_yes"]) >= threshold else "no"
            assert row["predicted"] == expected
        right = np.mean(
            [(r["predicted"] == "yes") == bool(t) for r, t in zip(rows, truth, strict=True)]
        )
        assert right > 0.9
        return
    tags = sorted(TAGS)
    assert list(rows[0]) == ["id", *(f"prob_{t}" for t in tags), "predicted"]
    thresholds = metadata["thresholds"]
    for row in rows:
        decided = [t for t in tags if float(row[f"prob_{t}"]) >= thresholds[t]]
        assert row["predicted"] == "|".join(decided)


def test_heads_without_a_keras_form_and_the_folder_form_are_refused(images, tmp_path):
    cache = tmp_path / "r.h5"
    extract(
        str(images),
        load_base("pixels", image_size=4),
        cache,
        target=KINDS["regression"][0],
        progress=False,
    )
    with pytest.raises(HeadError, match="no exact Keras form for a regression target"):
        export(cache, tmp_path / "k.keras", head="kernel-ridge")
    with pytest.raises(ExportError, match=r"exports as one model .*not as a folder"):
        export(cache, tmp_path / "folder", head="ridge")
