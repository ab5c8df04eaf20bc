"""Quiet by default, honest when it matters: warnings summarised once per kind and head at the
end of a command, raw with --debug; tuning trials' convergence warnings never flood stderr."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import ClassVar

import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.heads import parallel
from bottleneck_transfer.heads.registry import (
    Axis,
    HeadKind,
    SearchSpace,
    register_head,
    unregister_head,
)
from click.testing import CliRunner
from heads_fixtures import blobs, digits_caches, write_cache
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


class WarningLogReg(LogisticRegression):
    """A logistic regression that warns twice per fit: one note and one numerical warning."""

    fits: ClassVar[list[int]] = []

    def fit(self, X, y, sample_weight=None):
        WarningLogReg.fits.append(len(y))
        warnings.warn("the warner's note", UserWarning, stacklevel=2)
        warnings.warn("overflow in the warner", RuntimeWarning, stacklevel=2)
        return super().fit(X, y, sample_weight)


@pytest.fixture
def warner():
    kind = register_head(
        HeadKind(
            name="warner",
            factory=WarningLogReg,
            scaler=StandardScaler,
            search_space=SearchSpace((Axis("C", (0.1, 1.0)),)),
            export_form="folder",
            compared_by_default=False,
        )
    )
    WarningLogReg.fits.clear()
    yield kind
    unregister_head(kind.name)


@pytest.fixture(scope="module")
def train_cache(tmp_path_factory):
    X, y = blobs(n=120, dim=8, centers=3)
    return write_cache(tmp_path_factory.mktemp("quiet") / "train.h5", X, y)


def _compare(path, *extra: str):
    args = ["compare", str(path), "--cv", "3", "--heads", "warner,logreg", "--quiet", *extra]
    return CliRunner().invoke(cli, args)


def test_warnings_are_summarised_once_per_kind_and_head(warner, train_cache):
    result = _compare(train_cache)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    notes, numerical = lines
    n = len(WarningLogReg.fits)  # the folds' fits and the winner's choice on each fold
    assert n >= 3
    assert notes == f"{n} UserWarning warnings in warner: the warner's note"
    assert numerical.startswith(f"{n} numerical warnings in warner: the features hold extreme")


def test_debug_leaves_the_warnings_raw(warner, train_cache):
    args = ["--debug", "compare", str(train_cache), "--cv", "3", "--heads", "warner", "--quiet"]
    with pytest.warns(UserWarning, match="the warner's note") as raised:
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert sum(w.category is UserWarning for w in raised) == len(WarningLogReg.fits)
    assert "in warner:" not in result.stderr


@pytest.fixture(scope="module")
def digits_train(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))[0]


TUNED = "logreg:max_iter=5,linear-svm:max_iter=2"  # both stop at their iteration bound


def _tuned_compare(path, *before: str) -> subprocess.CompletedProcess:
    """compare --tune of two heads that stop at their iteration bound, trials on two cores."""
    command = [*before, "compare", str(path), "--cv", "2", "--tune", "--heads", TUNED]
    return subprocess.run(
        [sys.executable, "-m", "bottleneck_transfer", *command, "--quiet", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _convergence_counts(digits_train, monkeypatch, min_values: int) -> dict[str, int]:
    """compare --tune's counted convergence warnings per head, every fit over worker
    processes (``min_values`` 0) or every fit here."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN_VALUES", min_values)
    args = ["compare", str(digits_train), "--cv", "2", "--tune", "--heads", TUNED, "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "ConvergenceWarning" not in result.stderr
    counts = {}
    for line in result.stderr.splitlines():
        n, _, rest = line.partition(" convergence warnings in ")
        head, _, advice = rest.rpartition(": ")
        assert advice.startswith("raise the head's max_iter"), line
        counts[head] = int(n)
    return counts


def test_tuning_trials_warnings_are_counted_wherever_they_run(digits_train, monkeypatch):
    here = _convergence_counts(digits_train, monkeypatch, 2**40)
    workers = _convergence_counts(digits_train, monkeypatch, 0)
    assert list(here) == ["logreg:max_iter=5", "linear-svm:max_iter=2"]
    assert workers == here
    # more than the folds' fits and the choices' refits: the trials are counted
    assert all(n > 2 * 2 for n in here.values()), here


def test_tuning_trials_print_no_raw_convergence_lines(digits_train):
    quiet = _tuned_compare(digits_train)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "ConvergenceWarning" not in quiet.stderr
    assert len(quiet.stderr.splitlines()) == 2, quiet.stderr
    assert "not converged" in quiet.stdout  # the refits' own notes, in the table
    loud = _tuned_compare(digits_train, "--debug")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert loud.stderr.count("ConvergenceWarning") > 2
