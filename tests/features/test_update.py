"""Caches that grow: --update equals a fresh extraction and reuses unchanged rows."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import StaleCacheError
from bottleneck_transfer.features import update as update_module
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from feature_checks import assert_features_close
from PIL import Image

SIZE = 8


def _image(path, seed, size=12):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for c, name in enumerate(["a", "b", "c"]):
        (root / name).mkdir(parents=True)
        for k in range(4):
            _image(root / name / f"{k}.png", 10 * c + k)
    (root / "b" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def base():
    return load_base("pixels", image_size=SIZE)


def test_update_extracts_only_new_or_changed_images_and_equals_a_fresh_run(
    folder, base, tmp_path, monkeypatch, spy_extracted_parts
):
    out = tmp_path / "c.h5"
    extract(folder, base, out, progress=False)
    _image(folder / "a" / "9.png", 99)  # added
    _image(folder / "c" / "0.png", 77, size=14)  # changed
    (folder / "b" / "1.png").unlink()  # removed
    (folder / "d").mkdir()  # a new class
    _image(folder / "d" / "0.png", 55)
    extracted = spy_extracted_parts()
    result = extract(folder, base, out, update=True, progress=False)
    monkeypatch.undo()
    assert extracted == [["a/9.png", "c/0.png", "d/0.png"]]
    assert result.update == {"reused": 11, "extracted": 3, "dropped": 1}
    fresh = extract(folder, base, tmp_path / "fresh.h5", progress=False)
    assert result.fingerprint == fresh.fingerprint
    with FeatureCache.open(out) as a, FeatureCache.open(tmp_path / "fresh.h5") as b:
        assert a.fingerprint == b.fingerprint and a.ids == b.ids
        assert "b/1.png" not in a.ids and a.ids[-1] == "d/0.png"
        np.testing.assert_array_equal(a.labels, b.labels)
        assert_features_close(a.features, b.features, rtol=1e-6)
        assert a.failed == b.failed == [("b/broken.png", b.failed[0][1])]
        assert a.provenance["extraction"]["update"] == {"reused": 11, "extracted": 3, "dropped": 1}
    assert not update_module.update_path(out).exists()
    assert extract(folder, base, out, update=True, progress=False).up_to_date


def test_update_is_refused_for_another_base(folder, base, tmp_path):
    out = tmp_path / "c.h5"
    extract(folder, base, out, progress=False)
    _image(folder / "a" / "9.png", 99)
    other = load_base("pixels", image_size=SIZE + 2)
    with pytest.raises(StaleCacheError, match=r"--update keeps the base.*differs in: base\."):
        extract(folder, other, out, update=True, progress=False)


def test_cli_update_says_what_it_extracted_reused_and_dropped(folder, tmp_path):
    from bottleneck_transfer.cli import cli
    from click.testing import CliRunner

    out = tmp_path / "c.h5"
    command = [
        "extract",
        str(folder),
        "--base",
        "pixels",
        "--image-size",
        str(SIZE),
        "-o",
        str(out),
    ]
    assert CliRunner().invoke(cli, command).exit_code == 0
    _image(folder / "a" / "9.png", 99)
    (folder / "b" / "1.png").unlink()
    result = CliRunner().invoke(cli, [*command, "--update"])
    assert result.exit_code == 0, result.output
    assert f"Updated {out}: 12 rows; 1 images extracted, 12 reused, 1 dropped; 1 skipped" in (
        result.output
    )
