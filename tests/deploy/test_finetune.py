"""Fine-tuning: only the unfrozen layers change, BatchNorm stays frozen, loss never worsens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.cli.deploy_cmds import COMMANDS
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import METADATA_LAYER, read_metadata
from bottleneck_transfer.deploy.finetune import finetune, label_map
from bottleneck_transfer.errors import ExportError, SourceError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from click.testing import CliRunner
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
FM_CLASSES = "5-9"


@pytest.fixture(scope="module")
def fm_model(tmp_path_factory, fashion_mnist_available):
    folder = tmp_path_factory.mktemp("fm")
    extract(
        "fashion-mnist:train",
        FM_BASE,
        folder / "c.h5",
        classes=FM_CLASSES,
        limit=300,
        progress=False,
    )
    export(folder / "c.h5", folder / "model.keras", head="logreg", sample=8)
    return folder / "model.keras"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("photos") / "imgs"
    pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for c, name in enumerate(["cat", "dog", "eel"]):
        (root / name).mkdir(parents=True)
        for k in range(4):
            photo = pictures[(c + k) % len(pictures)]
            crop = photo[k * 9 : k * 9 + 40 + 17 * k, c * 11 : c * 11 + 50 + 9 * c]
            Image.fromarray(crop).save(root / name / f"{k:02d}.{'jpg' if k % 2 else 'png'}")
    return root


def _leaf_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Weights of every leaf layer of an export (base layers prefixed ``base/``)."""
    import keras

    model = keras.saving.load_model(path, safe_mode=True)
    meta = read_metadata(model, path)
    out: dict[str, list[np.ndarray]] = {}

    def walk(layer, prefix):
        if isinstance(layer, keras.Model):
            for child in layer.layers:
                walk(child, prefix)
        elif layer.weights:
            out[prefix + layer.name] = [np.asarray(w) for w in layer.get_weights()]

    walk(model.get_layer(meta["base_layer"]), "base/")
    for layer in model.layers:
        if layer.name != meta["base_layer"] and not isinstance(layer, keras.Model):
            walk(layer, "")
    return out


def _flat(layer) -> list:
    import keras

    if isinstance(layer, keras.Model):
        return [leaf for child in layer.layers for leaf in _flat(child)]
    return [layer]


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {
        name
        for name in before
        if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
    }


def test_only_unfrozen_layers_and_head_change(fm_model, tmp_path):
    import keras

    out = tmp_path / "tuned.keras"
    result = finetune(
        fm_model,
        "fashion-mnist:train",
        val="fashion-mnist:test",
        classes=FM_CLASSES,
        limit=600,
        val_limit=300,
        unfreeze=2,
        learning_rate=1e-4,
        epochs=2,
        batch_size=64,
        out=out,
        progress=False,
    )
    assert result.unfrozen == ["flatten", "bottleneck"]
    assert result.val_loss_after <= result.val_loss_before
    assert not result.kept_original
    changed = _changed(_leaf_weights(fm_model), _leaf_weights(out))
    assert changed == {"base/bottleneck", "head_logits"}
    tuned = keras.saving.load_model(out, safe_mode=True)
    meta = read_metadata(tuned, out)
    assert meta["finetuned"]["unfreeze"] == 2
    assert meta["finetuned"]["val_accuracy"] == [
        result.val_accuracy_before,
        result.val_accuracy_after,
    ]
    assert not tuned.get_layer(meta["base_layer"]).trainable
    assert not tuned.get_layer(METADATA_LAYER).trainable
    assert tuned.predict(np.zeros((1, 28, 28, 1), np.uint8), verbose=0).shape == (1, 5)


def test_worse_training_keeps_the_original_weights(fm_model, tmp_path):
    out = tmp_path / "tuned.keras"
    result = finetune(
        fm_model,
        "fashion-mnist:train",
        val="fashion-mnist:test",
        classes=FM_CLASSES,
        limit=200,
        val_limit=200,
        unfreeze=0,
        learning_rate=50.0,
        epochs=1,
        batch_size=100,
        out=out,
        progress=False,
    )
    assert result.unfrozen == []
    assert result.kept_original
    assert result.val_loss_after == result.val_loss_before
    assert _changed(_leaf_weights(fm_model), _leaf_weights(out)) == set()


