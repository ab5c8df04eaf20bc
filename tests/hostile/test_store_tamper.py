"""Issue 24, part 4: the store is checked, not trusted; non-regular files are never opened.

A stored entry changed by hand (a byte flipped, cut short, a valid file with other values)
is refused with one :class:`StoreEntryWarning`, computed again (the result equals a fresh
computation) and rewritten (its manifest matches again). A FIFO where the store or an image
folder has a file is never opened: the commands run in a subprocess with a timeout, so a
hang fails the test instead of blocking it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.entries import checked, manifest_path, reusable
from bottleneck_transfer.errors import StoreEntryWarning
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.store import EXPORT_SUMMARY, EXPORTS_FOLDER, CacheStore
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.memo import FitMemo
from bottleneck_transfer.heads.training import LabeledData, train_head
from fault_fixtures import tiny_base_file, tiny_images
from heads_fixtures import digits_caches, write_cache

TIMEOUT = 120  # seconds: far above what the commands take, far below a hung test run


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _store_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, StoreEntryWarning)]


def _numbers(comparison):
    return [(r.name, r.metrics, r.predictions.tolist()) for r in comparison.rows]


def test_hand_edited_stored_predictions_are_refused_and_recomputed(caches, tmp_path):
    memo = FitMemo(tmp_path / "fits")
    fresh = compare_heads(*caches, heads=["logreg"], n_bootstrap=50, memo=memo)
    (stored,) = memo.root.glob("*.npz")
    with np.load(stored) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["predictions"] = (arrays["predictions"] + 1) % 10  # a valid file, every row wrong
    with open(stored, "wb") as handle:
        np.savez(handle, **arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = compare_heads(*caches, heads=["logreg"], n_bootstrap=50, memo=memo)
    (message,) = _store_warnings(caught)
    assert f"stored predictions {stored} is not used" in message and "sha256 differs" in message
    assert _numbers(again) == _numbers(fresh)
    assert checked(stored) == []  # rewritten as computed
    reloaded = memo.load_predictions("sha256:" + stored.stem)
    np.testing.assert_array_equal(reloaded["predictions"], fresh.rows[0].predictions)


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_a_damaged_stored_fit_is_refused_and_fitted_again(caches, tmp_path, fits, damage):
    memo = FitMemo(tmp_path / "fits")
    first = train_head(caches[0], "logreg", memo=memo)
    (head,) = memo.root.glob("*.skops")
    damage(head)
    fits.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = train_head(caches[0], "logreg", memo=memo)
    (message,) = _store_warnings(caught)
    assert f"stored fit {head.with_suffix('.json')} is not used" in message
    assert fits == ["LogisticRegression"]
    X = LabeledData.from_cache(caches[1]).X
    np.testing.assert_array_equal(again.estimator.predict(X), first.estimator.predict(X))
    assert checked(head.with_suffix(".json"), manifest=manifest_path(head.with_suffix(""))) == []
    fits.clear()
    train_head(caches[0], "logreg", memo=memo)
    assert fits == []  # the rewritten fit is reused


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_a_damaged_store_cache_is_refused(tmp_path, damage):
    store = CacheStore(tmp_path / "store")
    X = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    path = write_cache(store.path_for("sha256:" + "a" * 64), X, np.arange(50) % 2)
    assert not store.reusable(path)  # written without the store: no manifest, not trusted
    store.seal(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.reusable(path)
    damage(path)
    with pytest.warns(StoreEntryWarning, match=r"stored cache .* is not used \(.*\.h5 (has|chang)"):
        assert not store.reusable(path)
    write_cache(path, X, np.arange(50) % 2)  # extracted again (``force``), then sealed
    store.seal(path)
    assert store.reusable(path)
    with FeatureCache.open(path) as cache:
        np.testing.assert_array_equal(cache.features, X)


def test_a_changed_export_entry_is_refused(tmp_path):
    folder = tmp_path / "store" / EXPORTS_FOLDER / ("b" * 32)
    with atomic_path(folder) as scratch:
        scratch.mkdir()
        (scratch / "model.keras").write_bytes(b"a model" * 100)
        (scratch / EXPORT_SUMMARY).write_text('{"head": "logreg", "kind": "keras"}')
    assert reusable(folder, "export")
    _flip(folder / "model.keras")
    with pytest.warns(StoreEntryWarning, match=r"model\.keras changed since it was written"):
        assert not reusable(folder, "export")


def _cli(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process; a hang is a TimeoutExpired (a failure), not a hang."""
    return subprocess.run(
        [sys.executable, "-m", "bottleneck_transfer", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=os.environ.copy(),
    )


def test_fifos_in_the_store_are_never_opened(tmp_path):
    store = CacheStore(tmp_path / "store")
    (store.root / "fits").mkdir(parents=True)
    export = store.root / EXPORTS_FOLDER / ("c" * 32)
    export.mkdir(parents=True)
    sealed = write_cache(store.path_for("sha256:" + "d" * 64), np.ones((3, 2)), np.zeros(3))
    store.seal(sealed)
    sealed.unlink()
    fifos = [
        store.path_for("sha256:" + "a" * 64),  # named like a cache
        store.root / ("b" * 24 + ".h5.manifest.json"),  # named like a cache's manifest
        sealed,  # where a sealed cache was
        store.root / "fits" / ("e" * 32 + ".npz"),
        store.root / "fits" / ("e" * 32 + ".json"),
        export / EXPORT_SUMMARY,
    ]
    for fifo in fifos:
        os.mkfifo(fifo)
    listing = _cli("cache", "ls", "--cache-dir", str(store.root), "--json")
    assert listing.returncode == 0, listing.stderr
    entries = {Path(e["path"]).name: e for e in json.loads(listing.stdout)}
    assert {e["status"] for e in entries.values()} == {"not ours"}
    assert "is a FIFO" in entries[sealed.name]["note"]
    assert "is a FIFO" in entries["b" * 24 + ".h5"]["note"]
    pruned = _cli("cache", "prune", "--cache-dir", str(store.root), "--older-than", "0s")
    assert pruned.returncode == 0, pruned.stderr
    assert all(Path(fifo).is_fifo() for fifo in fifos)  # kept: not the store's files


def test_a_fifo_in_an_image_folder_is_a_failed_item_never_opened(tmp_path):
    images = tiny_images(tmp_path / "images", n=6, broken=False)
    os.mkfifo(images / "a" / "pipe.png")
    base = tiny_base_file(tmp_path / "tiny.keras")
    out = tmp_path / "c.h5"
    done = _cli("extract", str(images), "--base", str(base), "-o", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    with FeatureCache.open(out) as cache:
        assert len(cache) == 6
        ((failed, reason),) = cache.failed
    assert failed == "a/pipe.png" and "FIFO" in reason and "not opened" in reason


def test_a_fifo_given_as_the_source_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "list.csv")
    code = "import sys; from bottleneck_transfer.features.sources import open_source as o; "
    code += "o(sys.argv[1])"
    refused = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "list.csv")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert refused.returncode != 0
    assert "list.csv is a FIFO (named pipe), not a file: it is never opened" in refused.stderr


def test_a_fifo_at_the_output_cache_is_refused_never_opened(tmp_path):
    """``extract -o`` checks what is at its output first: a FIFO there is refused."""
    os.mkfifo(tmp_path / "c.h5")
    code = "import sys; from bottleneck_transfer.features.cache.reader import check_existing as c; "
    code += "c(sys.argv[1], 'sha256:x', {})"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.h5")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode != 0
    assert "c.h5 is a FIFO (named pipe), not a regular file" in done.stderr
