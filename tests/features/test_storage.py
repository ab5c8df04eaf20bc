"""How /features is stored: float16 (half the file, own fingerprint), lossless compression."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import CacheWriter, FeatureCache
from bottleneck_transfer.features.extract import extract
from feature_checks import assert_features_close

N, SIZE = 120, 24


@pytest.fixture
def npz(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (N, SIZE, SIZE), dtype=np.uint8)
    path = tmp_path / "a.npz"
    np.savez(path, images=images, labels=np.arange(N) % 4)
    return path


@pytest.fixture(scope="module")
def base():
    return load_base("pixels", image_size=SIZE, channels=1)


def _extract(npz, base, out, **options):
    return extract(npz, base, out, batch_size=32, progress=False, **options)


def test_float16_halves_the_file_reads_back_float32_and_has_its_own_fingerprint(
    npz, base, tmp_path
):
    plain = _extract(npz, base, tmp_path / "f32.h5")
    half = _extract(npz, base, tmp_path / "f16.h5", store_dtype="float16")
    assert half.fingerprint != plain.fingerprint
    with h5py.File(tmp_path / "f16.h5", "r") as h5:
        assert h5["features"].dtype == np.float16
    with FeatureCache.open(tmp_path / "f32.h5") as a, FeatureCache.open(tmp_path / "f16.h5") as b:
        assert b.identity["store_dtype"] == "float16" and "store_dtype" not in a.identity
        assert b.provenance["storage"] == {"store_dtype": "float16", "compression": None}
        assert b.ids == a.ids
        X, y = b.arrays()
        assert X.dtype == np.float32 and X.flags.c_contiguous
        assert_features_close(X, a.features, rtol=1e-3)
        np.testing.assert_array_equal(y, a.labels)
        blocks = [block for block, _ in b.iter_rows(batch_rows=50)]
        assert all(block.dtype == np.float32 for block in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), X)
        assert b.features_dataset[3:5].dtype == np.float32
    ratio = (tmp_path / "f16.h5").stat().st_size / (tmp_path / "f32.h5").stat().st_size
    assert 0.45 < ratio < 0.6
    assert _extract(npz, base, tmp_path / "f16.h5", store_dtype="float16").up_to_date


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_compression_is_lossless_and_not_part_of_the_fingerprint(npz, base, tmp_path, compression):
    plain = _extract(npz, base, tmp_path / "plain.h5")
    packed = _extract(npz, base, tmp_path / "packed.h5", compression=compression)
    assert packed.fingerprint == plain.fingerprint
    with h5py.File(tmp_path / "packed.h5", "r") as h5:
        assert h5["features"].compression == compression
    with (
        FeatureCache.open(tmp_path / "plain.h5") as a,
        FeatureCache.open(tmp_path / "packed.h5") as b,
    ):
        np.testing.assert_array_equal(b.features, a.features)
        assert b.provenance["storage"]["compression"] == compression


def test_storage_options_are_checked(npz, base, tmp_path):
    with pytest.raises(ValueError, match="store_dtype must be one of float32, float16"):
        _extract(npz, base, tmp_path / "c.h5", store_dtype="int8")
    with pytest.raises(ValueError, match="compression must be one of lzf, gzip"):
        _extract(npz, base, tmp_path / "c.h5", compression="zip")


def test_float16_refuses_features_it_cannot_hold(tmp_path):
    writer = CacheWriter.create(
        tmp_path / "c.h5.partial",
        dim=2,
        fingerprint="sha256:0",
        identity={},
        provenance={},
        class_names=["a"],
        store_dtype="float16",
    )
    with pytest.raises(CacheError, match=r"beyond float16's range.*first id big"):
        writer.write_batch(
            np.array([[1.0, 2.0], [7e4, 0.0]]), np.zeros(2, int), ["ok", "big"], [], 2
        )


def test_cli_store_dtype_and_compression(npz, tmp_path):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    out = tmp_path / "c.h5"
    args = ["extract", npz, "--base", "pixels", "--image-size", SIZE, "-o", out, "--quiet"]
    args += ["--store-dtype", "float16", "--compression", "gzip"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as h5:
        assert (h5["features"].dtype, h5["features"].compression) == (np.float16, "gzip")


def test_float16_rounds_like_numpy_where_hdf5_does_not(tmp_path):
    # HDF5's own float32 -> float16 conversion turns 0.99999994 into 0.5 (no carry)
    values = np.array([[0.99999994, 2047.9999, 1.0 - 2**-12, 3.14159]], np.float32)
    writer = CacheWriter.create(
        tmp_path / "c.h5.partial",
        dim=4,
        fingerprint="sha256:0",
        identity={},
        provenance={},
        class_names=["a"],
        store_dtype="float16",
    )
    writer.write_batch(values, np.zeros(1, int), ["x"], [], 1)
    writer.finalize(tmp_path / "c.h5", {})
    with FeatureCache.open(tmp_path / "c.h5") as cache:
        np.testing.assert_array_equal(cache.features, values.astype(np.float16).astype(np.float32))
