"""The pipeline exports the head its comparison scored, and a second run refits nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.heads import tuning
from bottleneck_transfer.pipeline.run import run_pipeline
from bottleneck_transfer.pipeline.spec import SpecError, load_spec
from photo_fixtures import write_photo_crops

SPEC = """
[data]
train = "photos/train"
test = "photos/test"

[base]
name = "mobilenet_v2"
weights = "none"
image_size = 32

[heads]
use = {use}
tune = {tune}

[export]
head = "{export}"
predict = 2

[outputs]
dir = "runs"
"""


@pytest.fixture
def photos(tmp_path):
    """train/ and test/ class folders of real photo crops (10 + 4 per class)."""
    return write_photo_crops(tmp_path, {"train": 10, "test": 4}, (9, 7))


def _spec(tmp_path, use: str, export: str, tune: bool = False):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(use=use, export=export, tune=str(tune).lower()))
    return path


def _table(lines: list[str]) -> tuple[str, list[str]]:
    """The header and the two head rows of the comparison table a run printed."""
    text = next(line for line in lines if "p vs best" in line).splitlines()
    at = next(i for i, line in enumerate(text) if "p vs best" in line)
    return text[at], [line.rstrip() for line in text[at + 2 : at + 4]]


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_tuned_winner_is_exported_tuned_and_a_second_run_fits_nothing(
    tmp_path, photos, fits, monkeypatch
):
    trial_fits: list[str] = []  # tuning trials fitted in this process (small data: no workers)
    score_trials = tuning._scores

    def recording(*args):
        before = len(fits)
        scores = score_trials(*args)
        trial_fits.extend(fits[before:])
        return scores

    monkeypatch.setattr(tuning, "_scores", recording)
    spec = _spec(tmp_path, '["logreg", "knn"]', "knn", tune=True)
    store = tmp_path / "store"
    first_lines: list[str] = []
    first = run_pipeline(spec, cache_dir=store, progress=False, echo=first_lines.append)
    tuned = first["export"]["tuned"]
    assert first["export"]["spec"] == "knn" and set(tuned) == {"n_neighbors"}
    assert first["export"]["params"]["n_neighbors"] == tuned["n_neighbors"]
    exported = load_exported(first["export"]["path"])
    assert exported.head[-1].n_neighbors == tuned["n_neighbors"]
    # one fit on the training rows (the export reuses it), one on the choice's rows
    knn = "KNeighborsClassifier"
    assert fits.count(knn) - trial_fits.count(knn) == 2, "the export reuses the comparison's fit"
    fits.clear()
    second_lines: list[str] = []
    second = run_pipeline(spec, cache_dir=store, progress=False, echo=second_lines.append)
    assert fits == [] and second["export"]["reused_fit"]
    assert second["export"]["tuned"] == tuned
    assert second["export"]["reused_export"] and not first["export"]["reused_export"]
    assert second["export"]["parity"] == first["export"]["parity"]
    again = load_exported(second["export"]["path"])
    assert (
        again.path.parent == Path(second["run_dir"])
        and again.head[-1].n_neighbors == (tuned["n_neighbors"])
    )
    (first_header, first_rows), (second_header, second_rows) = map(
        _table, (first_lines, second_lines)
    )
    assert second_header.split()[-1] == "fit" and first_header.split()[-1] != "fit"
    assert all(row.endswith("reused") for row in second_rows)
    same = [row.rsplit("reused", 1)[0].rstrip() for row in second_rows]
    assert same == first_rows, "the same numbers"


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_export_head_names_a_kind_of_heads_use(tmp_path, photos):
    spec = _spec(tmp_path, '["logreg", "dense:hidden=8,epochs=3"]', "dense")
    record = run_pipeline(spec, cache_dir=tmp_path / "store", progress=False, echo=lambda _: None)
    assert record["export"]["spec"] == "dense:hidden=8,epochs=3"
    assert record["export"]["params"]["hidden"] == 8
    assert record["export"]["path"].endswith("model.keras")


@pytest.mark.parametrize(
    ("use", "export", "message"),
    [
        ('["logreg", "dense"]', "knn", r"export.head: 'knn' is not one of heads.use"),
        ('["logreg:C=-1"]', "best", r"heads.use: head 'logreg': The 'C' parameter"),
        ('["logreg"]', "forest", r"export.head: must be 'best' or a head"),
    ],
)
def test_spec_checks_heads_against_the_registry(tmp_path, photos, use, export, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec(tmp_path, use, export))


def test_default_heads_come_from_the_registry(tmp_path, photos):
    from bottleneck_transfer.heads.registry import default_heads

    path = tmp_path / "spec.toml"
    path.write_text(SPEC.split("[heads]")[0] + "[outputs]\ndir = 'runs'\n")
    assert load_spec(path)["heads"]["use"] == list(default_heads())
