"""The views and float16-heads bench parts: their intervals, draws and report (never times)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.bench import accuracy
from bottleneck_transfer.bench.accuracy import (
    bench_float16_heads,
    bench_views,
    format_accuracy,
    labelled_draw,
)
from bottleneck_transfer.bench.specs import spec_settings
from bottleneck_transfer.bench.suite import format_table, run_bench
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.registry import default_heads
from bottleneck_transfer.heads.stats import draw_interval

REPO = Path(__file__).resolve().parents[2]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason="needs dataset-fashion-mnist"
)


def tiny_spec(folder: Path, heads: list[str], limit: int = 60) -> Path:
    """The demo spec on ``limit`` training images, its base found from any folder."""
    spec = folder / "tiny.toml"
    spec.write_text(
        "[data]\n"
        'train = "fashion-mnist:train"\n'
        'test = "fashion-mnist:test"\n'
        'classes = "5-9"\n'
        f"limit = {limit}\n"
        f"[base]\nname = {json.dumps(str(REPO / 'data/bases/fashion_mnist_0-4.keras'))}\n"
        f"[heads]\nuse = {json.dumps(heads)}\n"
    )
    return spec


def test_interval_over_draws_is_a_t_interval_when_test_rows_do_not_vary():
    # every test row scores alike within a draw: no test-set chance, only the draws'
    scores = np.repeat([[0.8], [0.9], [1.0]], 50, axis=1)
    stats = draw_interval(scores)
    assert stats["mean"] == 0.9 and stats["test_sd"] == 0.0 and stats["draw_sd"] == 0.1
    half = 4.302653 * 0.1 / np.sqrt(3)  # t(0.975, 2 df)
    assert stats["low"] == pytest.approx(0.9 - half, abs=1e-4)
    assert 0.9 + half > 1 and stats["high"] == 1.0, "clipped to the score's range"
    assert stats["per_draw"] == [0.8, 0.9, 1.0]


def test_interval_of_identical_draws_is_the_test_bootstrap_and_one_draw_percentiles():
    row = np.random.default_rng(0).integers(0, 2, 400)
    same = draw_interval(np.stack([row, row]))
    assert same["draw_sd"] == 0.0 and 0.015 < same["test_sd"] < 0.035
    # only the test rows vary: their n - 1 degrees of freedom (Welch–Satterthwaite), not R - 1
    assert same["high"] - same["low"] == pytest.approx(2 * 1.966 * same["test_sd"], abs=2e-3)
    one = draw_interval(row[None])
    assert one["low"] < one["mean"] == round(row.mean(), 4) < one["high"]
    assert one["high"] - one["low"] == pytest.approx(2 * 1.96 * one["test_sd"], rel=0.15)
    assert draw_interval(np.zeros((1, 30)))["low"] == draw_interval(np.zeros((1, 30)))["high"]


@needs_fashion_mnist
def test_labelled_draw_is_stratified_seeded_and_in_source_order():
    source = open_source("fashion-mnist:train", classes="5-9", limit=2000)
    draw = labelled_draw(source, 7, (0, 7, 1))
    labels = [item.label for item in draw.items]
    assert np.bincount(labels).tolist() == [7] * 5
    indices = [item.index for item in draw.items]
    assert indices == sorted(set(indices))
    assert draw.identity() == labelled_draw(source, 7, (0, 7, 1)).identity()
    assert draw.identity() != labelled_draw(source, 7, (0, 7, 2)).identity()
    assert draw.options["draw"] == {"per_class": 7, "seed": [0, 7, 1]}


def test_spec_settings_are_the_specs_data_base_and_heads_with_paths_as_written():
    settings = spec_settings(REPO / "pipelines/fashion_mnist.toml")
    assert settings["data"] == {
        "train": "fashion-mnist:train",
        "test": "fashion-mnist:test",
        "classes": "5-9",
        "limit": 12000,
        "test_limit": None,
        "val_split": None,
    }
    assert settings["base"]["name"] == "../data/bases/fashion_mnist_0-4.keras"
    digits = spec_settings(REPO / "pipelines/digits_fashion_base.toml")
    assert digits["data"]["train"] == "../data/digits/digits.npz"
    assert digits["data"]["val_split"] == 0.25
    assert settings["heads"] == {"use": list(default_heads()), "tune": False, "metric": None}


@needs_fashion_mnist
def test_views_part_pairs_plain_and_augmented_fits_of_the_same_draws(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    spec = tiny_spec(tmp_path, ["logreg"])
    report = bench_views(
        views=2,
        per_class=(3,),
        draws=2,
        test_limit=100,
        spec=spec,
        directory=work,
    )
    assert report["test_rows"] == 100 and report["draws"] == 2 and report["views"] == 2
    assert report["settings"] == spec_settings(spec) and report["spec"] == spec.as_posix()
    assert report["settings"]["data"]["limit"] == 60
    assert report["plain_rows_max_abs_diff"] == 0.0  # the views cache's plain rows
    assert [(row["per_class"], row["head"]) for row in report["rows"]] == [(3, "logreg")]
    for row in report["rows"]:
        plain, views, difference = row["plain"], row["views"], row["difference"]
        for stats in (plain, views):
            assert len(stats["per_draw"]) == 2
            assert all(0.0 <= a <= 1.0 for a in stats["per_draw"])
            assert stats["low"] <= stats["mean"] <= stats["high"]
        paired = np.subtract(views["per_draw"], plain["per_draw"])
        assert difference["per_draw"] == pytest.approx(paired, abs=1e-4)
        assert difference["mean"] == pytest.approx(views["mean"] - plain["mean"], abs=2e-4)
        assert 0 <= row["predictions_changed"] <= 2 * 100
    assert list(work.iterdir()) == []  # caches written to a temporary folder, removed
    json.dumps(report)


@needs_fashion_mnist
@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_float16_part_compares_every_head_of_the_spec_on_half_size_caches(tmp_path):
    spec = tiny_spec(tmp_path, list(default_heads()))
    report = bench_float16_heads(per_class=(4,), draws=2, test_limit=60, spec=spec)
    assert report["heads"] == list(default_heads()) and report["arms"] == ["float32", "float16"]
    assert report["test_rows"] == 60 and report["size_ratio"]["train"]["rows"] == 20
    assert 0.4 < report["size_ratio"]["test"]["ratio"] < 0.8
    assert 0 < report["feature_max_abs_error"] < 1e-2 * report["feature_max_abs"]
    assert [row["head"] for row in report["rows"]] == report["heads"]
    for row in report["rows"]:
        change = row["float16"]["mean"] - row["float32"]["mean"]
        assert row["difference"]["mean"] == pytest.approx(change, abs=2e-4)
        assert 0 <= row["predictions_changed"] <= 2 * 60
        for dtype in ("float32", "float16"):
            assert row[dtype]["low"] <= row[dtype]["mean"] <= row[dtype]["high"]
    lines = format_accuracy({"float16_heads": report})
    tabled = [line for line in lines if line.startswith("| 4 | ")]
    assert [line.split(" | ")[1] for line in tabled] == report["heads"]


def test_bench_parts_run_the_accuracy_benchmarks_and_print_their_tables(monkeypatch):
    stats = {"mean": 0.9, "low": 0.85, "high": 0.95}
    difference = {"mean": -0.01, "low": -0.03, "high": 0.01}
    views = {
        "spec": "pipelines/fashion_mnist.toml",
        "settings": {"data": {"limit": 12000}},
        "arms": ["plain", "views"],
        "per_class": [10],
        "views": 8,
        "augment": "flip",
        "draws": 5,
        "test_rows": 2000,
        "rows": [
            {
                "per_class": 10,
                "head": "logreg",
                "plain": stats,
                "views": stats,
                "difference": difference,
                "predictions_changed": 1234,
                "notes": ["not converged: dense did not converge"],
            }
        ],
    }
    monkeypatch.setattr(accuracy, "bench_views", lambda log: views)
    report = run_bench(parts=["views"])
    assert report["views"] is views and report["results"] == [] and "float16_heads" not in report
    text = format_table(report)
    assert "| base |" not in text  # no base was benchmarked: no empty throughput table
    assert "- 10 per class, logreg: not converged: dense did not converge" in text
    assert (
        "| 10 | logreg | 0.900 [0.850, 0.950] | 0.900 [0.850, 0.950] | -0.010 [-0.030, +0.010] "
        "| 1,234 |" in text
    )
    assert (
        "| labels per class | head | 0 views | 8 views | 8 views − 0 | predictions changed "
        "(of 10,000) |" in text
    )
    assert "5 seeded, stratified draws of 10 labelled images per class from its 12,000" in text
