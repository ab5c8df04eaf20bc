"""extract()'s options apply, or are refused in one line: never silently ignored."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.options import SOURCE_OPTIONS
from bottleneck_transfer.features.sources import open_source


@pytest.fixture
def arrays(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(12) % 3)
    return tmp_path / "a.npz"


@pytest.mark.parametrize("options", [{"classes": "0-1"}, {"limit": 4}])
def test_classes_and_limit_with_a_source_object_are_refused(arrays, tmp_path, options):
    source = open_source(arrays)
    with pytest.raises(ValueError) as info:
        extract(source, "pixels", tmp_path / "c.h5", image_size=8, **options)
    message = str(info.value)
    listed = ", ".join(f"{name}=" for name in SOURCE_OPTIONS)
    assert message.startswith(f"extract(): {listed} apply to a source given by name; ")
    assert f"open_source(spec, {', '.join(f'{n}=...' for n in SOURCE_OPTIONS)})" in message
    key, value = next(iter(options.items()))
    assert message.endswith(f"Received: {key}={value!r}") and "\n" not in message
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"weights": "none"},
        {"image_size": 16},
        {"pooling": "max"},
        {"pooling": "avg"},
        {"layer": "flatten"},
        {"preprocess": "tf"},
        {"trust_graph": True},
        {"layout": "nchw"},
        {"max_length": 16},
    ],
)
def test_base_options_with_a_base_object_are_refused(arrays, tmp_path, options):
    base = load_base("pixels", image_size=8, channels=1)
    with pytest.raises(ValueError) as info:
        extract(arrays, base, tmp_path / "c.h5", **options)
    message = str(info.value)
    assert message.startswith(
        "extract(): weights=, image_size=, pooling=, layer=, preprocess=, trust_graph=, layout=, "
        "max_length= apply to a base given by name; load_base(name, "
    )
    key, value = next(iter(options.items()))
    assert message.endswith(f"Received: {key}={value!r}") and "\n" not in message


def test_options_apply_to_a_source_and_base_given_by_name(arrays, tmp_path):
    out = tmp_path / "c.h5"
    extract(
        arrays, "pixels", out, classes="1-2", limit=5, image_size=4, preprocess="tf", progress=False
    )
    with FeatureCache.open(out) as cache:
        assert len(cache) == 5 and cache.class_names == ["1", "2"]
        assert cache.features.shape == (5, 4 * 4 * 3)
        assert cache.features.min() >= -1 and cache.features.max() <= 1
        assert cache.provenance["base"]["preprocess"]["bias"] == [-1.0, -1.0, -1.0]
    # The same objects built beforehand give the same cache.
    source = open_source(arrays, classes="1-2", limit=5)
    base = load_base("pixels", image_size=4, preprocess="tf")
    assert extract(source, base, out, progress=False).up_to_date
