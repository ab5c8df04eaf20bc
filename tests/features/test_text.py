"""Text transfer: text sources, KerasHub text bases (a tiny BERT and a tiny GPT-2 written
here with save_to_preset), length bucketing, and heads on a text cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import BaseModelError, SourceError, TruncatedTextWarning
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source, open_texts
from bottleneck_transfer.features.text_batches import iter_text_batches, plan_calls
from click.testing import CliRunner
from feature_checks import assert_features_close, assert_features_differ
from hub_fixtures import needs_keras_hub
from text_fixtures import corpus, save_bert, save_gpt2, write_csv

pytestmark = needs_keras_hub


@pytest.fixture(scope="module")
def presets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text_presets")
    return {"bert": save_bert(root / "bert_tiny"), "gpt2": save_gpt2(root / "gpt2_tiny")}


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory) -> Path:
    texts, labels = corpus(40)
    return write_csv(tmp_path_factory.mktemp("texts") / "texts.csv", texts, labels)


def _reference(preset: Path, texts: list[str], pooling: str, max_length: int) -> np.ndarray:
    """The preset's backbone on its own preprocessor's output, pooled as asked (numpy)."""
    import keras
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    try:
        packed = keras_hub.models.TextClassifierPreprocessor.from_preset(
            str(preset), sequence_length=max_length
        )(texts)
    except ValueError:
        packed = keras_hub.models.CausalLMPreprocessor.from_preset(
            str(preset), sequence_length=max_length
        ).generate_preprocess(texts)
    inputs = {key: np.asarray(packed[key]).astype("int32") for key in backbone.input}
    out = backbone(inputs)
    if pooling == "pooled":
        return keras.ops.convert_to_numpy(out["pooled_output"])
    tokens = keras.ops.convert_to_numpy(out["sequence_output"] if isinstance(out, dict) else out)
    mask = inputs["padding_mask"].astype(np.float64)
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return tokens[np.arange(len(tokens)), mask.sum(1).astype(int) - 1]


@pytest.mark.parametrize(
    ("kind", "pooling"),
    [
        ("bert", "pooled"),
        ("bert", "cls"),
        ("bert", "mean"),
        ("gpt2", "last-token"),
        ("gpt2", "mean"),
    ],
)
def test_text_features_equal_the_backbone_pooled_as_asked(
    presets, texts_csv, tmp_path, kind, pooling
):
    out = tmp_path / "c.h5"
    extract(texts_csv, presets[kind], out, pooling=pooling, max_length=48, batch_size=4)
    source = open_source(texts_csv)
    texts = [source.content(item).decode() for item in source.items]
    with FeatureCache.open(out) as cache:
        assert list(cache.ids) == [item.id for item in source.items]
        assert cache.provenance["base"]["pooling"] == pooling
        assert_features_close(cache.features, _reference(presets[kind], texts, pooling, 48))


def test_the_default_pooling_is_the_familys_and_info_says_so(presets, texts_csv, tmp_path):
    assert load_base(presets["bert"]).description["pooling"] == "pooled"
    assert load_base(presets["gpt2"]).description["pooling"] == "last-token"
    out = tmp_path / "c.h5"
    result = CliRunner().invoke(
        cli, ["extract", str(texts_csv), "--base", str(presets["gpt2"]), "-o", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "texts/s" in result.output and "images" not in result.output
    shown = CliRunner().invoke(cli, ["info", str(out)]).output
    assert "pooling last-token" in shown and "pooling_default" in shown
    assert "input text, up to 64 tokens" in shown
    assert "texts/s" in shown and "images" not in shown
    dupes = CliRunner().invoke(cli, ["cache", "dupes", str(out)]).output
    assert "texts" in dupes and "images" not in dupes


def test_bucketing_keeps_source_order_and_the_features_of_fixed_length_batches(presets):
    texts, labels = corpus(300, seed=1)
    source = open_texts(texts, [0 if x == "animal" else 1 for x in labels])
    base = load_base(presets["bert"], pooling="mean", max_length=64)
    from bottleneck_transfer.features.runners.text import TextRunner

    run = TextRunner(base.model)
    got = {}
    for bucketing in (True, False):
        batches = list(iter_text_batches(source, base.encoder, 8, bucketing=bucketing, window=128))
        assert [i.id for b in batches for i in b.items] == [i.id for i in source.items]
        got[bucketing] = np.concatenate([run(b.pixels) for b in batches])
        computed = sum(b.pixels.computed for b in batches)
        tokens = sum(b.pixels.tokens for b in batches)
        got[f"padding {bucketing}"] = 1 - tokens / computed
    assert_features_close(got[True], got[False])
    assert got["padding True"] < 0.5 * got["padding False"]


def test_planned_calls_cover_every_row_once_within_the_token_budget():
    lengths = np.random.default_rng(0).integers(1, 129, 1000)
    calls = plan_calls(lengths, batch_size=16, max_length=128)
    rows = np.concatenate([r for r, _ in calls])
    assert sorted(rows.tolist()) == list(range(1000))
    for r, padded in calls:
        assert len(r) * padded <= 16 * 128 and lengths[r].max() <= padded and padded % 8 == 0
        assert (padded - lengths[r]).max() < max(8, padded / 4)


def test_empty_long_and_non_utf8_texts_are_one_line_each(presets, tmp_path):
    spec = tmp_path / "odd.csv"
    write_csv(spec, ["a red owl", "", "cat " * 80, "a dog"], ["animal"] * 4)
    with open(spec, "ab") as handle:
        handle.write(b"caf\xe9 au lait,colour\n")
    with pytest.warns(TruncatedTextWarning, match="1 of 3 texts were longer than 16 tokens"):
        result = extract(spec, presets["bert"], tmp_path / "c.h5", max_length=16)
    assert dict(result.failed) == {
        "odd.csv#1": "empty text: nothing to encode",
        "odd.csv#4": "not UTF-8 text (byte 0xe9 at offset 3): re-encode it as UTF-8",
    }
    with FeatureCache.open(tmp_path / "c.h5") as cache:
        assert list(cache.ids) == ["odd.csv#0", "odd.csv#2", "odd.csv#3"]
        assert cache.provenance["extraction"]["text"]["texts_truncated"] == 1


def test_text_sources_of_every_kind_read_the_same_texts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts, labels = ["a cat", "a red hen", "blue"], ["animal", "animal", "colour"]
    write_csv(tmp_path / "t.csv", texts, labels, text="body")
    with open(tmp_path / "t.jsonl", "w") as handle:
        rows = zip(texts, labels, strict=True)
        handle.writelines(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    pq.write_table(pa.table({"text": texts, "label": labels}), tmp_path / "t.parquet")
    for k, (text, label) in enumerate(zip(texts, labels, strict=True)):
        (tmp_path / "folder" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / label / f"{k}.txt").write_text(text)
    sources = {
        "csv": open_source(tmp_path / "t.csv", text_column="body"),
        "jsonl": open_source(tmp_path / "t.jsonl"),
        "parquet": open_source(tmp_path / "t.parquet"),
        "folder": open_source(tmp_path / "folder"),
        "memory": open_texts(texts, [0, 0, 1], class_names=["animal", "colour"]),
    }
    for name, source in sources.items():
        assert source.modality == "text", name
        assert source.class_names == ["animal", "colour"], name
        content = [source.content(item) for item in source.items]
        read = [c.read_bytes() if isinstance(c, Path) else c for c in content]
        assert sorted(read) == sorted(t.encode() for t in texts), name
    assert sources["folder"].items[0].id == "animal/0.txt"
    assert sources["csv"].items[2].id == "t.csv#2"


def test_a_missing_text_column_is_one_line_naming_the_option(tmp_path):
    write_csv(tmp_path / "t.csv", ["a cat"], ["animal"], text="body")
    with pytest.raises(SourceError) as error:
        open_source(tmp_path / "t.csv", text_column="words")
    assert str(error.value) == (
        f"{tmp_path / 't.csv'} has no 'words' column (columns: body, label); name the column "
        "with --text-column"
    )


def test_heads_compare_on_a_text_cache(presets, tmp_path):
    from bottleneck_transfer.heads.compare import compare_heads

    texts, labels = corpus(80, seed=2)
    spec = write_csv(tmp_path / "t.csv", texts, labels)
    extract(spec, presets["bert"], tmp_path / "c.h5", pooling="mean", max_length=32)
    comparison = compare_heads(tmp_path / "c.h5", heads=["logreg", "knn"], cv=3, n_bootstrap=50)
    assert {row.spec for row in comparison.rows} == {"logreg", "knn"}
    assert comparison.best.metrics["accuracy"] > 0.5


def test_texts_through_an_image_base_and_images_through_a_text_base_are_refused(
    presets, texts_csv, tmp_path
):
    with pytest.raises(SourceError, match="holds texts but the base pixels takes images"):
        extract(texts_csv, "pixels", tmp_path / "c.h5", image_size=8)
    with pytest.raises(BaseModelError, match="reads an encoder's first token"):
        load_base(presets["gpt2"], pooling="cls")
    with pytest.raises(BaseModelError, match="--max-length applies to text bases"):
        load_base("pixels", max_length=8)


def test_a_preset_naming_a_class_outside_keras_hub_is_refused_before_building(presets, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(presets["bert"], folder)
    config = json.loads((folder / "tokenizer.json").read_text())
    config |= {"module": "os", "registered_name": "builtins>Evil"}
    (folder / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match="names the class 'builtins>Evil', which is not"):
        load_base(folder)


def test_text_baselines_are_tfidf_of_the_train_texts_and_the_random_backbone(presets, tmp_path):
    from bottleneck_transfer.features.baselines import extract_baselines
    from bottleneck_transfer.features.text_baseline import TFIDF_SETTINGS
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, labels = corpus(30, seed=3)
    train = extract(
        write_csv(tmp_path / "t.csv", texts, labels), presets["bert"], tmp_path / "c.h5"
    )
    out = extract_baselines(
        train.path, None, ["tfidf", "random-base"], cache_dir=tmp_path / "s",
        base_path=presets["bert"],
    )  # fmt: skip
    settings = {**TFIDF_SETTINGS, "ngram_range": (1, 2), "dtype": np.float32}
    expected = TfidfVectorizer(**settings).fit_transform(texts).toarray()
    with FeatureCache.open(out["tfidf"][0]) as tfidf, FeatureCache.open(train.path) as main:
        assert list(tfidf.ids) == list(main.ids) and list(tfidf.labels) == list(main.labels)
        assert_features_close(tfidf.features, expected)
        with FeatureCache.open(out["random-base"][0]) as noise:
            assert noise.provenance["base"]["weights"] == "none"
            assert_features_differ(noise.features, main.features)
    with pytest.raises(BaseModelError, match="raw-pixels baseline does not apply to a text base"):
        extract_baselines(train.path, None, ["raw-pixels"], base_path=presets["bert"])


def test_a_layer_cut_pools_that_layers_tokens(presets):
    base = load_base(presets["bert"], layer="transformer_layer_0", max_length=16)
    last = load_base(presets["bert"], pooling="cls", max_length=16)
    inputs, _, _ = base.encoder.encode(["a red owl", "the dog"])
    cut, full = base.model.predict_on_batch(inputs), last.model.predict_on_batch(inputs)
    assert (
        base.description["pooling"] == "cls" and base.description["layer"] == "transformer_layer_0"
    )
    assert cut.shape == full.shape == (2, 16)
    assert np.abs(cut - full).max() > 1e-3 * np.abs(full).max()
