"""The benchmark: report fields and sane values, stable ratios (never wall-clock times).

Also the compute dtype it measures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np
import pytest
from bottleneck_transfer.bench import suite as bench_module
from bottleneck_transfer.cli.bench_cmds import COMMANDS
from bottleneck_transfer.features import extract as extract_module
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.runtimes import with_compute_dtype
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.registry import default_heads
from click.testing import CliRunner
from feature_checks import assert_features_close

SIZE = 32
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def tiny_base():
    return load_base("mobilenet_v2", weights="none", image_size=SIZE)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def _cli() -> click.Group:
    group = click.Group("bottleneck")
    for command in COMMANDS:
        group.add_command(command)
    return group


def test_summary_limit_and_targets():
    stats = bench_module.summary([3.0, 1.0, 2.0])
    assert stats["median"] == 2.0 and stats["min"] == 1.0 and stats["max"] == 3.0
    assert stats["spread"] == 1.0
    assert bench_module.limit_rate(100.0, 100.0, accelerator=False) == pytest.approx(50.0)
    assert bench_module.limit_rate(100.0, 300.0, accelerator=True) == 100.0
    report = {
        "results": [
            {
                "base": "resnet50",
                "image_size": [224, 224],
                "extract_vs_limit": {"median": 0.97},
                "extract_vs_peer": {"median": 1.2},
                "bfloat16": {
                    "extract_vs_peer": {"median": 1.4},
                    "feature_relative_error": {"median": 0.0035, "max": 0.005},
                },
                "dense": {
                    "speedup": 150.0,
                    "rows": 1000,
                    "images_for_100x": 700,
                    "quarter_rows": 250,
                },
                "compare": {"rows": 256, "holdout_vs_extract": 0.04, "cv": 5, "cv_vs_extract": 0.2},
            }
        ],
        "cache_read": {"cache_vs_npy": 0.99},
        "memory": {"runs": {"10000": {}, "60000": {}}, "peak_ratio": 1.02},
    }
    met = {row["target"]: row["met"] for row in bench_module.targets(report)}
    assert met == {
        "extract / L (resnet50@224)": True,
        "extract / peer (resnet50@224)": False,
        "extract --compute-dtype bfloat16 / peer (resnet50@224)": True,
        "dense head: frozen fit / cache fit (resnet50@224, 1000 images)": True,
        "four-head compare / extraction (resnet50@224, 256 images, holdout)": True,
        "cache read / np.load": True,
        "peak memory 10000 / 60000 images": True,
    }
    notes = {row["target"]: row["note"] for row in bench_module.targets(report)}
    dense_note = notes["dense head: frozen fit / cache fit (resnet50@224, 1000 images)"]
    assert dense_note == "grows with N; 100× from about 700 images"
    report["results"][0]["dense"]["images_for_100x"] = 0
    notes = {row["target"]: row["note"] for row in bench_module.targets(report)}
    dense_note = notes["dense head: frozen fit / cache fit (resnet50@224, 1000 images)"]
    assert dense_note == "grows with N; 100× already at 250 images"
    report["results"][0]["compare"]["holdout_vs_extract"] = 0.06
    (compare,) = [r for r in bench_module.targets(report) if r["target"].startswith("four-head")]
    assert compare["at_most"] and compare["goal"] == 0.05 and not compare["met"]
    assert "5-fold CV fits each head 5×: 0.200" in compare["note"]
    report["results"].append({"base": "efficientnetb0", "skipped": "no weights file"})
    assert len(bench_module.targets(report)) == len(met)  # a skipped base has no targets


def test_photo_folder_is_made_once(tmp_path):
    folder = bench_module.photo_folder(12, size=64, classes=3, root=tmp_path)
    files = sorted(folder.rglob("*.jpg"))
    assert len(files) == 12
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "class_0",
        "class_1",
        "class_2",
    ]
    stamp = files[0].stat().st_mtime_ns
    assert bench_module.photo_folder(12, size=64, classes=3, root=tmp_path) == folder
    assert files[0].stat().st_mtime_ns == stamp


def test_cache_read_part_reports_a_contiguous_cache_and_its_ratio(tmp_path):
    # The ratio itself (target 0.95) is judged by `bottleneck bench`, never by a test: under
    # load it moved to 0.68. tests/features/test_cache_read.py checks the read's behaviour.
    read = bench_module.bench_cache_read(64, megabytes=2, repeats=2, directory=tmp_path)
    assert read["rows"] * read["dim"] * 4 == 2 * 2**20
    assert read["layout"] == {"chunks": None, "maxshape": [read["rows"], 64]}
    assert len(read["cache_vs_npy_runs"]) == 2 and read["cache_vs_npy"] > 0


def test_cli_bench_json_has_every_field_with_sane_values(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_BENCH_DIR", str(tmp_path / "photos"))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        _cli(),
        [
            "bench",
            "--base",
            "mobilenet_v2",
            "--image-size",
            str(SIZE),
            "--images",
            "40",
            "--batch-size",
            "16",
            "--repeats",
            "2",
            "--parts",
            "model,decode,extract,peer,predict_numpy,bfloat16,heads,compare,dense,read",
            "--quiet",
            "--json",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert json.loads(out.read_text()) == report
    assert {"machine", "results", "cache_read", "targets", "seconds"} <= set(report)
    assert report["machine"]["cores"] >= 1
    (entry,) = report["results"]
    assert entry["n_images"] == 40 and entry["batch_size"] == 16
    assert entry["feature_dim"] == 1280
    for key in ("model", "decode", "extract", "peer", "predict_numpy"):
        stats = entry["rates"][key]
        assert len(stats["runs"]) == 2
        assert all(math.isfinite(r) and r > 0 for r in stats["runs"]), (key, stats)
        assert stats["min"] <= stats["median"] <= stats["max"]
    limit = entry["limit"]["median"]
    assert 0 < limit <= min(entry["rates"]["model"]["max"], entry["rates"]["decode"]["max"])
    for key in ("extract_vs_limit", "extract_vs_peer", "extract_cpu_efficiency"):
        assert 0.05 < entry[key]["median"] < 20, (key, entry[key])
    stages = entry["extract_stages"]
    assert {"model", "wait_decode", "write", "loop_seconds"} <= set(stages)
    assert entry["bottleneck"].endswith(".")
    assert any(word in entry["bottleneck"] for word in ("model", "decoding"))
    assert entry["heads"]["rows"] == 40
    assert any("fit_seconds" in v for v in entry["heads"].values() if isinstance(v, dict))
    bf16 = entry["bfloat16"]
    assert len(bf16["extract"]["runs"]) == 2 and bf16["extract_vs_float32"]["median"] > 0
    assert 0 < bf16["feature_relative_error"]["median"] < 0.05, bf16  # bfloat16: ~3 digits
    compare = entry["compare"]
    assert compare["rows"] == 40 and compare["heads"] == list(default_heads())
    assert compare["holdout_seconds"] > 0 and compare["cv_seconds"] > 0
    assert compare["holdout_vs_extract"] == pytest.approx(
        compare["holdout_seconds"] / compare["extract_seconds"], rel=0.01
    )
    dense = entry["dense"]
    assert dense["rows"] == 40 and len(dense["frozen_base_epoch_seconds"]) == 2
    assert dense["speedup"] > 1, dense  # >= 100x is for real bases; see the slow test
    assert report["cache_read"]["cache_vs_npy"] > 0
    assert {row["target"] for row in report["targets"]} >= {
        "extract / L (mobilenet_v2@32)",
        "cache read / np.load",
    }
    table = bench_module.format_table(report)
    assert "| mobilenet_v2@32 | 40 | 16 |" in table


def test_cli_bench_rejects_unknown_part():
    result = CliRunner().invoke(_cli(), ["bench", "--parts", "model,gpu"])
    assert result.exit_code != 0
    assert "unknown part 'gpu'" in result.output


@pytest.mark.slow
def test_dense_head_from_cache_is_much_faster_than_frozen_base_fit(bench_dir):
    base = load_base("mobilenet_v2", weights="none", image_size=160)
    folder = bench_module.photo_folder(128, size=160, classes=4, root=bench_dir)
    source = open_source(folder)
    cache = bench_dir / "dense.h5"
    extract_module.extract(source, base, cache, progress=False)
    pixels = bench_module.decode_source(source, base, 2, 32).astype(np.float32)
    labels = np.asarray([item.label for item in source.items])
    dense = bench_module.bench_dense(cache, base, pixels, labels, frozen_epochs=2)
    assert dense["rows"] == 128 and dense["epochs"] == 10
    assert len(dense["frozen_base_epoch_seconds"]) == 2
    # The target is 100x on real bases and data sets; on this small problem the cache side is
    # mostly Keras fixed cost per fit and epoch: 5-15x measured, 4x is the regression floor.
    assert dense["speedup"] >= 4, dense


def test_compute_dtype_changes_features_slightly_and_the_fingerprint(tiny_base, tmp_path):
    half = with_compute_dtype(tiny_base, "bfloat16")
    assert half.description["compute_dtype"] == "bfloat16"
    assert with_compute_dtype(tiny_base, "float32") is tiny_base
    assert with_compute_dtype(half, "bfloat16") is half
    with pytest.raises(ValueError, match="compute_dtype='int8'"):
        with_compute_dtype(tiny_base, "int8")
    images = np.random.default_rng(2).integers(0, 256, (6, 40, 40), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", images=images, labels=np.arange(6) % 2)
    full = extract_module.extract(tmp_path / "g.npz", tiny_base, tmp_path / "f.h5", progress=False)
    low = extract_module.extract(tmp_path / "g.npz", half, tmp_path / "h.h5", progress=False)
    assert full.fingerprint != low.fingerprint
    with FeatureCache.open(low.path) as a, FeatureCache.open(full.path) as b:
        assert a.features.dtype == np.float32
        assert_features_close(a.features, b.features, rtol=0.1)
        assert a.provenance["base"]["compute_dtype"] == "bfloat16"


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.exists(), reason="needs dataset-fashion-mnist")
def test_peak_memory_is_flat_in_the_number_of_images():
    # At the auto batch (1,024 at 28 x 28) 2,000 images are two batches, so the decode-ahead
    # queue (PREFETCH batches) never fills and the small run is not at its steady state
    # (measured: ratio 1.15-1.21 at auto, 1.01 at 256). 256 gives both runs a full queue.
    memory = bench_module.bench_memory((2_000, 20_000), batch_size=256)
    assert "skipped" not in memory, memory
    assert memory["runs"]["20000"]["rows"] == 20_000
    assert memory["peak_ratio"] <= 1.1, memory


def test_spread_rows_covers_every_class_of_a_class_sorted_cache():
    labels = np.repeat(np.arange(4), 25)  # class folders: rows sorted by class
    picked = bench_module.spread_rows(len(labels), 10)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 99
    assert set(labels[picked]) == {0, 1, 2, 3}
    assert list(bench_module.spread_rows(5, None)) == list(range(5))
    assert list(bench_module.spread_rows(5, 9)) == list(range(5))


def test_bfloat16_part_runs_without_the_float32_model_part(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_BENCH_DIR", str(tmp_path / "photos"))
    report = bench_module.run_bench(
        "mobilenet_v2", image_size=SIZE, n_images=16, repeats=1, parts=["extract", "bfloat16"]
    )
    bf16 = report["results"][0]["bfloat16"]
    assert "model_vs_float32" not in bf16 and bf16["extract_vs_float32"]["median"] > 0
    assert "bfloat16 compute: R_model" in bench_module.format_table(report)
