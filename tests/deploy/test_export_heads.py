"""Export and predict trust only registered head kinds; any registered kind goes end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.errors import ExportError, HeadError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.registry import (
    Axis,
    HeadKind,
    SearchSpace,
    classifier,
    register_head,
    unregister_head,
)
from bottleneck_transfer.heads.training import (
    LabeledData,
    evaluate_head,
    load_head,
    save_head,
    train_head,
)
from bottleneck_transfer.heads.tuning import tune_head
from click.testing import CliRunner
from heads_fixtures import evil_head_file, evil_pipeline
from PIL import Image
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PAYLOAD = ("numpy.full_like", "numpy.take", "numpy.testing._private.utils.runstring")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three classes of real photo crops (6 each), JPEG and PNG."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos") / "imgs"
    pictures = [data.astronaut(), data.coffee(), data.chelsea()]
    for c, name in enumerate(["cat", "dog", "eel"]):
        (root / name).mkdir(parents=True)
        for k in range(6):
            crop = pictures[c][k * 11 : k * 11 + 60 + 7 * k, k * 5 : k * 5 + 70]
            Image.fromarray(crop).save(root / name / f"{k}.{'jpg' if k % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def cache(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "photos.h5"
    base = load_base("mobilenet_v2", weights="none", image_size=32)
    extract(photos, base, out, batch_size=8, progress=False)
    return out


def _run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_linear_svm_exports_as_a_folder_and_predicts(cache, photos, tmp_path):
    out = tmp_path / "model_dir"
    result = _run("export", cache, "--head", "linear-svm", "-o", out, "--sample", 6)
    assert result.exit_code == 0, result.output
    exported = load_exported(out)
    assert exported.metadata["head"] == "linear-svm"
    assert type(classifier(exported.head)).__name__ == "LinearSVM"
    assert exported.metadata["calibration"] == "temperature"  # head.skops loads its calibration
    predicted = predict(out, str(photos), progress=False)
    assert len(predicted) == 18 and predicted.accuracy is not None


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_export_head_file_refuses_a_crafted_file_and_never_runs_it(cache, tmp_path):
    marker = tmp_path / "ran.txt"
    path = evil_head_file(tmp_path / "evil.skops", marker)
    result = _run("export", cache, "--head-file", path, "-o", tmp_path / "m.keras")
    assert result.exit_code == 1
    assert all(name in result.output for name in PAYLOAD), result.output
    assert "Traceback" not in result.output
    with pytest.raises(HeadError, match="outside the allow-list"):
        export(cache, tmp_path / "folder", head_file=path)
    assert not marker.exists() and not (tmp_path / "m.keras").exists()


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_predict_refuses_an_export_folder_with_a_crafted_head(cache, photos, tmp_path):
    import skops.io

    marker = tmp_path / "ran.txt"
    out = tmp_path / "rbf"
    export(cache, out, head="rbf-svm", sample=0)
    skops.io.dump(evil_pipeline(marker), out / "head.skops")
    with pytest.raises(ExportError, match=r"runstring.*head kind 'rbf-svm'"):
        predict(out, str(photos), progress=False)
    result = _run("predict", out, photos)
    assert result.exit_code == 1 and "numpy.full_like" in result.output
    assert not marker.exists()


def test_a_head_no_kind_declares_does_not_export_as_a_folder(cache, tmp_path):
    with FeatureCache.open(cache) as opened:
        X, y = opened.features.copy(), opened.labels.copy()
    head = make_pipeline(StandardScaler(), KNeighborsClassifier(3)).fit(X, y)
    with pytest.raises(HeadError, match="register a head kind"):
        export(cache, tmp_path / "knn", head=head)
    assert not (tmp_path / "knn").exists()


@pytest.fixture
def ridge():
    """A head kind registered for one test: a ridge classifier (exact Keras form; ``ridge`` is
    the registry's regression kind)."""
    kind = register_head(
        HeadKind(
            name="ridge-classifier",
            factory=RidgeClassifier,
            scaler=StandardScaler,
            search_space=SearchSpace((Axis("alpha", (0.1, 1.0, 10.0, 100.0)),)),
            export_form="keras",
            trusted_types=frozenset({"sklearn.preprocessing._label.LabelBinarizer"}),
            compared_by_default=False,
        )
    )
    yield kind
    unregister_head(kind.name)


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_a_registered_kind_goes_through_every_stage(ridge, cache, photos, tmp_path):
    data = LabeledData.from_cache(cache)
    comparison = compare_heads(data, heads=["logreg", "ridge-classifier:alpha=10"], cv=3, tune=True)
    assert {r.name for r in comparison.rows} == {"logreg", "ridge-classifier:alpha=10"}
    tuned = tune_head("ridge-classifier", data.X, data.y, n_jobs=1)
    assert tuned.best_params["alpha"] in (0.1, 1.0, 10.0, 100.0)
    trained = train_head(data, "ridge-classifier", tune=True, n_jobs=1)
    path = save_head(trained, tmp_path / "ridge.skops")
    assert load_head(path).metadata["params"]["alpha"] == tuned.best_params["alpha"]
    assert evaluate_head(path, cache).metrics["accuracy"] > 0.3
    for out in (tmp_path / "ridge.keras", tmp_path / "ridge_folder"):
        result = export(cache, out, head_file=path, sample=6)
        assert result.head == "ridge-classifier" and result.parity.argmax_agreement == 1.0
        scores = load_exported(out).predict(np.zeros((1, 32, 32, 3), np.uint8))
        assert scores.shape == (1, 3)
        predicted = predict(out, str(photos), progress=False)
        assert len(predicted) == 18
    meta = json.loads((tmp_path / "ridge_folder" / "model.json").read_text())
    assert (
        meta["head"] == "ridge-classifier"
        and meta["head_params"]["alpha"] == tuned.best_params["alpha"]
    )
