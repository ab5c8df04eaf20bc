"""``--head best``: the head a comparison chose, read back from its report or computed."""

from __future__ import annotations

import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads import best as best_module
from bottleneck_transfer.heads.best import best_head
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.report import write_report
from click.testing import CliRunner
from heads_fixtures import blobs, digits_caches, write_cache

HEADS = ["logreg", "knn:n_neighbors=1"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def report(digits, tmp_path_factory):
    comparison = compare_heads(digits[0], heads=HEADS, cv=3, metric="macro-f1", n_bootstrap=100)
    folder = tmp_path_factory.mktemp("report")
    write_report(comparison, folder)
    return comparison, folder


def test_computed_best_is_the_comparisons_choice(digits):
    spec, origin = best_head(digits[0], heads=HEADS, metric="balanced-accuracy")
    expected = compare_heads(digits[0], heads=HEADS, metric="balanced-accuracy").best.spec
    assert spec == expected and "validation balanced-accuracy" in origin


def test_a_report_of_the_same_cache_and_metric_is_read_back(digits, report, monkeypatch):
    comparison, folder = report

    def no_compare(*args, **kwargs):
        raise AssertionError("compared again")

    monkeypatch.setattr("bottleneck_transfer.heads.compare.compare_heads", no_compare)
    spec, origin = best_head(digits[0], metric="macro-f1", report=folder)
    assert spec == comparison.best.spec and str(folder / best_module.REPORT_JSON) in origin
    assert best_head(digits[0], report=folder / best_module.REPORT_JSON)[0] == spec


def test_a_report_of_another_cache_or_metric_is_refused(digits, report, tmp_path):
    _, folder = report
    with pytest.raises(HeadError, match="chose by macro-f1, not --metric accuracy"):
        best_head(digits[0], metric="accuracy", report=folder)
    X, y = blobs(60, 4)
    other = write_cache(tmp_path / "other.h5", X, y)
    with pytest.raises(HeadError, match=f"compared another cache than {other}"):
        best_head(other, report=folder)
    with pytest.raises(HeadError, match="not a comparison's report"):
        best_head(digits[0], report=tmp_path)


def test_export_head_best_refuses_a_foreign_report_in_one_line(report, tmp_path):
    _, folder = report
    X, y = blobs(60, 4)
    other = write_cache(tmp_path / "other.h5", X, y)
    args = ["export", other, "--head", "best", "--from-report", folder, "-o", tmp_path / "m.keras"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: --from-report {folder} compared another cache")
    assert result.output.count("\n") == 1 and not (tmp_path / "m.keras").exists()
    misuse = CliRunner().invoke(cli, ["export", str(other), "--metric", "accuracy", "-o", "x"])
    assert (
        misuse.exit_code == 2 and "--metric and --from-report go with --head best" in misuse.output
    )
