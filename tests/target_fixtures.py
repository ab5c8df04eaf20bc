"""Small image folders with binary, multi-label and regression manifests (for target tests)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

#: Channels an image is tagged with when its mean in that channel is above the middle.
TAGS = ("red", "green", "blue")


def target_images(root: Path, n: int = 60, seed: int = 0) -> Path:
    """``n`` 8x8 PNGs of random colour and brightness, and ``targets.csv`` beside them with
    columns ``path``, ``bright`` (yes/no), ``tags`` (channels above the middle, ``|``-joined;
    ``red`` when none) and ``brightness`` (the mean pixel, 0-1)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = rng.uniform(0.05, 0.95, 3)
        pixels = np.clip(colour + rng.normal(0, 0.05, (8, 8, 3)), 0, 1)
        image = (pixels * 255).astype(np.uint8)
        Image.fromarray(image).save(root / f"im{i:03d}.png")
        mean = image.astype(np.float64).mean(axis=(0, 1)) / 255
        tags = [t for t, m in zip(TAGS, mean, strict=True) if m > 0.5] or ["red"]
        value = float(image.mean() / 255)
        rows.append([f"im{i:03d}.png", "yes" if value > 0.5 else "no", "|".join(tags), value])
    with open(root / "targets.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "bright", "tags", "brightness"])
        writer.writerows(rows)
    return root / "targets.csv"
