"""Train the small Fashion-MNIST "source base" that the offline demo transfers from.

This follows the split-class protocol of Yosinski et al. (2014), "How transferable are
features in deep neural networks?": a base network is trained on one half of the classes
(here Fashion-MNIST classes 0-4: T-shirt/top, Trouser, Pullover, Dress, Coat) and its
penultimate layer is later reused as a frozen feature extractor ("bottleneck") for the
other half of the classes.

What it does
------------
1. Reads Fashion-MNIST from the local IDX files in ``/usr/share/datasets/fashion-mnist``
   (the package's IDX reader; no network, no ``keras.datasets``).
2. Keeps only the images of classes 0-4 (train and test splits).
3. Trains a small CNN with Keras 3 for a few epochs, deterministically (seed 0).
4. Saves the model *without optimizer state* to ``data/bases/fashion_mnist_0-4.keras`` and
   writes metadata (dataset, classes, epochs, seed, test accuracy, Keras version, backend,
   training seconds, sha256 of the ``.keras`` file) to ``data/bases/fashion_mnist_0-4.json``.

Model contract (other code depends on it)
-----------------------------------------
* Input: shape ``(28, 28, 1)``, float32 raw pixel values in ``0..255``.
* First layer: ``Rescaling(1/255)``, so callers never preprocess.
* Penultimate layer: ``Dense(128, activation="relu", name="bottleneck")``.
* Output layer: ``Dense(5, activation="softmax", name="predictions")``.
* Model name: ``fashion_mnist_0_4``. Only built-in ``keras.layers`` are used (no Lambda, no
  custom objects), so the file loads with
  ``keras.saving.load_model(path, safe_mode=True, compile=False)`` on any backend.

How to run
----------
From the repository root::

    python data/bases/train_fashion_mnist_base.py

Optional flags: ``--data-dir`` (IDX directory), ``--out-dir`` (where to write the artifacts),
``--epochs`` (default 3). Training takes about 15 s on 2 CPU cores (TensorFlow backend).

Reproducibility: with the same Keras/TensorFlow versions, reruns produce bit-identical
weights. The ``.keras`` file's bytes (and so its sha256) still differ between runs, because
Keras records a save timestamp in the archive; the sha256 in the JSON pins the shipped file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from bottleneck_transfer.bench.small_bases import fashion_cnn
from bottleneck_transfer.features.sources.arrays import read_idx
from bottleneck_transfer.features.sources.fashion_mnist import FASHION_MNIST_CLASSES

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
OUT_DIR = Path(__file__).resolve().parent
MODEL_FILENAME = "fashion_mnist_0-4.keras"
META_FILENAME = "fashion_mnist_0-4.json"
MODEL_NAME = "fashion_mnist_0_4"

SEED = 0
EPOCHS = 3
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
MAX_MODEL_BYTES = 2 * 1024 * 1024

CLASS_INDICES = (0, 1, 2, 3, 4)


def load_split(data_dir: Path, split: str, classes=CLASS_INDICES) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` for ``split`` in {"train", "t10k"}, restricted to ``classes``.

    ``x`` is float32 of shape (n, 28, 28, 1) with raw pixel values in 0..255; ``y`` is int64
    labels, which equal the original Fashion-MNIST indices (classes 0-4 need no remapping).
    """
    images = read_idx(data_dir / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    keep = np.isin(labels, classes)
    x = images[keep].astype("float32")[..., None]
    y = labels[keep].astype("int64")
    return x, y


def enable_determinism(seed: int) -> None:
    """Seed Python/NumPy/backend RNGs; on TensorFlow also turn on op determinism."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        try:
            import tensorflow as tf
        except ImportError:  # pragma: no cover - backend says TF, but be defensive
            return
        tf.config.experimental.enable_op_determinism()


def build_model(num_classes: int = len(CLASS_INDICES)):
    """The small CNN described in the module docstring (uncompiled)."""
    return fashion_cnn(num_classes, name=MODEL_NAME)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)

    import keras

    enable_determinism(SEED)

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "t10k")
    print(f"train: {x_train.shape[0]} images, test: {x_test.shape[0]} images, classes 0-4")

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.summary()

    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=2)
    train_seconds = time.perf_counter() - start
    print(f"training time: {train_seconds:.1f} s")

    probs = model.predict(x_test, batch_size=1024, verbose=0)
    test_accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))

    # Ship the weights only: an uncompiled copy carries no optimizer state (keeps it small).
    export = build_model()
    export.set_weights(model.get_weights())

    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / MODEL_FILENAME
    export.save(model_path)
    size = model_path.stat().st_size
    if size >= MAX_MODEL_BYTES:
        raise SystemExit(f"{model_path} is {size} bytes; must be < {MAX_MODEL_BYTES}")

    # Round-trip check: the shipped file must load in safe mode and give the same outputs.
    reloaded = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    reloaded_probs = reloaded.predict(x_test[:256], verbose=0)
    if not np.allclose(reloaded_probs, probs[:256], atol=1e-5):
        raise SystemExit("reloaded model disagrees with the trained model")

    metadata = {
        "model_name": MODEL_NAME,
        "model_file": MODEL_FILENAME,
        "source_dataset": "Fashion-MNIST",
        "source_files": str(args.data_dir),
        "protocol": "split-class base network (Yosinski et al. 2014), classes 0-4",
        "classes": [{"index": i, "name": FASHION_MNIST_CLASSES[i]} for i in CLASS_INDICES],
        "class_indices": list(CLASS_INDICES),
        "class_names": [FASHION_MNIST_CLASSES[i] for i in CLASS_INDICES],
        "input_shape": [28, 28, 1],
        "input_range": "float32 raw pixel values 0..255 (model rescales by 1/255)",
        "bottleneck_layer": "bottleneck",
        "bottleneck_units": 128,
        "output_layer": "predictions",
        "train_examples": int(x_train.shape[0]),
        "test_examples": int(x_test.shape[0]),
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": f"Adam(learning_rate={LEARNING_RATE})",
        "seed": SEED,
        "test_accuracy": round(test_accuracy, 4),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "training_seconds": round(train_seconds, 1),
        "file_bytes": size,
        "sha256": sha256_file(model_path),
    }
    meta_path = args.out_dir / META_FILENAME
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    print(f"test accuracy (classes 0-4, {x_test.shape[0]} images): {test_accuracy:.4f}")
    print(f"saved {model_path} ({size} bytes) and {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
