"""Learning curves: stratified seeded subsets, scores equal to plain fits, honest sentences."""

from __future__ import annotations

import json

import bottleneck_transfer.heads.learning_curve as curve_module
import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.learning_curve import (
    ALL,
    CHOSEN,
    Gain,
    Point,
    default_repeats,
    format_curve,
    learning_curve,
    parse_sizes,
    repeat_interval,
    write_curve_report,
)
from bottleneck_transfer.heads.registry import make_head, set_random_state
from bottleneck_transfer.heads.splits import stratified_subset, subset_counts
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import digits_caches

HEADS = ["logreg", "knn"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    train, test = digits_caches(tmp_path_factory.mktemp("digits"))
    return LabeledData.from_cache(train), LabeledData.from_cache(test)


def _noisy(data: LabeledData, scale: float, seed: int = 0) -> LabeledData:
    """The same images with the features drowned in noise: a baseline that is worse."""
    noise = np.random.default_rng(seed).normal(0, scale, data.X.shape)
    return LabeledData.from_arrays(
        data.X + noise, data.y, ids=data.ids, class_names=data.class_names, source="noisy"
    )


@pytest.fixture(scope="module")
def curve(digits):
    train, test = digits
    baseline = (_noisy(train, 8), _noisy(test, 8, seed=1))
    baselines = {"noisy": baseline}
    return learning_curve(train, test, sizes="3,100,all", heads=HEADS, baselines=baselines)


def test_sizes_are_parsed_sorted_and_checked():
    assert parse_sizes("50, 5,all,10,5") == [5, 10, 50, ALL]
    assert parse_sizes([20, "all"]) == [20, ALL]
    for bad in ("0", "5,x", "-3", "2.5", ""):
        with pytest.raises(HeadError, match="labels per class"):
            parse_sizes(bad)
    assert [default_repeats(n) for n in (1, 5, 20, 50, 100, 1000)] == [10, 10, 10, 4, 3, 3]


def test_subsets_keep_the_class_ratio_are_nested_and_seeded():
    y = np.repeat([0, 1, 2], [30, 4, 50])
    groups = np.arange(len(y))
    rows = stratified_subset(y, groups, 5, np.random.default_rng(1))
    # 5 per class on average in the 30:4:50 ratio (at least one of each class)
    assert np.bincount(y[rows]).tolist() == [5, 1, 9]
    assert np.bincount(y[stratified_subset(y, groups, 25, np.random.default_rng(1))]).tolist() == [
        27,
        4,
        45,
    ]
    for small, large in ((2, 5), (5, 12), (12, 28)):
        inner = stratified_subset(y, groups, small, np.random.default_rng(1))
        outer = stratified_subset(y, groups, large, np.random.default_rng(1))
        assert np.isin(inner, outer).all(), "a repeat's smaller subset lies within its larger"
    again = stratified_subset(y, groups, 5, np.random.default_rng(1))
    other = stratified_subset(y, groups, 5, np.random.default_rng(2))
    np.testing.assert_array_equal(rows, again)
    assert not np.array_equal(rows, other)


def test_each_point_equals_plain_fits_on_the_drawn_subsets(curve, digits):
    train, test = digits
    point = curve.point("logreg", 3)
    assert len(point.accuracies) == default_repeats(3) == curve.repeats["3"]
    for repeat in (0, 4):
        rows = stratified_subset(train.y, train.groups, 3, np.random.default_rng([0, repeat]))
        assert np.bincount(train.y[rows]).tolist() == [3] * 10
        head = set_random_state(make_head("logreg"), 0).fit(train.X[rows], train.y[rows])
        assert point.accuracies[repeat] == np.mean(head.predict(test.X) == test.y)
    assert point.mean == pytest.approx(np.mean(point.accuracies))
    correct = [
        (
            set_random_state(make_head("logreg"), 0).fit(train.X[r], train.y[r]).predict(test.X)
            == test.y
        )
        for r in (
            stratified_subset(train.y, train.groups, 3, np.random.default_rng([0, repeat]))
            for repeat in range(len(point.accuracies))
        )
    ]
    assert point.interval == pytest.approx(repeat_interval(correct, (0.0, 1.0)))
    t_only = 2.262 * np.std(point.accuracies, ddof=1) / np.sqrt(len(correct))  # t(0.975, 9)
    assert point.interval[1] - point.interval[0] > 2 * t_only, "widened by the test rows"
    full = compare_heads(train, test, heads=HEADS, n_bootstrap=1000)
    at_all = curve.point("logreg", ALL)
    assert at_all.accuracies == [full.row("logreg").metrics["accuracy"]]
    assert at_all.interval == pytest.approx(full.row("logreg").intervals["accuracy"])
    assert curve.per_class == pytest.approx({"3": 3.0, "100": 100.0, ALL: len(train) / 10}, abs=0.3)
    assert curve.repeats == {"3": 10, "100": 3, ALL: 1}


def test_lines_gains_and_the_sentence(curve):
    # Heads come in their first draw's validation ranking, which the data decide.
    assert sorted(curve.lines) == sorted(["logreg", "knn", CHOSEN, "noisy"])
    assert curve.baseline_lines == ["noisy"]
    for size in curve.sizes:
        best = max(curve.point(h, size).mean for h in HEADS)
        assert best > curve.point("noisy", size).mean + 0.2
    assert [g.verdict for g in curve.gains] == ["gain"] * 3
    assert curve.worth_from == 3
    assert curve.sentence.startswith("Transfer is worth it at every size tried")
    assert "noisy" in format_curve(curve) and "transfer gain" in format_curve(curve)


def test_gain_table_and_figure_agree_and_each_draw_says_what_it_chose(curve):
    """Issue 22.1: the gain is the chosen head minus the chosen baseline, draw by draw, so it
    equals the difference of the two lines the table and the figure show."""
    for gain in curve.gains:
        chosen, noisy = curve.point(CHOSEN, gain.size), curve.point("noisy", gain.size)
        differences = 100 * (np.asarray(chosen.accuracies) - np.asarray(noisy.accuracies))
        np.testing.assert_allclose(gain.points, differences)
        assert gain.mean == pytest.approx(100 * (chosen.mean - noisy.mean))
        assert len(gain.choices) == curve.repeats[str(gain.size)]
        for choice in gain.choices:
            assert choice["head"] in HEADS and choice["metric"] == "accuracy"
            assert 0 <= choice["validation"] <= 1, "chosen by a validation score"
        per_draw = [curve.point(c["head"], gain.size) for c in gain.choices]
        picked = [p.accuracies[i] for i, p in enumerate(per_draw)]
        assert chosen.accuracies == picked, "the chosen line holds each draw's chosen head"


def test_a_baseline_equal_to_the_features_is_never_worth_it(digits):
    train, test = digits
    curve = learning_curve(
        train,
        test,
        sizes=[5, ALL],
        heads=["logreg"],
        baselines={"same": (train, test)},
        repeats=3,
    )
    assert [g.mean for g in curve.gains] == [0.0, 0.0]
    assert curve.worth_from is None
    assert curve.sentence.startswith("Transfer is never worth it on these data")


def test_a_better_baseline_is_called_negative_transfer(digits):
    train, test = digits
    curve = learning_curve(
        _noisy(train, 8),
        _noisy(test, 8, seed=1),
        sizes=[10],
        heads=["logreg"],
        baselines={"clean": (train, test)},
        repeats=3,
    )
    assert curve.gains[0].verdict == "negative" and curve.gains[0].interval[1] < 0
    assert "Negative transfer: the baselines beat the transferred features at 10 per class" in (
        curve.sentence
    )


@pytest.mark.parametrize(
    ("verdicts", "worth_from", "start"),
    [
        (["inconclusive", "gain", "gain"], 20, "Transfer is worth it from 20 per class on"),
        (["gain", "gain", "inconclusive"], None, "Transfer is worth it at 5 per class, 20 per"),
        (["negative", "inconclusive", "inconclusive"], None, "Transfer is never worth it"),
    ],
)
def test_sentence_names_the_size_from_which_transfer_pays(verdicts, worth_from, start):
    gains = [
        Gain(size, [1.0], 1.0, (0.5, 1.5), "raw-pixels", verdict)
        for size, verdict in zip([5, 20, ALL], verdicts, strict=True)
    ]
    best = {g.size: Point("logreg", g.size, [0.9], 0.9, (0.8, 1.0)) for g in gains}
    found, sentence = curve_module._sentence(gains, best)
    assert found == worth_from
    assert sentence.startswith(start)


def test_tuning_sees_only_the_subset(digits, monkeypatch):
    train, test = digits
    tunings = []
    original = curve_module.compare_heads

    def recording(fit, evaluate, **kwargs):
        comparison = original(fit, evaluate, **kwargs)
        tunings.append((len(fit), comparison.row("knn").tuning))
        return comparison

    monkeypatch.setattr(curve_module, "compare_heads", recording)
    curve = learning_curve(train, test, sizes=[5], heads=["knn"], tune=True, repeats=2, n_jobs=1)
    assert curve.tuned and len(tunings) == 2
    for rows, (tuning,) in tunings:
        assert rows == subset_counts(np.bincount(train.y), 5).sum(), "5 per class on average"
        used = np.concatenate([tuning.train_indices, tuning.val_indices])
        assert sorted(used) == list(range(rows)), "the tuning split is carved from the subset"


def test_without_a_test_cache_a_held_out_quarter_is_scored(digits, monkeypatch):
    train, _ = digits
    calls: list[tuple[list[str], list[str]]] = []
    original = curve_module.compare_heads

    def recording(fit, evaluate, **kwargs):
        calls.append((fit.ids, evaluate.ids))
        return original(fit, evaluate, **kwargs)

    monkeypatch.setattr(curve_module, "compare_heads", recording)
    curve = learning_curve(train, None, sizes=[5, ALL], heads=["logreg"], repeats=2)
    held_out = set(calls[0][1])
    assert len(held_out) == curve.n_eval_rows == pytest.approx(0.25 * len(train), abs=1)
    for fit_ids, eval_ids in calls:
        assert set(eval_ids) == held_out and not held_out & set(fit_ids)
    assert len(calls[-1][0]) == len(train) - len(held_out)
    assert "held out" in curve.evaluation


def test_a_given_full_comparison_is_reused_for_all(digits, monkeypatch):
    train, test = digits
    full = compare_heads(train, test, heads=["logreg"], n_bootstrap=200)
    calls = []
    original = curve_module.compare_heads
    monkeypatch.setattr(
        curve_module, "compare_heads", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    curve = learning_curve(train, test, sizes=[5, ALL], heads=["logreg"], repeats=2, full=full)
    assert len(calls) == 2, "two subsets at 5 per class, no refit at 'all'"
    assert curve.point("logreg", ALL).accuracies == [full.row("logreg").metrics["accuracy"]]


def test_sizes_beyond_the_data_become_all(digits):
    train, test = digits
    curve = learning_curve(train, test, sizes=[5000, ALL], heads=["logreg"])
    assert curve.sizes == [ALL] and "5000 per class is every training row" in curve.notes[0]


def test_bad_inputs_are_refused(digits):
    train, test = digits
    with pytest.raises(HeadError, match="repeats must be >= 1"):
        learning_curve(train, test, sizes=[5], repeats=0)
    short = LabeledData.from_arrays(train.X[:10], train.y[:10], class_names=train.class_names)
    with pytest.raises(HeadError, match="same images in the same order"):
        learning_curve(train, test, sizes=[5], baselines={"short": (short, test)})
    with pytest.raises(HeadError, match="needs its test features"):
        learning_curve(train, test, sizes=[5], baselines={"b": (train, None)})


def test_report_files(curve, tmp_path):
    files = write_curve_report(curve, tmp_path / "report")
    assert sorted(p.name for p in files.values()) == [
        "learning_curve.json",
        "learning_curve.md",
        "learning_curve.png",
    ]
    assert files["learning_curve.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(files["learning_curve.json"].read_text())
    assert data["sentence"] == curve.sentence and data["worth_from"] == 3
    assert len(data["points"]) == 3 * len(curve.lines)
    markdown = files["learning_curve.md"].read_text()
    assert "| noisy |" in markdown and "![learning curve](learning_curve.png)" in markdown


def test_with_a_memo_a_second_curve_refits_nothing(digits, tmp_path, monkeypatch):
    from bottleneck_transfer.heads.memo import FitMemo

    train, test = digits
    memo = FitMemo(tmp_path / "fits")
    first = learning_curve(train, test, sizes=[5], heads=["logreg"], repeats=2, memo=memo)
    rows = []
    original = curve_module.compare_heads

    def recording(*args, **kwargs):
        comparison = original(*args, **kwargs)
        rows.extend(comparison.rows)
        return comparison

    monkeypatch.setattr(curve_module, "compare_heads", recording)
    second = learning_curve(train, test, sizes=[5], heads=["logreg"], repeats=2, memo=memo)
    assert len(rows) == 2 and all(row.reused for row in rows)
    assert second.point("logreg", 5).accuracies == first.point("logreg", 5).accuracies
