"""The verdict: ranking, real vs tied gaps (paired test, Holm), negative transfer, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.heads.training import LabeledData
from bottleneck_transfer.rank.probe import Probe, probe
from bottleneck_transfer.rank.verdict import (
    BaseResult,
    Cost,
    Ranking,
    extract_command,
    rank_results,
    verdict_text,
    write_report,
)

N, FOLDS = 200, 5
EVAL_FOLDS = [np.arange(k, N, FOLDS) for k in range(FOLDS)]


def _result(label: str, right: float, seed: int, rate: float = 100.0) -> BaseResult:
    correct = (np.arange(N) + seed) % 100 < round(100 * right)  # exactly ``right``
    accuracy = float(correct.mean())
    made = Probe(
        accuracy=accuracy,
        interval=(accuracy - 0.05, accuracy + 0.05),
        fold_accuracy=[float(correct[f].mean()) for f in EVAL_FOLDS],
        correct=correct,
        eval_ids=[f"array:{i}" for i in range(N)],
        eval_folds=EVAL_FOLDS,
        test_fraction=0.25,
        baselines={"raw-pixels": {"accuracy": 0.5, "interval_95": [0.45, 0.55]}},
        transfer=None,
    )
    cost = Cost(1 / rate, 1000, 512, 10_000)
    return BaseResult(label, Path(f"{label}.h5"), 128, -right, right, made, cost)


def test_ranking_orders_by_probe_accuracy_and_tests_against_the_best():
    ranked = rank_results([_result("weak", 0.55, 1), _result("best", 0.95, 2),
                           _result("close", 0.93, 3, rate=400.0)])  # fmt: skip
    assert [r.label for r in ranked] == ["best", "close", "weak"]
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert ranked[0].test is None
    close, weak = ranked[1].test, ranked[2].test
    assert close["family"] == weak["family"] == "bases vs best"
    assert close["family_size"] == 2
    assert weak["p_holm"] < 0.05 <= close["p_holm"]
    assert weak["gap_points"] > 30
    text = verdict_text(ranked)
    assert "best ranks first" in text
    assert "close is statistically tied" in text
    assert "close is the fastest, 400 images/s" in text


def test_rank_results_refuses_candidates_scored_on_other_rows():
    other = _result("b", 0.9, 2)
    other.probe.eval_ids = other.probe.eval_ids[::-1]
    with pytest.raises(ValueError, match="scored on other rows"):
        rank_results([_result("a", 0.95, 1), other])


def test_negative_transfer_is_flagged_when_a_base_loses_to_its_baseline():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    pixels = np.eye(3)[y] * 3 + rng.normal(size=(90, 3))  # the baseline sees the classes
    noise = rng.normal(size=(90, 6))  # the candidate's features do not
    base = LabeledData.from_arrays(noise, y)
    baseline = LabeledData.from_arrays(pixels, y)
    got = probe(base, {"raw-pixels": baseline}, linked=None, cv=3)
    assert got.negative
    assert got.transfer["verdict"] == "negative"
    assert got.baselines["raw-pixels"]["accuracy"] > 0.8 > got.accuracy
    assert len(got.fold_accuracy) == 3 and len(got.correct) == 90
    result = BaseResult("noise", Path("n.h5"), 6, 0.0, 0.0, got, Cost(0.01, 0, 24, 90))
    assert "Negative transfer: noise" in verdict_text([result])
    assert "no candidate transfers" in verdict_text([result])
    fine = probe(baseline, {"raw-pixels": base}, linked=None, cv=3)
    assert not fine.negative


def test_report_folder_and_command(tmp_path):
    ranked = rank_results([_result("a.keras", 0.9, 1), _result("b", 0.6, 2)])
    command = extract_command(
        "data/train", {"classes": "5-9", "limit": None}, {"base": "a.keras", "weights": None,
        "trust_graph": True}, "out dir/features.h5",
    )  # fmt: skip
    assert command == (
        "bottleneck extract data/train --classes 5-9 --base a.keras --trust-graph "
        "-o 'out dir/features.h5' --update"
    )
    sample = {"size": "50/class", "seed": 0, "images": N, "collection_images": 10_000}
    ranking = Ranking("data/train", sample, ranked, verdict_text(ranked), command, {}, 1.0)
    paths = write_report(ranking, tmp_path / "report")
    for name in ("report.json", "report.md", "report.html", "cost_accuracy.png"):
        assert Path(paths[name]).stat().st_size > 0
    saved = json.loads(Path(paths["report.json"]).read_text())
    assert saved["winner"] == "a.keras"
    assert saved["ranked_by"] == "the probe's cross-validated accuracy (LogME breaks ties)"
    assert [r["base"] for r in saved["ranking"]] == ["a.keras", "b"]
    assert saved["ranking"][1]["vs_best"]["p_holm"] < 0.05
    assert saved["ranking"][0]["cost"]["full_job_seconds"] == pytest.approx(100.0)
    markdown = Path(paths["report.md"]).read_text()
    assert command in markdown
    assert (
        "Ranked by the probe's cross-validated accuracy (LogME breaks ties), the ridge probe"
        in markdown
    )
