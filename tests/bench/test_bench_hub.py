"""``bottleneck bench`` takes hub bases like any other: a KerasHub preset and a SavedModel."""

from __future__ import annotations

import pytest
from bottleneck_transfer.bench import suite as bench_module
from hub_fixtures import SIZE, needs_keras_hub

pytestmark = needs_keras_hub


@pytest.mark.parametrize(("base", "dim"), [("vit_tiny", 16), ("tiny_saved_model", 5)])
def test_bench_runs_a_hub_base(hub_root, tmp_path, base, dim):
    report = bench_module.run_bench(
        str(hub_root / base),
        image_size=SIZE,
        n_images=12,
        repeats=1,
        parts=["model", "extract"],
        source=hub_root / "images",
        work_dir=tmp_path,
    )
    entry = report["results"][0]
    assert entry["feature_dim"] == dim and entry["image_size"] == [SIZE, SIZE]
    assert entry["n_images"] == 12 and entry["rates"]["extract"]["median"] > 0
