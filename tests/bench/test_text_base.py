"""The text demo's base: a WordPiece vocabulary of its corpus, the two-layer KerasHub BERT
saved with ``save_to_preset`` and loaded back, and the shipped preset
(``data/bases/wordnet_nouns``, written by ``data/bases/train_wordnet_base.py``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from bottleneck_transfer.bench.small_bases import SPECIAL_TOKENS, wordpiece_vocabulary, words

REPO = Path(__file__).resolve().parents[2]
PRESET = REPO / "data/bases/wordnet_nouns"
METADATA = REPO / "data/bases/wordnet_nouns.json"
TEXTS = [
    'a member of the genus Canis; "the dog barked all night"',
    "the act of moving something from one place to another",
    "Café owners' food_and_drink (especially coffee)",
]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _mean_features(backbone, preprocessor, texts: list[str]) -> np.ndarray:
    """The backbone's ``sequence_output`` averaged over the non-padding tokens."""
    x = preprocessor(texts)
    sequence = np.asarray(backbone(x)["sequence_output"])
    mask = np.asarray(x["padding_mask"], dtype="float32")[..., None]
    return (sequence * mask).sum(axis=1) / mask.sum(axis=1)


def test_words_split_like_a_lower_casing_bert_tokenizer():
    assert words("Café owners' food_and_drink (coffee)") == [
        "café", "owners", "'", "food", "_", "and", "_", "drink", "(", "coffee", ")",
    ]  # fmt: skip


def test_the_vocabulary_holds_specials_every_character_and_the_commonest_words():
    vocabulary = wordpiece_vocabulary(TEXTS, 200)
    assert vocabulary[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    chars = {c for text in TEXTS for word in words(text) for c in word}
    assert chars <= set(vocabulary) and {f"##{c}" for c in chars} <= set(vocabulary)
    assert vocabulary.index("the") < vocabulary.index("act")  # "the" is the commonest word
    assert len(vocabulary) == len(set(vocabulary)) < 200
    short = wordpiece_vocabulary(TEXTS, len(vocabulary) - 3)
    assert (
        short == vocabulary[:-3] and wordpiece_vocabulary(list(reversed(TEXTS)), 200) == vocabulary
    )


def test_a_tiny_bert_preset_loads_back_with_keras_hub_and_gives_the_same_features(tmp_path):
    import keras_hub
    from bottleneck_transfer.bench.small_bases import tiny_bert

    backbone, preprocessor = tiny_bert(
        wordpiece_vocabulary(TEXTS, 100), sequence_length=16, hidden=16, seed=3
    )
    backbone.save_to_preset(str(tmp_path))
    preprocessor.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    reader = keras_hub.models.TextClassifierPreprocessor.from_preset(str(tmp_path))
    assert isinstance(loaded, keras_hub.models.BertBackbone)
    assert loaded.num_layers == 2 and loaded.hidden_dim == 16
    x, again = preprocessor(TEXTS), reader(TEXTS)
    for name in ("token_ids", "padding_mask", "segment_ids"):
        assert np.array_equal(np.asarray(x[name]), np.asarray(again[name]))
    unknown = reader.tokenizer.token_to_id("[UNK]")
    assert not (np.asarray(again["token_ids"]) == unknown).any()  # characters cover every word
    assert np.asarray(again["padding_mask"]).sum(axis=1).max() == 16  # the long one truncated
    ours = _mean_features(backbone, preprocessor, TEXTS)
    theirs = _mean_features(loaded, reader, TEXTS)
    assert ours.shape == (3, 16)
    assert _relative(theirs, ours) < 1e-6


def test_the_shipped_preset_is_the_one_its_metadata_pins_and_is_deterministic():
    import keras_hub

    metadata = json.loads(METADATA.read_text(encoding="utf-8"))
    shipped = sorted(p.relative_to(PRESET).as_posix() for p in PRESET.rglob("*") if p.is_file())
    assert shipped == sorted(metadata["sha256"])
    for name, digest in metadata["sha256"].items():
        assert hashlib.sha256((PRESET / name).read_bytes()).hexdigest() == digest, name
    assert sum((PRESET / name).stat().st_size for name in shipped) < 3 * 1024 * 1024
    assert metadata["pooling"] == "mean" and metadata["seed"] == 0

    features = []
    for _ in range(2):
        backbone = keras_hub.models.Backbone.from_preset(str(PRESET))
        reader = keras_hub.models.TextClassifierPreprocessor.from_preset(str(PRESET))
        features.append(_mean_features(backbone, reader, TEXTS))
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert backbone.vocabulary_size == metadata["vocabulary_size"]
    assert reader.sequence_length == metadata["sequence_length"]
    assert features[0].shape == (3, metadata["hidden_dim"])
    assert _relative(features[1], features[0]) < 1e-6
    assert _relative(features[0][1:], features[0][:1]) > 1e-2  # different glosses differ


def test_the_spec_names_the_shipped_csvs_and_preset():
    import tomllib

    spec = REPO / "pipelines/wordnet_glosses.toml"
    loaded = tomllib.loads(spec.read_text(encoding="utf-8"))
    named = [loaded["data"]["train"], loaded["data"]["test"], loaded["base"]["name"]]
    shipped = [REPO / "data/wordnet/train.csv", REPO / "data/wordnet/test.csv", PRESET]
    assert [(spec.parent / path).resolve() for path in named] == shipped
    assert loaded["base"]["pooling"] == json.loads(METADATA.read_text())["pooling"]
