"""``bottleneck run`` with ``[data] target``: extract -> compare -> export -> predict for
binary, multi-label and regression targets; the keys such a spec does not take."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.pipeline.run import run_pipeline
from bottleneck_transfer.pipeline.spec import SpecError, load_spec
from target_fixtures import target_images

#: Each kind: its target, the heads compared, the report's figure, the prediction columns.
KINDS = {
    "binary": (
        "binary:column=bright,positive=yes",
        ["logreg", "linear-svm"],
        "pr_curves.png",
        ["id", "prob_yes", "predicted"],
    ),
    "multilabel": (
        "multilabel:column=tags",
        ["logreg"],
        "pr_curves.png",
        ["id", "prob_blue", "prob_green", "prob_red", "predicted"],
    ),
    "regression": (
        "regression:column=brightness,unit=mean pixel",
        ["ridge", "linear-svr"],
        "scatter.png",
        ["id", "brightness"],
    ),
}
SPEC = """
[data]
train = "train/targets.csv"
test = "test/targets.csv"
target = "{target}"

[base]
name = "pixels"
image_size = 4

[heads]
use = {heads}
{extra}
[export]
predict = 6

[outputs]
dir = "runs"
"""


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run-targets")
    target_images(root / "train", n=60, seed=0)
    target_images(root / "test", n=24, seed=1)
    return root


def _spec(root: Path, kind: str, extra: str = "", heads: list | None = None) -> Path:
    target, default_heads, _, _ = KINDS[kind]
    path = root / f"{kind}.toml"
    body = SPEC.format(target=target, heads=json.dumps(heads or default_heads), extra=extra)
    path.write_text(body)
    return path


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_target_spec_runs_end_to_end(manifests, kind, tmp_path):
    lines: list[str] = []
    record = run_pipeline(
        _spec(manifests, kind), cache_dir=tmp_path / "store", progress=False, echo=lines.append
    )
    _, heads, figure, columns = KINDS[kind]
    run_dir = Path(record["run_dir"])
    compared = record["compare"]
    assert compared["target"]["kind"] == kind and compared["mode"] == "holdout"
    assert [row["name"] for row in compared["rows"]] == heads
    assert compared["winner"] in heads and compared["baseline"]["name"].endswith("predictor")
    assert json.loads((run_dir / "run.json").read_text())["compare"] == compared
    assert (run_dir / "report" / figure).is_file()
    assert (run_dir / "report" / "report.json").is_file()
    exported = record["export"]
    assert exported["spec"] == compared["winner"] and exported["parity"]["n"] > 0
    model = load_exported(exported["path"])
    assert model.metadata["target"]["kind"] == kind
    assert model.metadata["thresholds"] == exported["thresholds"]
    with open(run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == columns and len(rows) == 6 == record["predict"]["images"]
    text = "\n".join(lines)
    assert "Winner: " + compared["winner"] in text and "Exported:" in text
    assert f"Predictions: {run_dir / 'predictions.csv'} (6 images)" in text
    if kind != "regression":  # the thresholds the comparison chose on all training rows
        winner = next(r for r in compared["rows"] if r["name"] == compared["winner"])
        (chosen,) = winner["thresholds"]
        assert np.allclose(list(exported["thresholds"].values()), chosen)


def test_the_export_is_the_fit_the_comparison_scored(manifests, tmp_path):
    """Holdout: the export's head, on the test cache's features, gives the winner's scores."""
    record = run_pipeline(
        _spec(manifests, "regression", heads=["ridge"]),
        cache_dir=tmp_path / "store",
        progress=False,
        echo=str,
    )
    test_cache = next(s["cache"] for s in record["extractions"] if s["split"] == "test")
    with FeatureCache.open(test_cache) as cache:
        truth = cache.targets
    model = load_exported(record["export"]["path"])
    mae = record["compare"]["rows"][0]["scores"]["mae"]
    assert model.metadata["head_spec"] == "ridge" and mae < np.abs(truth - truth.mean()).mean()