def test_batchnorm_layers_stay_frozen(photos, tmp_path):
    import keras

    extract(
        photos,
        load_base("mobilenet_v2", weights="none", image_size=32),
        tmp_path / "c.h5",
        progress=False,
    )
    model = tmp_path / "model.keras"
    export(tmp_path / "c.h5", model, head="logreg:C=0.0001", sample=4)  # leaves loss to gain
    out = tmp_path / "tuned.keras"
    # Which layers train is the point here, so validate on the training pixels, saved as
    # other files (the byte hash that refuses a copied file does not see re-encodings).
    resaved = tmp_path / "resaved"
    for path in photos.rglob("*.*"):
        (resaved / path.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(path).save(resaved / path.relative_to(photos).with_suffix(".bmp"))
    result = finetune(
        model,
        photos,
        val=resaved,
        unfreeze=8,
        learning_rate=1e-4,
        epochs=2,
        out=out,
        progress=False,
    )
    assert not result.kept_original, result
    before, after = _leaf_weights(model), _leaf_weights(out)
    changed = _changed(before, after)
    loaded = keras.saving.load_model(model)
    base = loaded.get_layer(read_metadata(loaded, model)["base_layer"])
    leaves = [layer for layer in _flat(base) if not isinstance(layer, keras.layers.InputLayer)]
    bn = {f"base/{x.name}" for x in leaves if isinstance(x, keras.layers.BatchNormalization)}
    top_bn = {f"base/{x.name}" for x in leaves[-8:]} & bn
    assert {"base/block_16_project_BN", "base/Conv_1_bn"} <= top_bn  # in the top 8
    assert not (changed & bn)
    assert not any(f"base/{name}" in bn for name in result.unfrozen)
    unfrozen = {f"base/{name}" for name in result.unfrozen} & set(before)
    assert unfrozen and changed <= unfrozen | {"head_logits"}
    assert changed & unfrozen
    assert result.val_loss_after <= result.val_loss_before


def test_labels_are_matched_by_class_name(photos, tmp_path):
    from bottleneck_transfer.deploy.finetune import ImageBatches

    subset = tmp_path / "subset"
    for name in ("eel", "dog"):
        shutil.copytree(photos / name, subset / name)
    source = open_source(subset)
    assert source.class_names == ["dog", "eel"]
    mapping = label_map(["cat", "dog", "eel"], source, str(subset))
    assert mapping.tolist() == [1, 2]
    batches = ImageBatches(source, mapping, (16, 16), 3, batch_size=5)
    pixels, labels = batches[0]
    assert pixels.shape == (5, 16, 16, 3) and pixels.dtype == np.uint8
    assert labels.tolist() == [1, 1, 1, 1, 2]
    shutil.copytree(photos / "cat", subset / "fox")
    with pytest.raises(SourceError, match=r"classes the model does not know: 'fox'"):
        label_map(["cat", "dog", "eel"], open_source(subset), str(subset))
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next(photos.glob("cat/*.png")), flat / "a.png")
    with pytest.raises(SourceError, match="unlabelled images"):
        label_map(["cat"], open_source(flat), str(flat))


def test_bad_images_are_skipped_in_batches(photos, tmp_path):
    from bottleneck_transfer.deploy.finetune import ImageBatches

    root = tmp_path / "imgs"
    shutil.copytree(photos, root)
    (root / "cat" / "00.png").write_bytes(b"broken")
    source = open_source(root)
    batches = ImageBatches(source, np.arange(3), (16, 16), 3, batch_size=4)
    pixels, labels = batches[0]
    assert len(pixels) == len(labels) == 3
    assert list(batches.failed) == ["cat/00.png"]


def test_folder_exports_and_bad_models_are_refused(photos, tmp_path):
    import keras

    extract(photos, load_base("pixels", image_size=8), tmp_path / "c.h5", progress=False)
    export(tmp_path / "c.h5", tmp_path / "knn", head="knn:n_neighbors=3", sample=0)
    with pytest.raises(ExportError, match=r"knn is a folder export .*cannot be fine-tuned"):
        finetune(tmp_path / "knn", photos, val=photos, out=tmp_path / "t.keras")
    with pytest.raises(ExportError, match=r"model not found: .*missing\.keras"):
        finetune(tmp_path / "missing.keras", photos, val=photos, out=tmp_path / "t.keras")
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()]).save(plain)
    with pytest.raises(ExportError, match=r"plain\.keras is a Keras model but not a bottleneck"):
        finetune(plain, photos, val=photos, out=tmp_path / "t.keras")
    export(tmp_path / "c.h5", tmp_path / "m.keras", head="logreg", sample=0)
    with pytest.raises(ExportError, match=r"must be a \.keras file"):
        finetune(tmp_path / "m.keras", photos, val=photos, out=tmp_path / "tuned")


def test_cli_finetune_reports_accuracy_before_and_after(photos, tmp_path):
    extract(photos, load_base("pixels", image_size=8), tmp_path / "c.h5", progress=False)
    export(tmp_path / "c.h5", tmp_path / "m.keras", head="logreg", sample=0)
    group = click.Group()
    for command in COMMANDS:
        group.add_command(command)
    args = ["finetune", str(tmp_path / "m.keras"), str(photos), "--val-split", "0.5"]
    args += ["--unfreeze", "0", "--lr", "1e-3", "--epochs", "1", "-o", str(tmp_path / "t.keras")]
    refused = CliRunner().invoke(cli, [*args[:3], "--val", str(photos), *args[5:], "--quiet"])
    assert refused.exit_code == 1
    assert "shares 12 image(s) with the training images" in refused.output
    done = CliRunner().invoke(group, [*args, "--json", "--quiet"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert {"val_accuracy_before", "val_accuracy_after", "val_loss_before"} <= set(data)
    assert data["val_loss_after"] <= data["val_loss_before"]
    assert data["score_kind"].startswith("selection scores")  # issue 23.7
    assert (tmp_path / "t.keras").is_file()
    text = CliRunner().invoke(group, [*args, "--quiet", "--force"])
    assert text.exit_code == 0 and "selection scores: on the validation set" in text.output
