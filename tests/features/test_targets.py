"""Targets in the cache: --target specs, inference, bad values named by row, old caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.features.targets import infer_kind, parse_target_spec
from heads_fixtures import write_cache
from PIL import Image
from target_fixtures import regression_rows, write_target_cache


def _manifest(root: Path, header: str, cells: list[str], suffix: str = ".csv") -> Path:
    """``len(cells)`` tiny PNGs and a CSV manifest ``path,<header>`` with one cell each."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"path,{header}"]
    for i, cell in enumerate(cells):
        Image.fromarray(np.full((4, 4, 3), i * 20, np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{cell}")
    path = root / f"m{suffix}"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_spec_keys_and_bad_specs():
    spec = parse_target_spec("regression:column=age,unit=years")
    assert (spec.kind, spec.column, spec.unit) == ("regression", "age", "years")
    assert parse_target_spec("multilabel:empty=true").empty
    assert parse_target_spec(None).kind is None and parse_target_spec("auto").kind is None
    with pytest.raises(SourceError, match="must be one of class, binary"):
        parse_target_spec("ordinal")
    with pytest.raises(SourceError, match="bad --target key 'colour=red'"):
        parse_target_spec("binary:colour=red")


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["a|b", "c"], "multilabel"),
        (["0.5", "2"], "regression"),
        (["1", "2", "3"], "class"),  # integers are class names, not values
        (["cat", "dog"], "class"),
        (["1.0", "2.0"], "class"),
    ],
)
def test_kind_inferred_only_where_unambiguous(values, kind):
    assert infer_kind(values) == kind


def test_inferred_regression_is_recorded_and_stated(tmp_path):
    path = _manifest(tmp_path / "r", "label", ["0.25", "0.5", "0.75"])
    source = open_source(str(path))
    assert source.target.kind == "regression" and source.target.inferred
    assert source.identity()["target"]["kind"] == "regression"
    assert source.target.describe() == "regression (inferred): label"


@pytest.mark.parametrize(
    ("spec", "cells", "message"),
    [
        (
            "regression:column=y",
            ["1.5", "2", "heavy", "3"],
            r"m.csv, line 4: column 'y' holds 'heavy', not a finite number",
        ),
        ("regression:column=y", ["1.5", "", "3"], r"m.csv, line 3: column 'y' is empty"),
        ("regression:column=y", ["1.5", "nan"], r"line 3: column 'y' holds 'nan'"),
        (
            "multilabel:column=y",
            ["a|b", " | ", "b"],
            r"m.csv, line 3: column 'y' holds an empty tag list",
        ),
        (
            "binary:column=y",
            ["yes", "no", "maybe"],
            r"m.csv, line 4: column 'y' holds a third value 'maybe'",
        ),
    ],
)
def test_bad_targets_get_one_line_naming_the_row(tmp_path, spec, cells, message):
    path = _manifest(tmp_path / "bad", "y", cells)
    with pytest.raises(SourceError, match=message) as caught:
        open_source(str(path), target=spec)
    assert "\n" not in str(caught.value)


def test_empty_tag_lists_allowed_when_asked(tmp_path):
    path = _manifest(tmp_path / "tags", "tags", ["a|b", "", "b"])
    source = open_source(str(path), target="multilabel:column=tags,empty=true")
    assert [item.target for item in source.items] == ["a|b", "", "b"]
    assert source.target.names == ("a", "b")


def test_binary_positive_value_is_second(tmp_path):
    path = _manifest(tmp_path / "b", "label", ["shoe", "other", "shoe"])
    assert open_source(str(path), target="binary").class_names == ["other", "shoe"]
    flipped = open_source(str(path), target="binary:positive=other")
    assert flipped.class_names == ["shoe", "other"]
    assert [item.label for item in flipped.items] == [0, 1, 0]


def test_missing_target_column_is_named(tmp_path):
    path = _manifest(tmp_path / "c", "label", ["1.5"])
    with pytest.raises(SourceError, match="no 'age' column for --target"):
        open_source(str(path), target="regression:column=age")


def test_class_manifest_identity_is_as_before(tmp_path):
    """A class target (inferred or stated) records nothing new: fingerprints stay."""
    path = _manifest(tmp_path / "k", "label", ["cat", "dog", "cat"])
    plain, stated = open_source(str(path)), open_source(str(path), target="class")
    assert plain.target is None and stated.target is None
    assert "target" not in plain.identity()
    assert plain.identity() == stated.identity()


def test_jsonl_tag_lists(tmp_path):
    root = tmp_path / "j"
    root.mkdir()
    rows = [{"path": f"{i}.png", "tags": tags} for i, tags in enumerate([["a", "b"], ["b"]])]
    for row in rows:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / row["path"])
    (root / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    source = open_source(str(root / "m.jsonl"), target="multilabel:column=tags")
    assert [item.target for item in source.items] == ["a|b", "b"]


def test_version_1_caches_read_as_class_targets(tmp_path):
    path = write_cache(tmp_path / "old.h5", np.eye(4), [0, 1, 0, 1], class_names=["a", "b"])
    with FeatureCache.open(path) as cache:
        assert "target" not in cache._h5.attrs
        assert cache.target.kind == "class" and cache.target.names == ("a", "b")
        np.testing.assert_array_equal(cache.targets, [0, 1, 0, 1])
        assert "target" not in cache._display_summary()


def test_regression_and_multilabel_caches_hold_their_targets(tmp_path):
    X, values = regression_rows(n=6)
    path = write_target_cache(
        tmp_path / "r.h5", X, [str(float(v)) for v in values], "regression:column=age,unit=years"
    )
    with FeatureCache.open(path) as cache:
        assert cache.target.kind == "regression" and cache.target.unit == "years"
        np.testing.assert_allclose(cache.targets, values, rtol=1e-6)
        assert cache._display_summary()["target"] == "regression: age (years)"
        assert cache._display_rows()[0]["rows"] == 6
    tags = write_target_cache(tmp_path / "m.h5", X[:3], ["a|b", "b", "c"], "multilabel")
    with FeatureCache.open(tags) as cache:
        np.testing.assert_array_equal(cache.targets, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
        assert [r["rows"] for r in cache._display_rows()] == [1, 2, 1]


def test_info_states_the_target(tmp_path):
    from bottleneck_transfer.features.inspection import cache_info

    X, values = regression_rows(n=5)
    path = write_target_cache(
        tmp_path / "r.h5", X, [str(float(v)) for v in values], "regression:column=age"
    )
    info = cache_info(path)
    assert info["target"]["described"] == "regression: age"
    assert info["target"]["rows"][0]["mean"] == pytest.approx(values.mean(), rel=1e-6)
    old = write_cache(tmp_path / "old.h5", np.eye(2), [0, 1], class_names=["a", "b"])
    assert cache_info(old)["target"]["described"] == "class: 2 classes"


def test_target_of_a_folder_source_is_refused(tmp_path):
    _manifest(tmp_path / "f" / "cat", "label", ["x"])
    with pytest.raises(SourceError, match="--target names a column of a CSV manifest"):
        open_source(str(tmp_path / "f"), target="binary")
