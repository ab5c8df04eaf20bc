"""Extraction: file contents, alignment, parity with the base, resume, staleness, locking."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from bottleneck_transfer.errors import CacheError, ImageError, SourceError, StaleCacheError
from bottleneck_transfer.features import loop as extract_module
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.partial import partial_path, partial_progress
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.runtimes import BatchRunner
from bottleneck_transfer.features.sources import open_source
from feature_checks import assert_features_close
from filelock import FileLock
from PIL import Image

SIZE = 32


@pytest.fixture(scope="module")
def tiny_base():
    return load_base("mobilenet_v2", weights="none", image_size=SIZE)


@pytest.fixture
def folder(tmp_path):
    """Three classes of real photo crops of varied sizes, plus one broken file."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    root = tmp_path / "imgs"
    for c, name in enumerate(["cat", "dog", "eel"]):
        (root / name).mkdir(parents=True)
        for k in range(7):
            photo = photos[(c + k) % len(photos)]
            h, w = 40 + 13 * k, 50 + 7 * c
            crop = photo[k * 9 : k * 9 + h, c * 11 : c * 11 + w]
            ext = "jpg" if k % 2 else "png"
            Image.fromarray(crop).save(root / name / f"{k:02d}.{ext}")
    (root / "dog" / "broken.jpg").write_bytes(b"not really a jpeg")
    return root


def _read(path):
    with FeatureCache.open(path) as cache:
        return cache.features.copy(), cache.labels.copy(), cache.ids, cache.failed


def test_cache_contents_aligned_with_source_and_equal_to_base(folder, tiny_base, tmp_path):
    out = tmp_path / "c.h5"
    result = extract(folder, tiny_base, out, batch_size=4, progress=False)
    source = open_source(folder)
    good = [item for item in source.items if item.id != "dog/broken.jpg"]
    assert result.rows == len(good) == 21
    assert result.failed == [("dog/broken.jpg", "not an image (Pillow cannot identify it)")]
    with h5py.File(out, "r") as h5:
        assert h5["features"].dtype == np.float32
        assert h5["features"].shape == (21, tiny_base.dim)
        assert h5["labels"].dtype == np.int32
        assert h5.attrs["format"] == "bottleneck-cache"
        assert h5.attrs["format_version"] == 1
        assert bool(h5.attrs["complete"]) is True
        assert h5.attrs["fingerprint"].startswith("sha256:")
        assert list(h5["failed/ids"].asstr()[...]) == ["dog/broken.jpg"]
    features, labels, ids, _ = _read(out)
    assert ids == [item.id for item in good]
    assert labels.tolist() == [item.label for item in good]
    pixels = np.stack([source.load(item, (SIZE, SIZE)) for item in good]).astype(np.float32)
    direct = np.asarray(tiny_base.model(pixels, training=False))
    assert_features_close(features, direct, rtol=1e-4)
    assert not partial_path(out).exists()


def test_rerun_is_up_to_date_and_changes_are_refused(folder, tiny_base, tmp_path):
    out = tmp_path / "c.h5"
    extract(folder, tiny_base, out, progress=False)
    again = extract(folder, tiny_base, out, progress=False)
    assert again.up_to_date and again.rows == 21
    other = load_base("mobilenet_v2", weights="none", image_size=SIZE, pooling="max")
    with pytest.raises(StaleCacheError, match=r"base\.pooling"):
        extract(folder, other, out, progress=False)
    replaced = extract(folder, other, out, force=True, progress=False)
    assert not replaced.up_to_date
    with FeatureCache.open(out) as cache:
        assert cache.provenance["base"]["pooling"] == "max"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"seed": 1}, "base.weights_sha256"),
        ({"image_size": SIZE + 8}, "base.input_shape"),
        ({"layer": "block_15_add"}, "base.layer"),
        ({"preprocess": "torch"}, "base.preprocess"),
    ],
)
def test_stale_cache_names_the_field_that_differs(folder, tiny_base, tmp_path, options, field):
    out = tmp_path / "c.h5"
    extract(folder, tiny_base, out, progress=False)
    changed = load_base("mobilenet_v2", **{"weights": "none", "image_size": SIZE, **options})
    with pytest.raises(StaleCacheError, match=re.escape(field)):
        extract(folder, changed, out, progress=False)


def test_changed_image_file_makes_cache_stale(folder, tiny_base, tmp_path):
    out = tmp_path / "c.h5"
    extract(folder, tiny_base, out, progress=False)
    Image.new("RGB", (60, 60), "red").save(folder / "cat" / "03.jpg")
    with pytest.raises(StaleCacheError, match=r"source\.manifest_sha256"):
        extract(folder, tiny_base, out, progress=False)


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, n_calls):
    real = BatchRunner.__call__
    calls = {"n": 0}

    def flaky(self, pixels):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise _Crash("simulated crash")
        return real(self, pixels)

    monkeypatch.setattr(BatchRunner, "__call__", flaky)


