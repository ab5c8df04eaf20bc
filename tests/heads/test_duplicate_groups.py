"""Copies of one picture, and declared groups, stay on one side of every split (issue 22.4)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import DuplicateImagesWarning, SourceError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.duplicates import cache_duplicates
from bottleneck_transfer.features.extract import extract, extract_split
from bottleneck_transfer.features.sources import Split, open_source
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.learning_curve import learning_curve
from bottleneck_transfer.heads.splits import shuffle_split, stratified_folds, stratified_subset
from bottleneck_transfer.heads.training import LabeledData, fit_head
from click.testing import CliRunner
from duplicate_fixtures import EXACT, NEAR, write_copies_tree
from heads_fixtures import digits_caches
from PIL import Image
from skimage import data as data_module

BASE = "data/bases/fashion_mnist_0-4.keras"


@pytest.fixture(scope="module")
def tree(tmp_path_factory, fashion_mnist_available):
    return write_copies_tree(tmp_path_factory.mktemp("dupes"), fashion_mnist_available)


@pytest.fixture(scope="module")
def cache(tree):
    path = tree.parent / "copies.h5"
    extract(str(tree), BASE, path, progress=False)
    return path


@pytest.fixture(scope="module")
def data(cache):
    return LabeledData.from_cache(cache)


def _copies(data: LabeledData) -> list[np.ndarray]:
    return [np.flatnonzero(np.isin(data.ids, names)) for names in (NEAR, EXACT)]


def _assert_one_side(data, fit, held, what):
    for rows in _copies(data):
        on_fit, on_held = np.isin(rows, fit), np.isin(rows, held)
        assert on_fit.all() != on_held.all() and on_fit.any() != on_held.any(), (what, rows)


def test_copies_are_found_exact_and_near(data, cache):
    with FeatureCache.open(cache) as opened:
        found, linked = cache_duplicates(opened)
    named = [sorted(data.ids[r] for r in group) for group in found.groups]
    assert named == [sorted(EXACT), sorted(NEAR)]
    assert found.exact == (True, False)
    assert found.summary() == {
        "groups": 2,
        "exact_groups": 1,
        "near_groups": 1,
        "rows": 5,
        "extra_copies": 3,
    }
    near, exact = _copies(data)
    assert len(set(linked[near])) == 1 and len(set(linked[exact])) == 1
    assert len(set(linked)) == len(data) - 3  # every other image is its own group


def test_every_split_keeps_copies_on_one_side(data, cache):
    # without the copies' groups, these folds put the PNG, JPEG and resized copy apart
    plain_folds = stratified_folds(data.y, data.groups, 3, 0)
    assert any(0 < np.isin(_copies(data)[0], held).sum() < 3 for _, held in plain_folds)

    cv = compare_heads(cache, cv=3, heads=["logreg"], progress=False)
    for fit, held in cv.splits:
        _assert_one_side(data, fit, held, "cv fold")
    holdout = compare_heads(cache, val_split=0.3, heads=["logreg"], progress=False)
    held = np.flatnonzero(np.isin(data.ids, holdout.eval_ids))  # splits[0][1] indexes them
    _assert_one_side(data, holdout.splits[0][0], held, "compare --val-split")
    for seed in range(4):
        tuned = fit_head("logreg", data, tune=True, random_state=seed)
        _assert_one_side(data, tuned.tuning.train_indices, tuned.tuning.val_indices, "tuning")
        _assert_one_side(
            data,
            *shuffle_split(data.y, data.groups, 0.25, seed, linked=data.linked),
            "curve holdout",
        )
        drawn = stratified_subset(
            data.y, data.groups, 3, np.random.default_rng(seed), linked=data.linked
        )
        rest = np.setdiff1d(np.arange(len(data)), drawn)
        _assert_one_side(data, drawn, rest, "learning-curve draw")


def test_learning_curve_runs_on_grouped_draws(cache):
    curve = learning_curve(cache, sizes="3", heads=["logreg"], repeats=2)
    assert curve.per_class["3"] >= 3.0


def test_extract_val_split_keeps_exact_copies_in_one_cache(tree):
    for seed in range(6):
        parts = [open_source(str(tree), split=Split(0.4, part, seed)) for part in ("train", "val")]
        ids = [{item.id for item in part.items} for part in parts]
        assert sum(set(EXACT) <= side for side in ids) == 1, seed


def test_compare_warns_of_copies_with_counts_and_examples(cache):
    with pytest.warns(DuplicateImagesWarning, match=r"5 images are copies") as caught:
        comparison = compare_heads(cache, cv=3, heads=["logreg"], progress=False)
    (message,) = [str(w.message) for w in caught if w.category is DuplicateImagesWarning]
    assert "(2 groups: 1 exact, 1 near at cosine >= 0.9995)" in message
    assert "bags/coffee.png = bags/coffee_copy.png" in message and "\n" not in message
    assert message in comparison.warnings


def test_compare_warns_of_test_images_copied_from_training(cache, tree, tmp_path):
    test = tmp_path / "test"
    for name in ("shirts", "bags"):
        (test / name).mkdir(parents=True)
    Image.fromarray(data_module.astronaut()).resize((300, 300)).save(test / "shirts" / "a.jpg")
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(test / "bags" / "flat.png")
    extract(str(test), BASE, tmp_path / "test.h5", progress=False)
    with pytest.warns(DuplicateImagesWarning, match=r"1 of 2 test images have a copy in") as caught:
        compare_heads(cache, test=tmp_path / "test.h5", heads=["logreg"], progress=False)
    assert any("shirts/a.jpg = shirts/astronaut" in str(w.message) for w in caught)


def test_compare_without_copies_does_not_warn(tmp_path, recwarn):
    train, _ = digits_caches(tmp_path)
    compare_heads(train, cv=3, heads=["logreg"], progress=False)
    assert not [w for w in recwarn if w.category is DuplicateImagesWarning]
    assert LabeledData.from_cache(train).linked is None
    with FeatureCache.open(train) as opened:
        assert opened.groups is None  # caches without /groups read as before


def test_cache_dupes_names_the_groups(cache):
    result = CliRunner().invoke(cli, ["cache", "dupes", str(cache)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "2 groups of copies among 21 images (1 exact, 1 near at cosine >= 0.9995)" in lines[0]
    assert lines[1] == "group 1 (exact, 2): bags/coffee.png, bags/coffee_copy.png"
    assert lines[2].startswith("group 2 (near, 3): ") and all(n in lines[2] for n in NEAR)
    result = CliRunner().invoke(cli, ["cache", "dupes", str(cache), "--json", "--threshold", "1"])
    report = json.loads(result.output)
    assert report["threshold"] == 1.0 and report["groups"] == 1
    assert report["groups_found"] == [{"exact": True, "ids": EXACT}]


def _manifest(tree, path):
    """A manifest of the distinct images: 3 patients of 2 images per class, 2 ungrouped."""
    rows = []
    for label in ("shirts", "bags"):
        for k in range(8):
            patient = f"{label}-p{k // 2}" if k < 6 else ""
            rows.append({"path": f"{label}/fm{k}.png", "label": label, "patient": patient})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _assert_apart(patient, fit, held):
    declared = {p for p in patient[held] if p}
    assert not declared & set(patient[fit]), (patient[fit], patient[held])


def test_declared_groups_stay_whole_in_every_split(tree, tmp_path):
    manifest = tree / "patients.csv"
    rows = _manifest(tree, manifest)
    out = tmp_path / "p.h5"
    extract(str(manifest), BASE, out, groups="patient", progress=False)
    with FeatureCache.open(out) as opened:
        assert opened.groups.tolist() == [r["patient"] for r in rows]
    data = LabeledData.from_cache(out)
    patient = np.asarray([r["patient"] for r in rows])
    ungrouped = stratified_folds(data.y, data.groups, 3, 0)  # patients apart without --groups
    assert any(set(patient[f]) & set(patient[h]) - {""} for f, h in ungrouped)
    cv = compare_heads(out, cv=3, heads=["logreg"], progress=False)
    holdout = compare_heads(out, val_split=0.25, heads=["logreg"], progress=False)
    held = np.flatnonzero(np.isin(data.ids, holdout.eval_ids))
    for fit, scored in [*cv.splits, (holdout.splits[0][0], held)]:
        _assert_apart(patient, fit, scored)
    for seed in range(3):
        tuning = fit_head("logreg", data, tune=True, random_state=seed).tuning
        _assert_apart(patient, tuning.train_indices, tuning.val_indices)
    train, val = extract_split(
        str(manifest),
        BASE,
        tmp_path / "t.h5",
        tmp_path / "v.h5",
        val_split=0.25,
        groups="patient",
        progress=False,
    )
    with FeatureCache.open(train.path) as a, FeatureCache.open(val.path) as b:
        assert not (set(a.groups) & set(b.groups)) - {""} and 0 < len(b) < len(a)


def test_groups_refusals(tree):
    manifest = tree / "patients.csv"
    _manifest(tree, manifest)
    with pytest.raises(SourceError, match="no 'visit' column for --groups") as info:
        open_source(str(manifest), groups="visit")
    assert "\n" not in str(info.value)
    with pytest.raises(SourceError, match="names a column of a CSV manifest"):
        open_source(str(tree), groups="patient")


def test_train_searches_copies_only_when_it_splits(tmp_path, monkeypatch):
    """Without --tune a fit splits nothing and train reports no copies: no pair search."""
    from bottleneck_transfer.heads import training

    train, _ = digits_caches(tmp_path)
    searched = []

    def recorded(*args, **kwargs):
        searched.append(1)
        return cache_duplicates(*args, **kwargs)

    monkeypatch.setattr(training, "cache_duplicates", recorded)
    plain = training.train_head(train, "logreg", random_state=0)
    assert searched == [] and plain.metadata["cache"]["rows"] > 1000
    training.train_head(train, "logreg:C=1", tune=True, random_state=0)
    assert searched == [1]  # the tuning split keeps copies on one side
    assert LabeledData.from_cache(train, copies=False).duplicates is None
