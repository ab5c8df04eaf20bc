"""report.html: one self-contained page that a real browser renders offline, with the map of
the scored rows (classes, the winner's errors, copies)."""

from __future__ import annotations

import re

import bottleneck_transfer.heads.cache_map as cache_map
import numpy as np
import pytest
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.learning_curve import learning_curve
from bottleneck_transfer.heads.report import GALLERY, MAP, write_report
from bottleneck_transfer.heads.training import LabeledData
from browser_fixtures import CHROMIUM, load_page
from heads_fixtures import blobs, write_cache

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)
#: Class names HTML would read as markup if the page did not escape them.
CLASSES = ["<b>cats</b>", "dogs & co", "birds"]
#: What the page reports to the test: its text, each image's decoded width, and every
#: address an element would load.
PROBE = """({
  text: document.body.innerText,
  images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth})),
  loads: [...document.querySelectorAll("[src], [href]")]
    .map(e => e.getAttribute("src") || e.getAttribute("href")),
  bold: document.querySelectorAll("b").length,
})"""


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Train and test caches of three blobs; the train cache holds two exact copies."""
    folder = tmp_path_factory.mktemp("html")
    X, y = blobs(n=360, dim=12, std=3.0)
    X[1] = X[0]  # a copy: both rows are ringed on the map
    train = write_cache(folder / "train.h5", X[:240], y[:240], class_names=CLASSES)
    test = write_cache(folder / "test.h5", X[240:], y[240:], class_names=CLASSES, source="t")
    return train, test


@pytest.fixture(scope="module")
def comparison(caches):
    return compare_heads(caches[0], heads=["logreg", "knn"], cv=3, n_bootstrap=200)


def test_map_marks_the_winners_errors_and_the_copies_of_a_seeded_sample(comparison):
    drawn = cache_map.comparison_map(comparison, limit=60)
    again = cache_map.comparison_map(comparison, limit=60)
    assert len(drawn.rows) == 60 and drawn.points.shape == (60, 2)
    np.testing.assert_array_equal(drawn.rows, again.rows)  # seeded by random_state
    np.testing.assert_array_equal(drawn.points, again.points)
    assert "60 of 240 scored rows" in drawn.caption and "cap 60" in drawn.caption
    everything = cache_map.comparison_map(comparison, limit=10_000)
    assert len(everything.rows) == 240 and "all 240 scored rows" in everything.caption
    labels = comparison.eval_labels
    np.testing.assert_array_equal(everything.labels, labels)
    np.testing.assert_array_equal(everything.wrong, comparison.best.predictions != labels)
    copies = [comparison.eval_ids[r] for r in np.flatnonzero(everything.copies)]
    assert copies == ["test/00000.png", "test/00001.png"]
    # the map keeps the classes apart: a point's nearest neighbour on it shares its class
    distances = np.linalg.norm(everything.points[:, None] - everything.points[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert np.mean(labels[distances.argmin(axis=1)] == labels) > 0.9


def test_too_few_rows_are_not_projected():
    points, method = cache_map.project(np.ones((3, 4)))
    assert points.shape == (3, 2) and not points.any() and method.startswith("not projected")


@needs_chromium
def test_report_html_renders_offline_in_a_real_browser(comparison, caches, tmp_path):
    curve = learning_curve(
        caches[0], caches[1], sizes=[5, "all"], heads=["logreg"], repeats=2, n_bootstrap=100
    )
    paths = write_report(comparison, tmp_path / "report", curve=curve)
    page, problems = load_page(paths["report.html"], PROBE)
    assert problems == []
    assert [image["alt"] for image in page["images"]] == [
        "accuracy per head",
        "reliability diagrams",
        f"confusion matrix of {comparison.winner}",
        f"accuracy per class of {comparison.winner}",
        "learning curve",
        "map of the scored rows",
    ]
    assert all(image["width"] > 300 for image in page["images"])
    assert all(address.startswith(("data:image/png;base64,", "#")) for address in page["loads"])
    text = page["text"]
    for shown in (comparison.verdict, curve.sentence, *CLASSES, "Settings", "Provenance"):
        assert shown in text
    assert page["bold"] == 0  # the class name <b>cats</b> is text, not markup
    for row in comparison.rows:
        assert f"{row.metrics['accuracy']:.3f} [{row.intervals['accuracy'][0]:.3f}" in text
    assert "recorded provenance" in text
    html = paths["report.html"].read_text()
    assert "<script" not in html and not re.search(r"(?:src|href)=\"(?!data:|#)", html)


def test_without_a_cache_file_the_page_says_why_there_is_no_map(tmp_path):
    X, y = blobs(n=150, dim=6)
    data = LabeledData.from_arrays(X, y)
    comparison = compare_heads(data, heads=["logreg"], cv=3, n_bootstrap=50, progress=False)
    paths = write_report(comparison, tmp_path / "report")
    assert MAP not in paths and GALLERY not in paths
    html = paths["report.html"].read_text()
    assert "No map of the scored rows: the scored rows come from &#x27;arrays&#x27;" in html
    assert html.count("<img ") == 4


@needs_chromium
def test_the_browser_probe_sees_broken_images_and_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><p>hello</p><img src="missing.png" alt="gone">'
        "<script>console.error('boom')</script></body></html>"
    )
    found, problems = load_page(page, PROBE)
    assert found["text"] == "hello" and found["images"] == [{"alt": "gone", "width": 0}]
    assert any("boom" in p for p in problems) and len(problems) >= 2  # and the missing file
