"""Tiny text bases and corpora built offline for the text tests: a BERT-like encoder and a
GPT-2-like decoder-only preset, written with ``save_to_preset`` from random weights and tiny
vocabularies, and a small two-class corpus with a long-tailed length distribution."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: The corpus' words: two topics (animals, colours) and some glue.
ANIMALS = ["cat", "dog", "cow", "hen", "owl", "fox", "bee", "ant"]
COLOURS = ["red", "blue", "green", "pink", "grey", "gold", "teal", "tan"]
GLUE = ["the", "a", "on", "is", "was", "and"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ANIMALS, *COLOURS, *GLUE]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def save_bert(folder: Path, seed: int = 3) -> Path:
    """A 2-layer BERT (16 features, pooled output) and its WordPiece tokenizer."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(WORDS), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64,
    )  # fmt: skip
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=WORDS).save_to_preset(str(folder))
    return folder


def save_gpt2(folder: Path, seed: int = 4) -> Path:
    """A 1-layer GPT-2 (16 features, decoder-only) and its byte-pair tokenizer over letters."""
    import keras
    import keras_hub

    vocabulary = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate([*LETTERS, "Ġ"])}}
    vocabulary |= {"Ġt": len(vocabulary), "at": len(vocabulary) + 1}
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64,
    )  # fmt: skip
    backbone.save_to_preset(str(folder))
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["Ġ t", "a t"])
    tokenizer.save_to_preset(str(folder))
    return folder


def corpus(n: int, seed: int = 0, tail: float = 1.3) -> tuple[list[str], list[str]]:
    """``n`` texts of two classes (animal / colour words among glue), lengths Pareto-tailed."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for k in range(n):
        label = ("animal", "colour")[k % 2]
        topic = ANIMALS if label == "animal" else COLOURS
        length = int(min(2 + 3 * rng.pareto(tail), 200))
        words = [
            rng.choice(topic) if rng.random() < 0.5 else rng.choice(GLUE) for _ in range(length)
        ]
        texts.append(" ".join([rng.choice(topic), *words]))
        labels.append(label)
    return texts, labels


def write_csv(path: Path, texts: list[str], labels: list[str], text: str = "text") -> Path:
    """A ``text,label`` CSV (the text column named ``text``)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([text, "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path