@pytest.mark.parametrize("exc", [_Crash, KeyboardInterrupt])
def test_resume_after_interruption_equals_uninterrupted_run(
    folder, tiny_base, tmp_path, monkeypatch, exc
):
    reference = tmp_path / "ref.h5"
    extract(folder, tiny_base, reference, batch_size=2, progress=False)
    out = tmp_path / "c.h5"
    monkeypatch.setattr(extract_module, "COMMIT_SECONDS", 0.0)
    _crash_after(monkeypatch, 7)
    if exc is KeyboardInterrupt:
        real = BatchRunner.__call__

        def interrupt(self, pixels):
            try:
                return real(self, pixels)
            except _Crash:
                raise KeyboardInterrupt from None

        monkeypatch.setattr(BatchRunner, "__call__", interrupt)
    with pytest.raises(exc):
        extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert not out.exists()
    # 7 batches of 2 written, all committed (one chunk per batch; the crash commits none).
    assert partial_progress(partial_path(out)) == {"rows": 14, "failed": 0, "items_done": 14}
    monkeypatch.undo()
    result = extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert result.resumed_from == 14
    ref, got = _read(reference), _read(out)
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[1].tolist() == ref[1].tolist()
    assert got[2] == ref[2]
    assert got[3] == ref[3]


def test_failures_before_the_crash_are_counted_after_resume(
    folder, tiny_base, tmp_path, monkeypatch
):
    out = tmp_path / "c.h5"
    monkeypatch.setattr(extract_module, "COMMIT_SECONDS", 0.0)
    _crash_after(monkeypatch, 8)  # items 0-15 handled; dog/broken.jpg is item 14
    with pytest.raises(_Crash):
        extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert partial_progress(partial_path(out))["failed"] == 1
    monkeypatch.undo()
    result = extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert result.resumed_from == 16 and len(result.failed) == 1
    with FeatureCache.open(out) as cache:
        assert cache.provenance["extraction"]["n_failed"] == 1


def test_uncommitted_rows_are_discarded_on_resume(folder, tiny_base, tmp_path, monkeypatch):
    out = tmp_path / "c.h5"
    monkeypatch.setattr(extract_module, "COMMIT_SECONDS", 1e9)
    real_commit = extract_module.CacheWriter.commit
    monkeypatch.setattr(extract_module.CacheWriter, "commit", lambda self: None)
    _crash_after(monkeypatch, 5)
    with pytest.raises(_Crash):
        extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert partial_progress(partial_path(out))["items_done"] == 0
    monkeypatch.setattr(extract_module.CacheWriter, "commit", real_commit)
    monkeypatch.undo()
    result = extract(folder, tiny_base, out, batch_size=2, progress=False)
    assert result.resumed_from == 0
    assert result.rows == 21
    assert len(set(_read(out)[2])) == 21


def test_failed_forced_rerun_keeps_the_good_cache(folder, tiny_base, tmp_path, monkeypatch):
    out = tmp_path / "c.h5"
    extract(folder, tiny_base, out, progress=False)
    before = _read(out)[0]
    other = load_base("mobilenet_v2", weights="none", image_size=SIZE, pooling="max")
    _crash_after(monkeypatch, 1)
    with pytest.raises(_Crash):
        extract(folder, other, out, force=True, batch_size=2, progress=False)
    np.testing.assert_array_equal(_read(out)[0], before)
    assert partial_path(out).exists()


def test_partial_from_other_inputs_is_refused(folder, tiny_base, tmp_path, monkeypatch):
    out = tmp_path / "c.h5"
    _crash_after(monkeypatch, 1)
    with pytest.raises(_Crash):
        extract(folder, tiny_base, out, batch_size=2, progress=False)
    monkeypatch.undo()
    other = load_base("mobilenet_v2", weights="none", image_size=SIZE, pooling="max")
    with pytest.raises(StaleCacheError, match=r"unfinished extraction.*base\.pooling"):
        extract(folder, other, out, progress=False)
    assert extract(folder, other, out, force=True, progress=False).rows == 21


def test_second_writer_fails_clearly(folder, tiny_base, tmp_path):
    out = tmp_path / "c.h5"
    with FileLock(f"{out}.lock"), pytest.raises(CacheError, match="another extraction"):
        extract(folder, tiny_base, out, progress=False)


def test_strict_names_the_bad_file(folder, tiny_base, tmp_path):
    with pytest.raises(ImageError, match=r"dog/broken\.jpg"):
        extract(folder, tiny_base, tmp_path / "c.h5", strict=True, progress=False)


