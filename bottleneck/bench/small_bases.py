"""Small bases built here: the shipped Fashion-MNIST base's architecture
(``data/bases/train_fashion_mnist_base.py`` trains it on classes 0-4, the ranking benchmark
:mod:`bench.rank` on other data), a one-block KerasHub ResNet (the benchmark's and the
tests' tiny preset) and a two-layer KerasHub BERT with a WordPiece vocabulary of its corpus
(``data/bases/train_wordnet_base.py`` trains the shipped text base on WordNet glosses)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

#: BERT's special tokens, first in every vocabulary :func:`wordpiece_vocabulary` builds.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")


def fashion_cnn(n_classes: int, *, seed: int | None = None, name: str | None = None) -> Any:
    """The small CNN (uncompiled): two conv/pool stages, a 128-unit ``bottleneck`` layer and
    a softmax over ``n_classes``; Keras seeded with ``seed`` first when given."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(28, 28, 1), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="bottleneck")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_resnet(seed: int) -> Any:
    """A one-block KerasHub ResNet backbone (64 channels; an 8x8 map at 32 px), seeded."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )


def words(text: str) -> list[str]:
    """The words and punctuation marks a lower-casing ``BertTokenizer`` splits ``text`` into
    (case folded, NFKC normalised; accents kept, as the tokenizer keeps them)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text.casefold()))


def wordpiece_vocabulary(texts: Iterable[str], size: int) -> list[str]:
    """A WordPiece vocabulary of at most ``size`` tokens: :data:`SPECIAL_TOKENS`, every
    character of ``texts`` alone and as a ``##`` continuation (so no word is unknown), then
    their most frequent words (ties by spelling). Deterministic."""
    counts = Counter(word for text in texts for word in words(text))
    chars = sorted({c for word in counts for c in word})
    vocabulary = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    known = set(vocabulary)
    ranked = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
    return vocabulary + ranked[: max(0, size - len(vocabulary))]


def tiny_bert(
    vocabulary: list[str], *, sequence_length: int = 64, hidden: int = 64, seed: int = 0
) -> tuple[Any, Any]:
    """A two-layer KerasHub ``BertBackbone`` (``hidden`` wide, two heads) and its
    ``BertTextClassifierPreprocessor`` (a lower-casing ``BertTokenizer`` of ``vocabulary``,
    ``sequence_length`` tokens); Keras seeded with ``seed`` first."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=sequence_length,
    )
    return backbone, preprocessor
