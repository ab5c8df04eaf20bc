"""compare shows a progress bar over its fits (heads x folds), off with --quiet."""

from __future__ import annotations

import bottleneck_transfer.heads.compare as compare_module
from bottleneck_transfer.cli.app import cli
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import LabeledData
from click.testing import CliRunner
from heads_fixtures import blobs, write_cache


def _data() -> LabeledData:
    X, y = blobs(n=120, dim=8, centers=3)
    return LabeledData.from_arrays(X, y)


def test_progress_bar_counts_every_fit_of_every_head_and_fold(capsys):
    compare_heads(_data(), heads=["logreg", "knn"], cv=3, progress=True)
    err = capsys.readouterr().err
    assert "compare" in err and "6/6" in err and "fit" in err


def test_baseline_fits_are_counted_too(capsys):
    data = _data()
    baselines = {"noise": (data.X[:, ::-1].copy(), None)}
    compare_heads(data, heads=["logreg", "knn"], cv=2, baselines=baselines, progress=True)
    assert "6/6" in capsys.readouterr().err, "2 heads x 2 folds + the winner x 2 folds"


def test_no_bar_when_asked(capsys):
    compare_heads(_data(), heads=["logreg"], cv=2, progress=False)
    assert capsys.readouterr().err == ""


def test_quiet_turns_the_bar_off_and_the_default_leaves_it_to_the_terminal(tmp_path, monkeypatch):
    X, y = blobs(n=120, dim=8, centers=3)
    path = write_cache(tmp_path / "train.h5", X, y)
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["progress"])
        return compare_heads(*args, **kwargs)

    monkeypatch.setattr(compare_module, "compare_heads", spy)
    runner = CliRunner()
    for extra in (["--quiet"], []):
        result = runner.invoke(cli, ["compare", str(path), "--cv", "2", "--heads", "knn", *extra])
        assert result.exit_code == 0, result.output
    assert seen == [False, None]
