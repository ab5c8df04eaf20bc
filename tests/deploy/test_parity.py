"""The export's parity check decodes the cache's images through extraction's own pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from PIL import Image


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(4):
            pixels = rng.integers(0, 256, (10 + k, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    return root


def test_parity_checks_every_sample_and_names_one_that_no_longer_decodes(images, tmp_path):
    cache = tmp_path / "c.h5"
    extract(images, load_base("pixels", image_size=6), cache, progress=False)
    result = export(cache, tmp_path / "m.keras", head="logreg")
    assert result.parity.n == 8 and result.parity.max_abs_diff < 1e-4
    (images / "b" / "2.png").write_bytes(b"broken")
    with pytest.raises(ExportError) as info:
        export(cache, tmp_path / "m2.keras", head="logreg")
    message = str(info.value)
    assert message.startswith("cannot check the export on sample b/2.png: not an image")
    assert message.endswith("skip the check with --sample 0") and "\n" not in message
