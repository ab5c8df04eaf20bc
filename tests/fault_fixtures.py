"""A tiny image source and base for tests that run many extractions (faults, bad inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def tiny_images(root: Path, n: int = 16, broken: bool = True) -> Path:
    """``n`` random 12 x 10 PNGs in classes ``a`` and ``b`` (and ``a/broken.png``)."""
    rng = np.random.default_rng(0)
    for k in range(n):
        path = root / ("ab"[k % 2]) / f"{k:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    if broken:
        (root / "a" / "broken.png").write_bytes(b"not a png")
    return root


def tiny_base_file(path: Path) -> Path:
    """A saved 8 x 8 RGB model whose penultimate layer gives 4 features."""
    import keras

    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
    outputs = keras.layers.Dense(2, name="out")(pooled)
    keras.Model(inputs, outputs).save(path)
    return path
