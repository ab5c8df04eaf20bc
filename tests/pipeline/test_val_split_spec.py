"""[data] val_split: a pipeline on one labelled folder holds out a stratified share as test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.pipeline.run import run_pipeline
from bottleneck_transfer.pipeline.spec import SpecError, load_spec

SPEC = """
[data]
train = "imgs.npz"
{extra}

[base]
name = "pixels"
image_size = 8

[heads]
use = ["logreg", "knn"]

[export]
predict = 0

[outputs]
dir = "runs"
"""


@pytest.fixture
def folder(tmp_path):
    labels = np.repeat([0, 1], 15)
    images = np.random.default_rng(0).integers(0, 255, (30, 8, 8), dtype=np.uint8)
    images[labels == 1, :4] = 255  # learnable
    np.savez(tmp_path / "imgs.npz", images=images, labels=labels, class_names=["a", "b"])
    return tmp_path


def _spec(folder, extra: str):
    path = folder / "spec.toml"
    path.write_text(SPEC.format(extra=extra))
    return path


def test_val_split_holds_out_a_share_of_train_as_the_test_set(folder):
    record = run_pipeline(_spec(folder, "val_split = 0.2"), progress=False, echo=lambda _: None)
    steps = {step["split"]: step for step in record["extractions"]}
    assert (steps["train"]["rows"], steps["test"]["rows"]) == (24, 6)
    train, test = (FeatureCache.open(steps[part]["cache"]) for part in ("train", "test"))
    with train, test:
        assert not set(train.ids) & set(test.ids)
        split = test.provenance["source"]["options"]["split"]
    assert split == {"fraction": 0.2, "part": "val", "seed": 0}
    (report_file,) = (folder / "runs").glob("*/report/report.json")
    report = json.loads(report_file.read_text())
    assert report["mode"] == "holdout"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('val_split = 0.2\ntest = "imgs.npz"', "give it or data.test, not both"),
        ("val_split = 1.5", r"data.val_split: must be in \(0, 1\)"),
        ("", "or hold out a share of train with val_split"),
    ],
)
def test_val_split_is_validated(folder, extra, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec(folder, extra))
