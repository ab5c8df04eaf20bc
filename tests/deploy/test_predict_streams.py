"""Issue 26 part 4: predict writes CSV/Parquet as it goes, resumes a killed run, never corrupts."""

from __future__ import annotations

import pytest
from bottleneck_transfer.deploy import prediction_files
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.deploy.prediction_files import PredictionWriter
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from fault_fixtures import tiny_images

pq = pytest.importorskip("pyarrow.parquet")
N = 30  # images; and a broken one, skipped


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict-streams")
    images = tiny_images(folder / "imgs", n=N)
    extract(images, load_base("pixels", image_size=8), folder / "c.h5", progress=False)
    export(folder / "c.h5", folder / "model.keras", head="logreg")
    return folder / "model.keras", images


def _read(path):
    if path.suffix == ".csv":
        return path.read_text()
    return pq.read_table(path).to_pylist()


def _ids(path):
    if path.suffix == ".csv":
        return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    return pq.read_table(path)["id"].to_pylist()


class Killed(BaseException):
    """The process dying (not an error anything catches)."""


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_killed_predict_resumes_to_the_clean_runs_file(
    model_and_images, tmp_path, monkeypatch, suffix
):
    model, images = model_and_images
    monkeypatch.setattr(prediction_files, "WRITE_ROWS", 8)  # a chunk every 2 batches of 4
    options = {"top_k": 2, "batch_size": 4, "progress": False}
    clean = predict(model, images, out=tmp_path / f"clean{suffix}", **options)
    assert len(clean) == N and clean.ids == []  # counts only: no list of all results
    assert len(_ids(clean.out)) == N

    out = tmp_path / f"p{suffix}"
    commit = PredictionWriter.commit
    commits = []

    def dies_at_the_third_chunk(self, items_done):
        if len(commits) == 2:
            raise Killed
        commits.append(items_done)
        commit(self, items_done)

    monkeypatch.setattr(PredictionWriter, "commit", dies_at_the_third_chunk)
    with pytest.raises(Killed):
        predict(model, images, out=out, **options)
    partial = tmp_path / f"p{suffix}.partial"
    assert not out.exists()
    chunks = sorted(p for p in partial.iterdir() if p.name.startswith("chunk-"))
    assert len(chunks) == 2  # whole chunk files only, each readable
    written = [i for chunk in chunks for i in _ids_of_chunk(chunk)]
    assert 16 <= len(written) < N  # chunks of at least 8 rows

    monkeypatch.setattr(PredictionWriter, "commit", commit)
    resumed = predict(model, images, out=out, **options)
    assert len(resumed) == N - len(written)  # the written images were skipped
    assert _read(out) == _read(clean.out)
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == N and ids[: len(written)] == written
    assert not partial.exists()


def _ids_of_chunk(chunk):
    if chunk.suffix == ".csv":
        return [line.split(",")[0] for line in chunk.read_text().splitlines()]
    return pq.read_table(chunk)["id"].to_pylist()


def test_a_partial_of_another_run_is_refused(model_and_images, tmp_path, monkeypatch):
    model, images = model_and_images
    out = tmp_path / "p.csv"
    monkeypatch.setattr(PredictionWriter, "finish", lambda self, done: None)  # killed at the end
    predict(model, images, out=out, top_k=2, progress=False)
    with pytest.raises(ExportError, match=r"p.csv.partial holds predictions of another run"):
        predict(model, images, out=out, top_k=1, progress=False)
