"""Issue 26 part 2: ``--tune`` streams: trials fit and score index sets of the training rows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from bottleneck_transfer.heads import rows as heads_rows
from bottleneck_transfer.heads import streaming, training
from bottleneck_transfer.heads.streaming import fit_streaming_head
from bottleneck_transfer.heads.training import LabeledData, fit_head
from heads_fixtures import blobs, write_cache


@pytest.fixture(scope="module")
def noisy():
    """3 noisy classes, 64 features: the validation accuracy peaks at C about 0.01."""
    return blobs(600, 64, 3, 0, 14.0)


def test_streamed_tuning_reads_only_training_rows_and_chooses_the_in_memory_c(noisy, monkeypatch):
    X, y = noisy
    rows = np.flatnonzero(np.arange(len(y)) % 4 != 0)
    test_rows = np.flatnonzero(np.arange(len(y)) % 4 == 0)
    in_memory = fit_head("logreg", LabeledData.from_arrays(X, y), rows, tune=True, n_jobs=1)
    poisoned = X.astype(np.float32)
    poisoned[test_rows] = np.nan  # a test row read into a fit or a score would fail it
    data = dataclasses.replace(LabeledData.from_arrays(poisoned, y), chunk_rows=256)
    read: list[np.ndarray] = []
    original = heads_rows.read_rows

    def recording(source, wanted):
        if source is data.X:
            read.append(np.asarray(wanted))
        return original(source, wanted)

    final: list[dict] = []

    def final_fit(*args, **kwargs):
        final.append(kwargs)
        return fit_streaming_head(*args, **kwargs)

    monkeypatch.setattr(heads_rows, "read_rows", recording)  # RowSubset reads through it
    monkeypatch.setattr(streaming, "read_rows", recording)
    monkeypatch.setattr(training, "fit_streaming_head", final_fit)
    streamed = fit_head("logreg", data, rows, tune=True)
    touched = np.unique(np.concatenate(read))
    assert len(touched) == len(rows) and not np.isin(touched, test_rows).any()
    tuning = streamed.tuning
    assert len(tuning.trials) == len(in_memory.tuning.trials) == 13  # the same grid
    fit_and_val = np.concatenate([tuning.train_indices, tuning.val_indices])
    assert np.array_equal(np.sort(fit_and_val), rows)
    assert np.array_equal(tuning.val_indices, in_memory.tuning.val_indices)  # the same split
    chosen, expected = tuning.best_params["C"], in_memory.tuning.best_params["C"]
    assert abs(math.log10(chosen / expected)) <= 0.5, (chosen, expected)
    assert [fit["C"] for fit in final] == [chosen]  # the final fit takes the chosen C
    assert streamed.estimator.score(X[test_rows], y[test_rows]) > 0.9


def test_train_tune_streams_under_a_tiny_budget(noisy, tmp_path):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    X, y = noisy
    cache = write_cache(tmp_path / "c.h5", X[:300], y[:300])
    out = tmp_path / "h.skops"
    args = ["train", str(cache), "--head", "logreg", "--tune", "--memory-budget", "1K"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["memory"]["path"] == "streaming"
    assert summary["tuning"]["n_tune_train"] + summary["tuning"]["n_tune_validation"] == 300
    assert summary["tuning"]["searched"] == ["C"] and summary["tuning"]["n_trials"] == 13
    # the streamed head is SGD with alpha = 1 / (C * n), on rows scaled by about 1 / 8
    alpha = 1 / (summary["tuning"]["best_params"]["C"] * 300) / 64
    assert summary["params"]["alpha"] == pytest.approx(alpha, rel=0.3)