def test_grayscale_source_is_converted_for_rgb_base(tmp_path, tiny_base):
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", images=images, labels=np.arange(10) % 2)
    result = extract(tmp_path / "g.npz", tiny_base, tmp_path / "c.h5", progress=False)
    features, _, ids, _ = _read(result.path)
    assert features.shape == (10, tiny_base.dim)
    assert ids == [f"array:{i}" for i in range(10)]
    rgb = np.repeat(images[..., None], 3, axis=-1)
    resized = np.stack([np.asarray(Image.fromarray(x).resize((SIZE, SIZE), 2)) for x in rgb])
    direct = np.asarray(tiny_base.model(resized.astype(np.float32), training=False))
    assert_features_close(features, direct, rtol=1e-4)


def test_empty_source_is_an_error(tmp_path, tiny_base):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        extract(tmp_path / "empty", tiny_base, tmp_path / "c.h5", progress=False)


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").exists(),
    reason="needs apt-get install dataset-fashion-mnist",
)
def test_fashion_mnist_with_shipped_base(tmp_path):
    result = extract(
        "fashion-mnist:test",
        "data/bases/fashion_mnist_0-4.keras",
        tmp_path / "fm.h5",
        classes="5-9",
        limit=300,
        progress=False,
    )
    features, labels, _, failed = _read(result.path)
    assert features.shape == (300, 128)
    assert set(labels.tolist()) == {0, 1, 2, 3, 4}
    assert not failed
    with FeatureCache.open(result.path) as cache:
        assert cache.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        assert cache.provenance["base"]["input_shape"] == [28, 28, 1]
    # The features are the trained model's own "bottleneck" layer output, not a re-init.
    import keras

    trained = keras.saving.load_model("data/bases/fashion_mnist_0-4.keras", compile=False)
    cut = keras.Model(trained.inputs, trained.get_layer("bottleneck").output)
    source = open_source("fashion-mnist:test", classes="5-9", limit=300)
    pixels = np.stack([source.load(item, (28, 28), 1) for item in source.items[:32]])
    assert_features_close(features[:32], np.asarray(cut(pixels.astype(np.float32))))


def test_random_weights_for_a_model_file_differ_from_its_own(tmp_path):
    trained = load_base("data/bases/fashion_mnist_0-4.keras")
    random = load_base("data/bases/fashion_mnist_0-4.keras", weights="none")
    assert trained.description["weights"] == "file"
    assert random.description["weights"] == "none"
    assert trained.description["weights_sha256"] != random.description["weights_sha256"]
    again = load_base("data/bases/fashion_mnist_0-4.keras", weights="none")
    assert again.description["weights_sha256"] == random.description["weights_sha256"]


@pytest.mark.slow
@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").exists(),
    reason="needs apt-get install dataset-fashion-mnist",
)
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    """A real crash: the CLI process is killed with SIGKILL mid-extraction, then rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [
        sys.executable, "-m", "bottleneck_transfer", "extract", "fashion-mnist:test",
        "--limit", "2000", "--base", "mobilenet_v2", "--weights", "none", "--image-size", "48",
        "--batch-size", "16", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BOTTLENECK_COMMIT_SECONDS": "0"}
    out = tmp_path / "c.h5"
    process = subprocess.Popen([*args, "-o", str(out)], env=env)
    partial = partial_path(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("chunk-*.npz"))) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "the run finished before it could be killed"
    assert partial.exists()
    subprocess.run([*args, "-o", str(out)], env=env, check=True)
    subprocess.run([*args, "-o", str(tmp_path / "ref.h5")], env=env, check=True)
    got, ref = _read(out), _read(tmp_path / "ref.h5")
    assert got[2] == ref[2] and len(got[2]) == 2000
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
    with FeatureCache.open(out) as cache:
        assert cache.provenance["extraction"]["resumed_from"] > 0


def test_commits_follow_seconds_of_work_not_batches(folder, tiny_base, tmp_path, monkeypatch):
    commits = []
    real_commit = extract_module.CacheWriter.commit

    def counting(self):
        commits.append(self.items_done)
        return real_commit(self)

    monkeypatch.setattr(extract_module.CacheWriter, "commit", counting)
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")
    extract(folder, tiny_base, tmp_path / "every.h5", batch_size=2, progress=False)
    every = len(commits)
    commits.clear()
    monkeypatch.delenv("BOTTLENECK_COMMIT_SECONDS")
    extract(folder, tiny_base, tmp_path / "timed.h5", batch_size=2, progress=False)
    assert every >= 11, "0 s: a commit after every one of the 11 batches"
    assert len(commits) < every, "the default 5 s: a quick run commits only at the end"
    np.testing.assert_array_equal(_read(tmp_path / "every.h5")[0], _read(tmp_path / "timed.h5")[0])
    commits.clear()
    monkeypatch.setattr(extract_module, "COMMIT_BYTES", 1)
    extract(folder, tiny_base, tmp_path / "small.h5", batch_size=2, progress=False)
    assert len(commits) >= 11, "every batch exceeds a 1-byte memory bound"
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "soon")
    with pytest.raises(CacheError, match="BOTTLENECK_COMMIT_SECONDS must be a number"):
        extract(folder, tiny_base, tmp_path / "bad.h5", batch_size=2, progress=False)
