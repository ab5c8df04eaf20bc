"""Reading a whole cache: exactly the stored rows, in one contiguous read (speed: bench)."""

from __future__ import annotations

import h5py
import numpy as np
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from feature_checks import assert_features_close


def test_features_are_the_stored_rows_read_in_one_contiguous_pass(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (50, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(50) % 5)
    monkeypatch.setenv("BOTTLENECK_COMMIT_SECONDS", "0")  # many chunks, as a long run has
    out = tmp_path / "c.h5"
    base = load_base("pixels", image_size=8, channels=1)
    extract(tmp_path / "a.npz", base, out, batch_size=8, progress=False)
    with h5py.File(out, "r") as h5:
        dataset = h5["features"]
        assert dataset.chunks is None and dataset.compression is None  # contiguous, as designed
        stored = dataset[()]
    assert_features_close(stored, images.reshape(50, 64) / 255.0)  # in order

    def no_hdf5_read(*args, **kwargs):
        raise AssertionError("the whole-cache read went through HDF5, not one readinto")

    with FeatureCache.open(out) as cache:
        monkeypatch.setattr(h5py.Dataset, "read_direct", no_hdf5_read)
        monkeypatch.setattr(h5py.Dataset, "__getitem__", no_hdf5_read)
        features = cache.features
    assert features.dtype == np.float32 and features.flags.c_contiguous
    np.testing.assert_array_equal(features, stored)


def test_a_closed_cache_says_it_is_closed_instead_of_answering_no(tmp_path):
    import pytest
    from bottleneck_transfer.errors import CacheError

    out = tmp_path / "c.h5"
    extract("fashion-mnist:test", load_base("pixels", image_size=4), out, limit=6, progress=False)
    with FeatureCache.open(out) as cache:
        assert cache.failed == [] and not cache.has_views and cache.manifest is None
    for name in ("failed", "has_views", "manifest", "source_rows"):
        with pytest.raises(CacheError, match=r"c\.h5 is closed: use the cache inside"):
            getattr(cache, name)
