"""Wrong data and unlucky conditions at the command line: one line naming the file or option
and what to do, non-zero exits, nothing final written; a second writer waits when asked."""

from __future__ import annotations

import errno
import os
import threading

import h5py
import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache import writer as cache_module
from bottleneck_transfer.features.cache.partial import writer_lock
from bottleneck_transfer.features.extract import extract
from click.testing import CliRunner
from fault_fixtures import tiny_base_file, tiny_images
from feature_checks import assert_features_close
from PIL import Image


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    return tiny_base_file(tmp_path_factory.mktemp("base") / "tiny.keras")


def _extract_cli(source, base_file, out, *more):
    args = ["extract", str(source), "--base", str(base_file), "-o", str(out), "--quiet", *more]
    return CliRunner().invoke(cli, args)


def _one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    for word in words:
        assert word in result.output


def test_extract_with_no_readable_image_exits_non_zero(tmp_path, base_file):
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"not an image")
    out = tmp_path / "c.h5"
    result = _extract_cli(tmp_path / "imgs", base_file, out)
    _one_line_error(
        result, "no image of", "could be read (2 failed)", f"nothing was written to {out}"
    )
    assert sorted(os.listdir(tmp_path)) == ["imgs"]


def test_extract_refuses_a_csv_listing_a_file_twice(tmp_path, base_file):
    tiny_images(tmp_path / "imgs", n=2, broken=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nimgs/a/00.png,x\nimgs/b/01.png,y\nimgs/a/00.png,y\n")
    result = _extract_cli(manifest, base_file, tmp_path / "c.h5")
    _one_line_error(result, "lists 1 file(s) more than once: 00.png on lines 2, 4")
    assert not (tmp_path / "c.h5").exists()


def test_flat_folder_with_the_output_inside_stays_flat(tmp_path, base_file):
    """`-o photos/caches/c.h5` puts a subfolder into the source: a rerun reads the same."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        Image.new("RGB", (9, 9), (40 * k, 0, 0)).save(photos / f"{k}.png")
    out = photos / "caches" / "c.h5"
    assert _extract_cli(photos, base_file, out).exit_code == 0
    again = _extract_cli(photos, base_file, out)
    assert again.exit_code == 0 and "up to date" in again.output
    with FeatureCache.open(out) as cache:
        assert cache.ids == ["0.png", "1.png", "2.png"] and cache.labels.tolist() == [-1] * 3


def test_full_disk_at_the_cli_is_one_line(tmp_path, base_file, monkeypatch):
    tiny_images(tmp_path / "imgs", n=4, broken=False)

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_module.os, "posix_fallocate", no_space, raising=False)
    result = _extract_cli(tmp_path / "imgs", base_file, tmp_path / "c.h5")
    _one_line_error(result, "No space left on device", "rerun the same command: it resumes")
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda h5: h5.attrs.__setitem__("provenance", "{oops"), "'provenance' is not valid JSON"),
        (lambda h5: h5.attrs.__delitem__("fingerprint"), "has no valid fingerprint"),
    ],
)
def test_info_on_corrupt_attributes_is_one_line(tmp_path, base_file, mutate, words):
    tiny_images(tmp_path / "imgs", n=2, broken=False)
    out = tmp_path / "c.h5"
    assert _extract_cli(tmp_path / "imgs", base_file, out).exit_code == 0
    with h5py.File(out, "r+") as h5:
        mutate(h5)
    _one_line_error(CliRunner().invoke(cli, ["info", str(out)]), words, "re-extract")


def test_compare_refuses_nan_features_naming_the_rows(tmp_path, base_file):
    tiny_images(tmp_path / "imgs", n=12, broken=False)
    out = tmp_path / "c.h5"
    assert _extract_cli(tmp_path / "imgs", base_file, out).exit_code == 0
    with h5py.File(out, "r+") as h5:
        h5["features"][3, 0] = np.nan
        h5["features"][5, 1] = np.inf
    result = CliRunner().invoke(cli, ["compare", str(out), "--heads", "logreg", "--cv", "2"])
    _one_line_error(result, "2 rows hold NaN, Inf or overflowing", "rows 3, 5: ids a/06.png")


def test_cache_records_how_files_were_decoded(tmp_path, base_file):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    frames = [Image.new("RGB", (9, 9), colour) for colour in ("red", "blue")]
    frames[0].save(root / "a" / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (9, 9), "red").save(root / "a" / "still.png")
    out = tmp_path / "c.h5"
    assert _extract_cli(root, base_file, out).exit_code == 0
    with FeatureCache.open(out) as cache:
        assert "first frame" in cache.provenance["decoding"]["frames"]
        assert_features_close(cache.features[0], cache.features[1])


def test_a_second_writer_waits_for_the_first_when_asked(tmp_path, base_file):
    source = tiny_images(tmp_path / "imgs", n=4, broken=False)
    base = load_base(base_file)
    out = tmp_path / "c.h5"
    messages: list[str] = []
    results = []
    with writer_lock(out):
        waiter = threading.Thread(
            target=lambda: results.append(extract(source, base, out, wait=messages.append))
        )
        waiter.start()
        waiter.join(1.0)
        assert results == [] and waiter.is_alive()  # blocked on the lock
        with pytest.raises(CacheError, match=r"another extraction is writing .* -o"):
            extract(source, base, out)  # without wait: one line, now
    waiter.join(60)
    assert messages == [
        f"another extraction is writing {out} right now (lock {out}.lock); waiting for it to finish"
    ]
    assert results[0].rows == 4