def test_cv_tuning_and_a_named_export_head(manifests, tmp_path):
    path = _spec(manifests, "binary", extra='cv = 3\ntune = true\nmetric = "pr-auc"\n')
    path.write_text(path.read_text().replace("predict = 6", 'predict = 0\nhead = "linear-svm"'))
    record = run_pipeline(path, cache_dir=tmp_path / "store", progress=False, echo=str)
    assert record["compare"]["mode"] == "cv3" and record["compare"]["metric"] == "pr-auc"
    assert record["export"]["spec"] == "linear-svm" and "predict" not in record
    assert load_exported(record["export"]["path"]).metadata["head"] == "linear-svm"


def test_a_winner_without_a_keras_form_is_not_exported_and_the_run_says_why(manifests, tmp_path):
    lines: list[str] = []
    record = run_pipeline(
        _spec(manifests, "regression", heads=["kernel-ridge"]),
        cache_dir=tmp_path / "store",
        progress=False,
        echo=lines.append,
    )
    assert record["compare"]["winner"] == "kernel-ridge" and "predict" not in record
    said = "Exported: nothing (kernel-ridge has no exact Keras form for a regression target; "
    assert said + "set export.head to one of dense, ridge, linear-svr)" in "\n".join(lines)
    assert not (Path(record["run_dir"]) / "model.keras").exists()


@pytest.mark.parametrize(
    ("kind", "extra", "heads", "message"),
    [
        ("regression", "", ["logreg"], r"heads.use: head 'logreg' does not fit regression"),
        ("binary", "", ["ridge"], r"heads.use: head 'ridge' does not fit binary"),
        ("regression", 'metric = "roc-auc"', None, r"heads.metric: 'roc-auc' is not a metric of"),
        ("binary", "learning_curve = [3]", None, r"heads.learning_curve: applies to class targ"),
        ("multilabel", '[baselines]\nuse = ["raw-pixels"]', None, r"baselines.use: applies to"),
    ],
)
def test_keys_a_target_spec_does_not_take_are_one_line_naming_them(
    manifests, kind, extra, heads, message
):
    path = _spec(manifests, kind, extra=extra, heads=heads)
    with pytest.raises(SpecError, match=message) as caught:
        load_spec(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_target_spec_without_heads_uses_the_kinds_defaults(manifests):
    path = _spec(manifests, "regression")
    path.write_text(path.read_text().replace('use = ["ridge", "linear-svr"]', ""))
    assert load_spec(path)["heads"]["use"] == ["dense", "ridge", "linear-svr", "kernel-ridge"]


def test_a_class_spec_refuses_a_regression_head(manifests, tmp_path):
    path = tmp_path / "c.toml"
    body = '[data]\ntrain = "{}"\n[base]\nname = "pixels"\n[heads]\ncv = 3\nuse = ["ridge"]\n'
    path.write_text(body.format(manifests / "train"))
    with pytest.raises(SpecError, match=r":7: heads.use: head 'ridge' does not fit class targets"):
        load_spec(path)


def test_a_named_export_head_without_a_keras_form_is_refused_in_the_spec(manifests):
    path = _spec(manifests, "regression", heads=["ridge", "kernel-ridge"])
    path.write_text(path.read_text().replace("predict = 6", 'head = "kernel-ridge"'))
    with pytest.raises(SpecError, match=r"export.head: kernel-ridge has no exact Keras form"):
        load_spec(path)


def test_val_split_holds_out_a_share_of_a_target_manifest(manifests, tmp_path):
    path = _spec(manifests, "regression", heads=["ridge"])
    path.write_text(path.read_text().replace('test = "test/targets.csv"', "val_split = 0.25"))
    record = run_pipeline(path, cache_dir=tmp_path / "store", progress=False, echo=str)
    rows = {step["split"]: step["rows"] for step in record["extractions"]}
    assert rows == {"train": 45, "test": 15} and record["compare"]["mode"] == "holdout"
    assert "predict" not in record  # no test source to predict


def test_a_target_run_whose_features_would_stream_stops_in_one_line(
    manifests, tmp_path, monkeypatch
):
    from bottleneck_transfer.errors import HeadError
    from bottleneck_transfer.heads import budget

    monkeypatch.setattr(budget, "machine_memory", lambda: 2000)  # a 1000-byte default budget
    path = _spec(manifests, "regression", heads=["ridge"])
    with pytest.raises(HeadError, match=r"would be streamed \(they exceed the memory budget"):
        run_pipeline(path, cache_dir=tmp_path / "store", progress=False, echo=str)
