"""Cache validation, info/verify, and the extract/info/verify CLI (one-line errors, exit codes)."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.cache import CacheWriter, FeatureCache
from bottleneck_transfer.features.inspection import verify_cache
from click.testing import CliRunner
from PIL import Image


def _small_cache(path, n=6, dim=4, complete=True):
    writer = CacheWriter.create(
        f"{path}.partial",
        dim=dim,
        fingerprint="sha256:x",
        identity={"base": {"application": "T"}, "source": {}},
        provenance={"base": {"application": "T", "feature_dim": dim}, "source": {}},
        class_names=["a", "b"],
    )
    features = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    writer.write_batch(features, np.arange(n) % 2, [f"i{k}" for k in range(n)], [], n)
    writer.commit()
    if not complete:
        writer.close()
        return features
    writer.finalize(path, extraction={})
    return features


def test_reader_round_trip_and_streaming(tmp_path):
    path = tmp_path / "c.h5"
    features = _small_cache(path, n=10)
    with FeatureCache.open(path) as cache:
        np.testing.assert_array_equal(cache.features, features)
        assert cache.ids == [f"i{k}" for k in range(10)]
        blocks = list(cache.iter_rows(batch_rows=4))
        assert [len(b[0]) for b in blocks] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), features)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h5: h5.attrs.__setitem__("format", "other"), "not a bottleneck cache"),
        (lambda h5: h5.attrs.__setitem__("format_version", 2), "format version 2"),
        (lambda h5: h5.attrs.__setitem__("complete", False), "incomplete"),
        (
            lambda h5: (h5.__delitem__("labels"), h5.create_dataset("labels", data=[0, 1, 0])),
            "row counts disagree",
        ),
        (lambda h5: h5.__delitem__("ids"), "no /ids"),
    ],
)
def test_reader_rejects_malformed_caches(tmp_path, mutate, message):
    path = tmp_path / "c.h5"
    _small_cache(path)
    with h5py.File(path, "r+") as h5:
        mutate(h5)
    with pytest.raises(CacheError, match=message):
        FeatureCache.open(path)


def test_missing_cache_points_to_partial(tmp_path):
    path = tmp_path / "c.h5"
    _small_cache(path, complete=False)
    with pytest.raises(CacheError, match="rerun the `bottleneck extract` command that started it"):
        FeatureCache.open(path)


def test_verify_flags_nan_rows(tmp_path):
    path = tmp_path / "c.h5"
    _small_cache(path)
    assert verify_cache(path, check_source=False).ok
    with h5py.File(path, "r+") as h5:
        h5["features"][2, 1] = np.nan
    report = verify_cache(path, check_source=False)
    assert not report.ok
    assert report.problems == [
        "1 rows hold NaN, Inf or overflowing (|x| > 1.8e+19) features (rows 2: ids i2)"
    ]
    assert report.lines()[-1].startswith("FAIL  features finite: 1 rows hold NaN")
    assert [line[:6] for line in report.lines()] == ["ok    "] * 4 + ["FAIL  "]


def test_verify_fails_a_cache_without_fingerprint(tmp_path):
    path = tmp_path / "c.h5"
    _small_cache(path)
    with h5py.File(path, "r+") as h5:
        del h5.attrs["fingerprint"]
    report = verify_cache(path, check_source=False)
    assert not report.ok
    assert report.lines() == [
        "FAIL  format, version, completeness, fingerprint and row counts: "
        f"{path} has no valid fingerprint (None): re-extract it with `bottleneck extract ... "
        "--force`"
    ]


def test_verify_checks_rows_and_failures_against_the_manifest(tmp_path):
    path = tmp_path / "c.h5"
    writer = CacheWriter.create(
        f"{path}.partial",
        dim=2,
        fingerprint="sha256:x",
        identity={},
        provenance={},
        class_names=["a"],
        manifest={"ids": ["a.png", "b.png", "c.png"], "size": [1] * 3, "mtime_ns": [1] * 3},
    )
    rows = np.zeros((2, 2), np.float32)
    writer.write_batch(rows, np.zeros(2, np.int32), ["a.png", "x.png"], [("a.png", "bad")], 3)
    writer.finalize(path, {})
    problems = verify_cache(path, check_source=False).problems
    assert problems == [
        "1 ids appear more than once: a.png",
        "2 source items are neither rows nor failures: b.png, c.png",
        "1 rows or failures are not source items: x.png",
    ]


@pytest.fixture
def photo_dir(tmp_path):
    from skimage import data

    root = tmp_path / "photos"
    for c, photo in enumerate([data.astronaut(), data.coffee()]):
        (root / f"c{c}").mkdir(parents=True)
        for k in range(3):
            Image.fromarray(photo[k * 20 : k * 20 + 64, :80]).save(root / f"c{c}" / f"{k}.png")
    return root


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


EXTRACT = ["--base", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--quiet"]


def test_cli_extract_info_verify(photo_dir, tmp_path):
    out = tmp_path / "c.h5"
    result = _run("extract", photo_dir, *EXTRACT, "-o", out)
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "6 rows" in result.output
    again = _run("extract", photo_dir, *EXTRACT, "-o", out)
    assert "up to date" in again.output
    info = json.loads(_run("info", out, "--json").output)
    assert info["rows"] == 6 and info["feature_dim"] == 1280
    assert [c["count"] for c in info["classes"]] == [3, 3]
    assert info["base"] == "MobileNetV2" and info["weights"] == "none"
    assert info["software"]["backend"] in ("tensorflow", "jax", "torch")
    text = _run("info", out).output
    assert "MobileNetV2" in text and "c0" in text
    assert _run("verify", out).exit_code == 0
    # A changed source file is reported by verify, naming it.
    path = photo_dir / "c1" / "2.png"
    Image.new("RGB", (64, 64), "blue").save(path)
    os.utime(path, ns=(1, 1))
    result = _run("verify", out)
    assert result.exit_code == 1
    assert "1 file(s) modified: c1/2.png" in result.output
    assert "FAIL  source unchanged since extraction" in result.output
    assert "ok    source unchanged" not in result.output  # one verdict per check
    shutil.rmtree(photo_dir / "c0")
    assert "3 file(s) removed" in _run("verify", out).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing_dir", *EXTRACT], "source not found: missing_dir"),
        (["{photos}", "--base", "resnet5", "--quiet"], "unknown base 'resnet5'"),
        (["{photos}", *EXTRACT, "--layer", "nope"], "layer 'nope' not found"),
        (["{photos}", "--base", "missing.keras", "--quiet"], "model file not found"),
        (["{photos}", *EXTRACT, "--classes", "zebra"], "unknown class 'zebra'"),
        (["{csv}", *EXTRACT], "no 'path' column (columns: file, label)"),
    ],
)
def test_cli_errors_are_one_line(photo_dir, tmp_path, args, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\na.png,x\n")
    args = [a.format(photos=photo_dir, csv=manifest) for a in args]
    result = CliRunner().invoke(cli, ["extract", *args, "-o", str(tmp_path / "c.h5")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["extract"], ["info"], ["verify"], ["compare"], ["train"], ["evaluate"], ["export"],
        ["predict"], ["finetune"], ["run"], ["bench"], ["cache", "ls"], ["cache", "prune"],
    ],
)  # fmt: skip
def test_every_command_has_help_with_an_example(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output and f"bottleneck {command[0]}" in result.output


def test_top_level_help_lists_every_command():
    output = _run("--help").output
    for command in ("extract", "info", "verify", "compare", "train", "evaluate", "export",
                    "predict", "finetune", "run", "cache", "bench"):  # fmt: skip
        assert f"  {command} " in output
