"""Train the small text "source base" that the offline text demo transfers from.

The split-class protocol of the Fashion-MNIST base (``train_fashion_mnist_base.py``), on
text: a two-layer KerasHub BERT learns to tell WordNet glosses of 16 noun lexicographer
files apart (``bench.wordnet.BASE_CLASSES``: noun.act, noun.artifact, noun.person, ...), and
its features are later reused, frozen, for 8 other noun files it never saw
(``bench.wordnet.TRANSFER_CLASSES``: noun.animal, noun.food, ...; ``pipelines/
wordnet_glosses.toml``).

What it does
------------
1. Reads ``data.noun`` of WordNet 3.0 from Debian's ``wordnet-base``
   (``/usr/share/wordnet``; no network) with :mod:`bottleneck_transfer.bench.wordnet`.
2. Draws, per base class, ``TEST_PER_CLASS`` held-out glosses and up to ``TRAIN_PER_CLASS``
   training glosses (seeded).
3. Builds a WordPiece vocabulary of the training glosses alone
   (:func:`~bottleneck_transfer.bench.small_bases.wordpiece_vocabulary`: whole words and
   every character, so nothing is unknown) and the two-layer BERT of
   :func:`~bottleneck_transfer.bench.small_bases.tiny_bert`.
4. Trains the backbone under a softmax over the base classes of its ``sequence_output``
   averaged over the non-padding tokens (the ``mean`` pooling the demo extracts with; the
   backbone's ``[CLS]`` pooler is left untrained), on glosses tokenised once, for a few
   epochs, deterministically (seed 0).
5. Saves the backbone and its preprocessor (tokenizer, vocabulary, sequence length) with
   ``save_to_preset`` into ``data/bases/wordnet_nouns/`` (no classifier head, no optimizer
   state) and metadata (classes, sizes, accuracy on the held-out glosses, versions, seconds,
   sha256 of every preset file) into ``data/bases/wordnet_nouns.json``.

Preset contract (other code depends on it)
------------------------------------------
* ``keras_hub.models.Backbone.from_preset(folder)`` gives a ``BertBackbone`` (2 layers,
  hidden size ``HIDDEN``); ``keras_hub.models.TextClassifierPreprocessor.from_preset(folder)``
  its ``BertTextClassifierPreprocessor`` of ``SEQUENCE_LENGTH`` tokens (lower-casing).
* Only registered KerasHub classes (no custom objects).

How to run
----------
From the repository root (about 10 minutes of CPU time on 2 cores, TensorFlow backend; the
shipped run took 39 minutes on a machine shared with other jobs)::

    nice -n 10 python data/bases/train_wordnet_base.py

Reproducibility: with the same Keras/TensorFlow versions, reruns give the same weights
(op determinism on); the sha256 values in the JSON pin the shipped files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from bottleneck_transfer.bench.small_bases import tiny_bert, wordpiece_vocabulary
from bottleneck_transfer.bench.wordnet import (
    BASE_CLASSES,
    WORDNET_DIR,
    by_class,
    draw,
    read_synsets,
)
from train_fashion_mnist_base import enable_determinism, sha256_file

OUT_DIR = Path(__file__).resolve().parent
PRESET = "wordnet_nouns"
SEED = 0
EPOCHS = 4
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
VOCABULARY_SIZE = 6000
SEQUENCE_LENGTH = 64
HIDDEN = 64
TRAIN_PER_CLASS = 2000
TEST_PER_CLASS = 100
MAX_PRESET_BYTES = 3 * 1024 * 1024


def load_glosses(wordnet_dir: Path) -> tuple[tuple[list[str], np.ndarray], ...]:
    """``((train texts, labels), (test texts, labels))`` of :data:`BASE_CLASSES`; labels
    index ``BASE_CLASSES``."""
    groups = by_class(read_synsets([wordnet_dir / "data.noun"]), BASE_CLASSES)
    test, train = draw(groups, (TEST_PER_CLASS, TRAIN_PER_CLASS), seed=SEED)
    index = {name: k for k, name in enumerate(BASE_CLASSES)}
    return tuple(
        ([g.text for g in part], np.array([index[g.label] for g in part], dtype="int64"))
        for part in (train, test)
    )


def classifier_of(backbone, n_classes: int):
    """The backbone, its ``sequence_output`` averaged over the non-padding tokens, dropout and
    a ``Dense`` of ``n_classes`` logits: a Keras model of the preprocessor's token arrays."""
    import keras

    inputs = {
        name: keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    sequence = backbone(inputs)["sequence_output"]
    pooled = keras.layers.GlobalAveragePooling1D()(sequence, mask=inputs["padding_mask"])
    logits = keras.layers.Dense(n_classes)(keras.layers.Dropout(0.1)(pooled))
    return keras.Model(inputs, logits)


def tokens(preprocessor, texts: list[str]) -> dict[str, np.ndarray]:
    """The preprocessor's token arrays of ``texts`` (tokenised once, not every epoch)."""
    return {name: np.asarray(array) for name, array in preprocessor(texts).items()}


def train(texts: list[str], labels: np.ndarray, epochs: int) -> tuple:
    """``(backbone, preprocessor, classifier, seconds of training)``."""
    import keras

    backbone, preprocessor = tiny_bert(
        wordpiece_vocabulary(texts, VOCABULARY_SIZE),
        sequence_length=SEQUENCE_LENGTH,
        hidden=HIDDEN,
        seed=SEED,
    )
    classifier = classifier_of(backbone, len(BASE_CLASSES))
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    x = tokens(preprocessor, texts)
    classifier.fit(x, labels, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=2)
    return backbone, preprocessor, classifier, time.perf_counter() - start


def save_preset(backbone, preprocessor, folder: Path) -> dict[str, str]:
    """The backbone and preprocessor into ``folder`` (emptied first); each file's sha256."""
    if folder.exists():
        shutil.rmtree(folder)
    backbone.save_to_preset(str(folder))
    preprocessor.save_to_preset(str(folder))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def check_reload(backbone, folder: Path, x: dict[str, np.ndarray], texts: list[str]) -> None:
    """The saved preset tokenises ``texts`` to ``x`` and gives the trained backbone's outputs
    (raises SystemExit if not)."""
    import keras_hub

    loaded = keras_hub.models.Backbone.from_preset(str(folder))
    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(str(folder))
    again = tokens(preprocessor, texts)
    if any(not np.array_equal(again[name], x[name]) for name in x):
        raise SystemExit("the reloaded preprocessor tokenises differently")
    ours = np.asarray(backbone(x)["sequence_output"])
    theirs = np.asarray(loaded(again)["sequence_output"])
    if np.max(np.abs(ours - theirs)) > 1e-6 * np.max(np.abs(ours)):
        raise SystemExit("the reloaded preset disagrees with the trained backbone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)

    import keras

    enable_determinism(SEED)
    (x_train, y_train), (x_test, y_test) = load_glosses(args.wordnet_dir)
    print(f"train: {len(x_train)} glosses, test: {len(x_test)}, {len(BASE_CLASSES)} classes")
    backbone, preprocessor, classifier, seconds = train(x_train, y_train, args.epochs)
    x = tokens(preprocessor, x_test)
    logits = classifier.predict(x, batch_size=256, verbose=0)
    test_accuracy = float(np.mean(np.argmax(logits, axis=1) == y_test))

    folder = args.out_dir / PRESET
    files = save_preset(backbone, preprocessor, folder)
    check_reload(backbone, folder, {k: v[:64] for k, v in x.items()}, x_test[:64])
    size = sum((folder / name).stat().st_size for name in files)
    if size >= MAX_PRESET_BYTES:
        raise SystemExit(f"{folder} holds {size} bytes; must be < {MAX_PRESET_BYTES}")
    metadata = {
        "preset": PRESET,
        "architecture": "keras_hub BertBackbone + BertTextClassifierPreprocessor",
        "source_dataset": "WordNet 3.0 noun glosses (Debian wordnet-base)",
        "source_files": str(args.wordnet_dir / "data.noun"),
        "protocol": "split-class base network (Yosinski et al. 2014), 16 noun lexnames",
        "class_names": list(BASE_CLASSES),
        "vocabulary_size": backbone.vocabulary_size,
        "sequence_length": SEQUENCE_LENGTH,
        "num_layers": 2,
        "hidden_dim": HIDDEN,
        "trained_output": "sequence_output averaged over non-padding tokens",
        "pooling": "mean",
        "train_examples": len(x_train),
        "test_examples": len(x_test),
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": f"Adam(learning_rate={LEARNING_RATE})",
        "seed": SEED,
        "test_accuracy": round(test_accuracy, 4),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "training_seconds": round(seconds, 1),
        "preset_bytes": size,
        "sha256": files,
    }
    meta_path = args.out_dir / f"{PRESET}.json"
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    print(f"held-out accuracy ({len(x_test)} glosses of the base classes): {test_accuracy:.4f}")
    print(f"saved {folder} ({size} bytes) and {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
