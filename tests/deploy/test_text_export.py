"""Text exports end to end on tiny random presets written with save_to_preset: extract ->
compare -> export (raw strings in) -> predict from strings; the predictions equal the head
on the cached features. Converted forms and finetune of a text export are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import load_exported
from bottleneck_transfer.deploy.finetune import finetune
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.deploy.predict import PredictResult, predict
from bottleneck_transfer.errors import ExportError, SourceError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import train_head
from click.testing import CliRunner
from feature_checks import assert_features_close
from hub_fixtures import needs_keras_hub
from text_fixtures import corpus, save_bert, save_gpt2, write_csv

pytestmark = needs_keras_hub

#: The two families: an encoder pooled by mean, a decoder-only model by its last token.
FAMILIES = {"bert": (save_bert, "mean"), "gpt2": (save_gpt2, "last-token")}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tmp_path_factory) -> dict:
    """A text CSV extracted through a tiny preset, heads compared, logreg exported."""
    root = tmp_path_factory.mktemp(f"text_export_{request.param}")
    save, pooling = FAMILIES[request.param]
    texts, labels = corpus(48, seed=7)
    table = write_csv(root / "texts.csv", texts, labels)
    cache = extract(table, save(root / "preset"), root / "c.h5", pooling=pooling, max_length=32)
    comparison = compare_heads(cache.path, heads=["logreg"], cv=3, n_bootstrap=20)
    trained = train_head(cache.path, "logreg")
    result = export(cache.path, root / "model.keras", head=trained)
    return {
        "root": root,
        "texts": texts,
        "labels": labels,
        "cache": cache.path,
        "trained": trained,
        "result": result,
        "comparison": comparison,
    }


def _scores(result: PredictResult) -> np.ndarray:
    """The full ``(N, K)`` scores of a prediction made with ``top_k`` = K."""
    scores = np.zeros(result.top_indices.shape)
    np.put_along_axis(scores, result.top_indices, result.top_probabilities, axis=1)
    return scores


def _head_on_cache(case: dict) -> tuple[list[str], np.ndarray]:
    with FeatureCache.open(case["cache"]) as cache:
        return list(cache.ids), head_scores(case["trained"].estimator, cache.features[:])


def test_the_export_takes_raw_strings_and_its_parity_is_checked_relatively(exported):
    result = exported["result"]
    assert exported["comparison"].rows[0].spec == "logreg"
    assert result.kind == "keras" and result.metadata["base"]["input"] == "text"
    assert result.parity.n == 48 and result.parity.relative
    assert result.parity.max_abs_diff < 1e-4 and result.parity.argmax_agreement == 1.0
    loaded = load_exported(result.path)
    assert loaded.modality == "text" and loaded.model.input.dtype == "string"
    _ids, expected = _head_on_cache(exported)
    assert_features_close(loaded.predict(exported["texts"][:10]), expected[:10], rtol=1e-4)


def test_predictions_from_a_text_file_a_table_and_a_folder_equal_the_head_on_the_cache(
    exported,
):
    root, texts, labels = exported["root"], exported["texts"], exported["labels"]
    _ids, expected = _head_on_cache(exported)
    model = exported["result"].path
    lines = root / "lines.txt"
    lines.write_text("\n\n".join(texts) + "\n", encoding="utf-8")  # blank lines are skipped
    from_lines = predict(model, lines, top_k=2, progress=False)
    assert from_lines.ids == [f"lines.txt:{2 * k + 1}" for k in range(len(texts))]
    assert from_lines.unit == "texts" and from_lines.labels == [None] * len(texts)
    assert_features_close(_scores(from_lines), expected, rtol=1e-4)

    renamed = write_csv(root / "body.csv", texts, labels, text="body")
    from_table = predict(model, renamed, top_k=2, text_column="body", progress=False)
    assert from_table.accuracy is not None
    assert_features_close(_scores(from_table), expected, rtol=1e-4)

    folder = root / "folder"
    for k, (text, label) in enumerate(zip(texts, labels, strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{k:03d}.txt").write_text(text, encoding="utf-8")
    from_folder = predict(model, folder, top_k=2, progress=False)
    order = [int(Path(i).stem) for i in from_folder.ids]
    assert sorted(order) == list(range(len(texts)))
    assert_features_close(_scores(from_folder), expected[order], rtol=1e-4)
    assert from_folder.predicted == [from_table.predicted[k] for k in order]


def test_the_reloaded_keras_file_runs_with_plain_keras(exported):
    import keras
    from bottleneck_transfer.features.bases.text_model import text_layers

    objects = text_layers()  # what a process that built no text base must register
    path = exported["result"].path
    model = keras.saving.load_model(path, safe_mode=True, compile=False, custom_objects=objects)
    got = model.predict(np.array(exported["texts"][:5], dtype=object), verbose=0)
    assert_features_close(got, _head_on_cache(exported)[1][:5], rtol=1e-4)


def test_cli_predict_reads_a_text_file_and_says_texts(exported, tmp_path):
    lines = tmp_path / "new.txt"
    lines.write_bytes(b"the cat and a dog\n\xff\xfe not utf-8\nred blue green\n")
    out = tmp_path / "p.csv"
    run = CliRunner().invoke(
        cli, ["predict", str(exported["result"].path), str(lines), "-o", str(out), "--quiet"]
    )
    assert run.exit_code == 0, run.output
    assert "2 texts, 1 skipped" in run.output and "texts/s" in run.output
    assert "skipped new.txt:2: not UTF-8 text" in run.output
    rows = out.read_text().splitlines()
    assert rows[0].startswith("id,label,class_1") and [r.split(",")[0] for r in rows[1:]] == [
        "new.txt:1",
        "new.txt:3",
    ]


@pytest.mark.parametrize("form", ["onnx", "tflite", "saved-model"])
def test_converted_forms_of_a_text_export_are_refused_in_one_line(exported, tmp_path, form):
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "saved-model": ""}[form]
    with pytest.raises(ExportError) as caught:
        export(exported["cache"], tmp_path / f"m{suffix}", format=form)
    message = str(caught.value)
    assert "\n" not in message and f"--format {form}" in message and "tokenizer" in message
    assert not list(tmp_path.iterdir())


def test_finetune_trains_the_top_of_a_text_backbone_on_texts(exported, tmp_path):
    model, table = exported["result"].path, exported["root"] / "texts.csv"
    with pytest.raises(ExportError) as caught:
        finetune(model, table, out=tmp_path / "a.keras", val_split=0.25, augment=True)
    assert "\n" not in str(caught.value) and "raw strings" in str(caught.value)
    out = tmp_path / "t.keras"
    result = finetune(
        model, table, out=out, val_split=0.25, unfreeze=3, learning_rate=1e-3, epochs=2,
        batch_size=8, progress=False,
    )  # fmt: skip
    assert len(result.unfrozen) == 3 and result.epochs_run >= 1
    assert result.val_loss_after <= result.val_loss_before
    tuned = load_exported(out)
    assert tuned.modality == "text" and tuned.metadata["finetuned"]["unfreeze"] == 3
    predicted = predict(out, table, top_k=2, progress=False)
    assert len(predicted) == len(exported["texts"]) and predicted.accuracy is not None


def test_images_given_to_a_text_export_are_one_line(exported, photo_folder):
    with pytest.raises(SourceError, match="takes raw strings") as caught:
        predict(exported["result"].path, photo_folder, progress=False)
    assert "\n" not in str(caught.value)


def test_a_folder_export_of_a_text_base_predicts_from_strings(exported, tmp_path):
    result = export(exported["cache"], tmp_path / "knn", head="knn")
    assert result.kind == "folder" and result.parity.argmax_agreement == 1.0
    lines = tmp_path / "l.txt"
    lines.write_text("\n".join(exported["texts"]) + "\n", encoding="utf-8")
    trained = train_head(exported["cache"], "knn")
    with FeatureCache.open(exported["cache"]) as cache:
        expected = head_scores(trained.estimator, cache.features[:])
    got = _scores(predict(result.path, lines, top_k=2, progress=False))
    assert_features_close(got, expected, rtol=1e-4)
    metadata = json.loads((result.path / "model.json").read_text())
    assert metadata["base"]["input"] == "text" and metadata["resize"] is None


def test_a_fresh_process_predicts_with_a_text_export(exported, tmp_path):
    """No text base is built there: loading must register the package's text layers itself."""
    import subprocess
    import sys

    lines = tmp_path / "l.txt"
    lines.write_text("the cat\nred and blue\n", encoding="utf-8")
    model = str(exported["result"].path)
    run = subprocess.run(
        [sys.executable, "-m", "bottleneck_transfer", "predict", model, str(lines), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    predictions = json.loads(run.stdout)["predictions"]
    assert [p["id"] for p in predictions] == ["l.txt:1", "l.txt:2"]


def test_cli_export_of_a_text_cache_says_texts(exported, tmp_path):
    cache, out = str(exported["cache"]), str(tmp_path / "m.keras")
    plan = CliRunner().invoke(cli, ["export", cache, "-o", out, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "input texts of up to 32 tokens" in plan.output and "images" not in plan.output
    run = CliRunner().invoke(cli, ["export", cache, "-o", out, "--sample", "8", "--json"])
    assert run.exit_code == 0, run.output
    parity = json.loads(run.output)["parity"]
    assert parity["n"] == 8 and parity["relative"] and parity["argmax_agreement"] == 1.0
    refused = CliRunner().invoke(cli, ["export", cache, "-o", str(tmp_path / "m.onnx")])
    assert refused.exit_code != 0 and "--format onnx cannot hold the text base" in refused.output


def test_several_text_files_are_one_line(tmp_path):
    from bottleneck_transfer.deploy.predict import open_images

    with pytest.raises(SourceError, match=r"give one \.txt file") as caught:
        open_images([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert "\n" not in str(caught.value)
