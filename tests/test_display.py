"""A notebook user's objects: every result has a short repr, an HTML table, a DataFrame and a plot;
head functions take caches, paths or arrays alike."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from bottleneck_transfer.display import REPR_LIMIT, text_repr
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import ExtractResult
from bottleneck_transfer.features.inspection import verify_cache
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.layer_sweep import layer_sweep
from bottleneck_transfer.heads.learning_curve import learning_curve
from bottleneck_transfer.heads.training import as_data, evaluate_head, train_head
from heads_fixtures import digits_caches, write_cache
from matplotlib.axes import Axes


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    return digits_caches(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def results(digits, photo_folder, tmp_path_factory) -> dict[str, tuple[object, int, list[str]]]:
    """Each result object with its expected number of table rows and some of its columns."""
    from bottleneck_transfer.deploy.export import ExportResult
    from bottleneck_transfer.deploy.exported import Exported
    from bottleneck_transfer.deploy.finetune import FinetuneResult
    from bottleneck_transfer.deploy.predict import PredictResult
    from bottleneck_transfer.features.bases import load_base

    train, test = digits
    comparison = compare_heads(train, test, heads=["logreg", "knn"], n_bootstrap=100)
    trained = train_head(train, "logreg")
    with FeatureCache.open(train) as cache:
        X, y = cache.arrays()
    other = write_cache(
        tmp_path_factory.mktemp("layer") / "other.h5",
        X[:, :32],
        y,
        class_names=[str(i) for i in range(10)],
        base={"name": "test-base", "weights_sha256": "sha256:aaaa", "layer": "block1"},
        source="train",
    )
    n = 5000  # more rows than any repr shows
    classes = [f"class{i}" for i in range(10)]
    rng = np.random.default_rng(0)
    predictions = PredictResult(
        ids=[f"image/{i:05d}.png" for i in range(n)],
        classes=classes,
        top_indices=rng.integers(0, 10, (n, 3)),
        top_probabilities=rng.random((n, 3)),
        labels=[classes[i % 10] for i in range(n)],
    )
    history = {"loss": [0.9, 0.5], "accuracy": [0.7, 0.8], "val_accuracy": [0.6, 0.75]}
    base = load_base("mobilenet_v2", weights="none", image_size=32)
    metadata = {"classes": classes, "input_shape": [32, 32, 3], "head": "logreg"}
    return {
        "source": (open_source(photo_folder), 3, ["index", "class", "images"]),
        "base": (base, len(base.description), ["key", "value"]),
        "exported": (Exported(Path("m.keras"), "keras", metadata), 10, ["output", "class"]),
        "comparison": (comparison, 2, ["head", "rank", "score", "score_low", "p_vs_winner"]),
        "row": (comparison.best, 5, ["metric", "value", "value_low", "value_high"]),
        "learning curve": (
            learning_curve(train, test, sizes="5", heads=["knn"], repeats=3, n_bootstrap=100),
            2,
            ["line", "size", "accuracy", "accuracy_low", "accuracy_high"],
        ),
        "layer sweep": (
            layer_sweep([(train, None), (other, None)], heads=["knn"], cv=2, n_bootstrap=100),
            2,
            ["layer", "dim", "head", "accuracy"],
        ),
        "trained head": (trained, len(trained.metadata["params"]), ["parameter", "value"]),
        "evaluation": (
            evaluate_head(trained, test, n_bootstrap=100),
            10,
            ["class", "precision", "recall", "f1", "rows"],
        ),
        "cache": (FeatureCache.open(train), 10, ["index", "class", "rows"]),
        "verify": (verify_cache(train, check_source=False), None, ["check", "ok", "problems"]),
        "extract": (
            ExtractResult(Path("c.h5"), 10, failed=[(f"bad{i}.png", "bad") for i in range(n)]),
            n,
            ["id", "reason"],
        ),
        "predict": (predictions, n, ["id", "label", "class_1", "probability_1", "class_3"]),
        "export": (
            ExportResult(
                Path("model.keras"),
                "keras",
                Path("model.labels.txt"),
                "logreg",
                classes,
                "probabilities",
                None,
                1.0,
                {},
            ),
            10,
            ["output", "class"],
        ),
        "finetune": (
            FinetuneResult(
                Path("t.keras"), 0.6, 0.6, 0.5, 0.75, 2, 2, False, ["a"], 10, history=history
            ),
            2,
            ["epoch", "loss", "accuracy", "val_accuracy"],
        ),
    }


NAMES = [
    "source", "base", "exported", "comparison", "row", "learning curve", "layer sweep",
    "trained head", "evaluation", "cache", "verify", "extract", "predict", "export", "finetune",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_repr_is_short_and_says_what_it_is(results, name):
    result, rows, _ = results[name]
    text = repr(result)
    assert len(text) <= REPR_LIMIT
    assert text.startswith(f"<{type(result).__name__}>")
    if rows is not None and rows > 100:  # rows past the limit are counted, not shown
        assert "more rows (to_pandas() has them all)" in text


@pytest.mark.parametrize("name", NAMES)
def test_html_repr_has_a_table(results, name):
    result, _, columns = results[name]
    page = result._repr_html_()
    assert page.count("<table>") == 2  # the summary, then the rows
    assert all(f"<th>{column}</th>" in page for column in columns)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "cache"])
def test_to_pandas_holds_every_row(results, name):
    result, rows, columns = results[name]
    frame = result.to_pandas()
    assert set(columns) <= set(frame.columns)
    assert len(frame) == (rows if rows is not None else len(result.checks))


def test_a_cache_to_pandas_is_its_data(results):
    cache = results["cache"][0]
    frame = cache.to_pandas()
    assert list(frame.columns) == ["id", "label", "class_name", "features"]
    assert len(frame) == len(cache)


@pytest.mark.parametrize("name", NAMES)
def test_plot_returns_axes_and_draws_on_the_given_one(results, name):
    result = results[name][0]
    ax = result.plot()
    assert isinstance(ax, Axes)
    assert ax.has_data() or ax.texts
    _, given = plt.subplots()
    assert result.plot(ax=given) is given
    plt.close("all")


def test_comparison_plot_draws_the_deciding_metric_with_intervals(results):
    comparison = results["comparison"][0]
    ax = comparison.plot()
    widths = sorted(round(bar.get_width(), 6) for bar in ax.patches)
    assert widths == sorted(round(row.metrics["accuracy"], 6) for row in comparison.rows)
    plt.close("all")


def test_a_closed_cache_says_so(digits):
    with FeatureCache.open(digits[0]) as cache:
        pass
    assert "state: closed" in repr(cache)


def test_the_text_table_stops_at_the_limit_and_counts_the_rest():
    rows = [{"name": f"row {i}", "value": i / 7, "long": "x" * 100} for i in range(1000)]
    text = text_repr("Many", {"verdict": "y" * 5000}, rows)
    assert len(text) <= REPR_LIMIT
    shown = sum(line.startswith("  row ") for line in text.splitlines())
    assert 0 < shown < 1000 and f"… {1000 - shown} more rows" in text


def test_heads_take_a_cache_a_path_or_arrays(digits):
    train, test = digits
    with FeatureCache.open(train) as opened:
        X, y = opened.arrays()
        by_path = train_head(train, "logreg").estimator.predict(X)
        by_cache = train_head(opened, "logreg").estimator.predict(X)
    by_arrays = train_head((X, y), "logreg").estimator.predict(X)
    np.testing.assert_array_equal(by_path, by_cache)
    np.testing.assert_array_equal(by_path, by_arrays)
    test_data = as_data(test)
    arrays = compare_heads((X, y), (test_data.X, test_data.y), heads=["knn"], n_bootstrap=100)
    paths = compare_heads(train, test, heads=["knn"], n_bootstrap=100)
    assert arrays.best.metrics == paths.best.metrics


def test_as_data_names_what_it_takes():
    assert as_data((np.eye(3), [0, 1, 1], ["a", "b"])).class_names == ["a", "b"]
    with pytest.raises(HeadError, match=r"train must be a FeatureCache.*Received: train=\[1, 2\]"):
        as_data([1, 2], what="train")


def test_to_pandas_without_pandas_says_how_to_install_it(results, monkeypatch):
    from bottleneck_transfer.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"bottleneck-transfer\[notebook\]"):
        results["extract"][0].to_pandas()
