"""The compare6k bench part: synthetic 6,000 x 1,280 caches and its target row."""

from __future__ import annotations

import numpy as np
from bottleneck_transfer.bench.compare6k import (
    SHAPE,
    sum_of_fits,
    synthetic_features,
    write_synthetic_cache,
)
from bottleneck_transfer.bench.suite import targets
from bottleneck_transfer.features.cache import FeatureCache


def test_synthetic_features_have_the_shape_and_the_structure_they_claim():
    X, y = synthetic_features("structured", rows=600, dim=128)
    assert X.shape == (600, 128) and X.dtype == np.float32 and np.bincount(y).min() == 60
    assert np.linalg.matrix_rank(X) == 128
    C, _ = synthetic_features("collinear", rows=600, dim=128)
    assert C.shape == (600, 128) and np.linalg.matrix_rank(C) <= 128 // 4 + 1
    assert (C.std(0) == 0).sum() == 128 // 16 + (128 - 3 * 32 - 16 - 8)
    N, _ = synthetic_features("noise", rows=600, dim=128)
    assert N.shape == (600, 128) and abs(float(N.mean())) < 0.05 and 0.9 < N.std() < 1.1
    assert SHAPE == (6000, 1280, 10)


def test_the_cache_is_complete_and_readable(tmp_path, monkeypatch):
    import bottleneck_transfer.bench.compare6k as part

    monkeypatch.setattr(part, "synthetic_features", lambda kind: synthetic_features(kind, 300, 64))
    with FeatureCache.open(write_synthetic_cache(tmp_path / "c.h5", "collinear")) as cache:
        assert cache.features.shape == (300, 64) and len(set(cache.ids)) == 300


def test_target_row_is_seconds_at_most_sixty_naming_the_bounded_heads():
    report = {
        "compare6k": {
            "cv": 5,
            "target_seconds": 60.0,
            "runs": {
                "structured": {
                    "seconds": 48.2,
                    "cpu_seconds": 51.0,
                    "sum_of_fits": 80.3,
                    "ratio_to_fits": 0.6,
                    "not_converged": [],
                },
                "collinear": {
                    "seconds": 75.0,
                    "cpu_seconds": 80.0,
                    "sum_of_fits": 70.0,
                    "ratio_to_fits": 1.071,
                    "not_converged": ["logreg"],
                },
            },
        }
    }
    rows = {row["target"]: row for row in targets(report)}
    structured = rows["compare --cv 5, four heads, 6,000 x 1,280 structured (s)"]
    assert structured["met"] and structured["at_most"] and structured["goal"] == 60.0
    assert "0.60 x the sum of its single fits (80 s)" in structured["note"]
    collinear = rows["compare --cv 5, four heads, 6,000 x 1,280 collinear (s)"]
    assert not collinear["met"] and "logreg" in collinear["note"]


def test_sum_of_fits_is_every_rows_mean_fit_times_its_folds():
    result = {"n_folds": 5, "rows": [{"fit_seconds": 1.5}, {"fit_seconds": 0.25}]}
    assert sum_of_fits(result) == 8.75
    assert sum_of_fits({**result, "n_folds": None}) == 1.75  # a holdout fits each head once
