"""A class-folder tree holding copies of two photos among distinct Fashion-MNIST images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from bottleneck_transfer.features.sources import read_idx
from PIL import Image
from skimage import data

#: The copies the tree holds: one photo as PNG, JPEG and a resized copy (near copies), and
#: one PNG with a byte-identical second file (exact copies).
NEAR = ["shirts/astronaut.png", "shirts/astronaut.jpg", "shirts/astronaut_small.png"]
EXACT = ["bags/coffee.png", "bags/coffee_copy.png"]


def write_copies_tree(root: Path, fashion_dir: Path, per_class: int = 8) -> Path:
    """``root/copies/{shirts,bags}``: ``per_class`` distinct Fashion-MNIST images of
    T-shirts (class 0) and bags (class 8) as PNG, plus the copies :data:`NEAR` and
    :data:`EXACT`."""
    images = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    tree = root / "copies"
    for name, label in (("shirts", 0), ("bags", 8)):
        (tree / name).mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[index]).save(tree / name / f"fm{k}.png")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(tree / NEAR[0])
    astronaut.save(tree / NEAR[1], quality=85)
    astronaut.resize((256, 256), Image.Resampling.BILINEAR).save(tree / NEAR[2])
    Image.fromarray(data.coffee()).save(tree / EXACT[0])
    shutil.copyfile(tree / EXACT[0], tree / EXACT[1])
    return tree
