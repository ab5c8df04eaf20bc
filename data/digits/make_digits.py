"""Write ``digits.npz``: scikit-learn's 1,797 handwritten digits as 8x8 uint8 images.

The second demo spec (``pipelines/digits_fashion_base.toml``) sends these through the shipped
Fashion-MNIST clothing base: a task unlike the one the base learned, beside the similar one
of ``pipelines/fashion_mnist.toml``. Run from this folder: ``python make_digits.py``.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

if __name__ == "__main__":
    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    np.savez_compressed(
        Path(__file__).with_name("digits.npz"),
        images=images,
        labels=digits.target.astype(np.int64),
        class_names=np.array([str(i) for i in range(10)]),
    )
