"""compare --val-split: a stratified, seeded hold-out of the one training cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.sources import holdout_mask
from bottleneck_transfer.heads.compare import compare_heads
from click.testing import CliRunner
from heads_fixtures import digits_caches


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))[0]


def test_val_split_scores_a_stratified_holdout_of_train(train):
    comparison = compare_heads(train, heads=["logreg"], val_split=0.25, random_state=4)
    with FeatureCache.open(train) as cache:
        ids, labels = cache.ids, cache.labels
    held = holdout_mask(labels, 0.25, seed=4)
    assert comparison.mode == "holdout"
    assert comparison.eval_ids == [ids[i] for i in np.flatnonzero(held)]
    np.testing.assert_array_equal(comparison.eval_labels, labels[held])
    fit_rows, eval_rows = comparison.splits[0]
    np.testing.assert_array_equal(fit_rows, np.flatnonzero(~held))  # never scored on a fit row
    assert len(eval_rows) == held.sum()
    assert comparison.caches["train"]["rows"] == int((~held).sum())
    assert comparison.caches["test"]["split"] == {"val_split": 0.25, "seed": 4, "part": "val"}
    assert comparison.caches["test"]["path"] == str(train)
    assert comparison.best.intervals["accuracy"] is not None  # scored as a holdout


def test_val_split_takes_baselines_through_the_same_rows(train):
    with FeatureCache.open(train) as cache:
        n = len(cache)
    noise = np.random.default_rng(0).normal(size=(n, 4))
    comparison = compare_heads(
        train, heads=["logreg"], val_split=0.3, baselines={"noise": (noise, None)}
    )
    assert [row.name for row in comparison.rows] == ["logreg", "logreg@noise"]
    assert comparison.caches["baseline:noise"]["test"]["rows"] == len(comparison.eval_ids)


def test_val_split_is_one_of_test_cv_and_val_split(train):
    with pytest.raises(HeadError, match="one of a test cache, --cv K or --val-split F"):
        compare_heads(train, heads=["logreg"], cv=3, val_split=0.2)


def test_cli_compare_val_split(train, tmp_path):
    args = ["compare", str(train), "--heads", "logreg", "--val-split", "0.2", "--json"]
    done = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "report")])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["mode"] == "holdout" and result["caches"]["test"]["split"]["val_split"] == 0.2
    text = (tmp_path / "report" / "report.md").read_text()
    assert "(a stratified 0.2 hold-out of it, seed 0)" in text
