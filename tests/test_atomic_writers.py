"""Every writer goes through the one atomic write: a crash before the rename leaves nothing.

The crash is simulated inside :mod:`bottleneck_transfer.atomic` (after the writer has written
its temporary file or folder, before it is moved into place), so each test fails for a writer
that writes its final path any other way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer import atomic
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.finetune import finetune
from bottleneck_transfer.deploy.predict import PredictResult, write_predictions
from bottleneck_transfer.features.cache.partial import partial_path
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.report import write_report
from bottleneck_transfer.heads.training import TrainedHead, save_head
from bottleneck_transfer.pipeline.run import write_record
from heads_fixtures import blobs, write_cache
from sklearn.linear_model import LogisticRegression

FM_BASE = Path(__file__).resolve().parents[1] / "data" / "bases" / "fashion_mnist_0-4.keras"


class Crash(RuntimeError):
    pass


@pytest.fixture
def crash(monkeypatch):
    """Make the next atomic write fail after its temporary content is complete."""

    def fail(path):
        raise Crash(f"crash before renaming {path}")

    monkeypatch.setattr(atomic, "_fsync_tree", fail)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def fm_model(tmp_path_factory, fashion_mnist_available):
    folder = tmp_path_factory.mktemp("fm")
    extract("fashion-mnist:test", FM_BASE, folder / "c.h5", classes="5-7", limit=60, progress=False)
    export(folder / "c.h5", folder / "model.keras", head="logreg", sample=4)
    return folder


def test_cache_chunks_and_assembly(tmp_path, monkeypatch):
    real = atomic._fsync_tree
    written = []

    def crash_on_h5(path):
        written.append(path.name)
        if path.suffix == ".h5":
            raise Crash(path)
        real(path)

    monkeypatch.setattr(atomic, "_fsync_tree", crash_on_h5)
    X, y = blobs(n=40, dim=4)
    with pytest.raises(Crash):
        write_cache(tmp_path / "c.h5", X, y)
    assert written[-1] == "c.h5" and "chunk-000000.npz" in written
    partial = partial_path(tmp_path / "c.h5")
    assert [p.name for p in tmp_path.iterdir()] == [partial.name]
    kept = [p.name for p in partial.iterdir()]
    assert "chunk-000000.npz" in kept and not [n for n in kept if n.endswith(atomic.TEMP_SUFFIX)]


def test_head_file(tmp_path, crash):
    X, y = blobs(n=40, dim=4)
    head = TrainedHead(LogisticRegression().fit(X, y), {"head": "logreg"})
    with pytest.raises(Crash):
        save_head(head, tmp_path / "h.skops")
    assert _tree(tmp_path) == []


def test_predictions_and_run_record(tmp_path, crash):
    result = PredictResult(
        ["a.png"], ["x", "y"], np.array([[1, 0]]), np.array([[0.9, 0.1]]), [None]
    )
    with pytest.raises(Crash):
        write_predictions(result, tmp_path / "p.csv")
    with pytest.raises(Crash):
        write_record({"a": 1}, tmp_path)
    assert _tree(tmp_path) == []


def test_report_files(tmp_path, monkeypatch):
    X, y = blobs(n=120, dim=4)
    train = write_cache(tmp_path / "tr.h5", X[:90], y[:90], source="train")
    test = write_cache(tmp_path / "te.h5", X[90:], y[90:])
    comparison = compare_heads(train, test, heads=["logreg"], n_bootstrap=20, n_jobs=1)
    written = []
    real = atomic._fsync_tree
    monkeypatch.setattr(atomic, "_fsync_tree", lambda p: (written.append(p.name), real(p)))
    paths = write_report(comparison, tmp_path / "report")
    assert sorted(written) == sorted(p.name for p in paths.values())


def test_keras_and_folder_exports(fm_model, tmp_path, crash):
    for out, head in [(tmp_path / "m.keras", "logreg"), (tmp_path / "folder", "knn")]:
        with pytest.raises(Crash):
            export(fm_model / "c.h5", out, head=head, sample=0)
    assert _tree(tmp_path) == []


def test_finetuned_model(fm_model, tmp_path, crash):
    with pytest.raises(Crash):
        finetune(
            fm_model / "model.keras",
            "fashion-mnist:test",
            val_split=0.5,
            out=tmp_path / "tuned.keras",
            classes="5-7",
            limit=12,
            epochs=1,
            batch_size=6,
            workers=1,
            progress=False,
        )
    assert _tree(tmp_path) == []
