"""Small labelled image arrays for the ranking tests: class-structured 8x8 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def class_images(path: Path, per_class=(20, 20, 20), seed: int = 0, copies: int = 0) -> Path:
    """An ``.npz`` of 8x8 grayscale images whose brightness pattern depends on the class
    (so pixels carry the label), ``per_class`` images of each class; the last ``copies``
    images repeat the first ones of their class (exact copies)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(per_class)), per_class)
    patterns = rng.integers(0, 256, (len(per_class), 8, 8))
    images = np.clip(patterns[labels] + rng.normal(0, 60, (len(labels), 8, 8)), 0, 255)
    images = images.astype(np.uint8)
    for k in range(copies):
        row = len(labels) - 1 - k
        images[row] = images[np.flatnonzero(labels == labels[row])[0]]
    np.savez(path, images=images, labels=labels)
    return path
