"""The chain's seams: a new source, engine, runtime or export format is one module and one
registry entry, and runs through the public entry points unchanged.

Each test builds the module in memory (as a plug-in would ship it), adds the one entry to its
registry for the test, and checks the result against what the built-in kind gives. The other
two seams have their own: base kinds in ``tests/features/test_base_kinds.py``
(``test_a_new_kind_is_one_module_and_one_entry``), head kinds in
``tests/deploy/test_export_heads.py`` (``test_a_registered_kind_goes_through_every_stage``).
"""

from __future__ import annotations

import json
import shutil
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer import FeatureCache, extract
from bottleneck_transfer.features import choices
from bottleneck_transfer.features.sources import registry as sources
from bottleneck_transfer.features.sources.arrays import array_items
from bottleneck_transfer.features.sources.items import Listing

SIZE = 8
IMAGES = np.random.default_rng(3).integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
LABELS = np.arange(12) % 3


def _features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with FeatureCache.open(path) as cache:
        return np.asarray(cache.features, np.float32), np.asarray(cache.labels)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The images as an ``.npz`` source, extracted by the built-in kinds (pixels base)."""
    folder = tmp_path_factory.mktemp("seams")
    np.savez(folder / "images.npz", images=IMAGES, labels=LABELS)
    extract(str(folder / "images.npz"), "pixels", folder / "npz.h5", image_size=SIZE)
    return (folder / "images.npz", *_features(folder / "npz.h5"))


def _plug(monkeypatch, package: str, name: str, **members) -> types.ModuleType:
    """A module ``package.name`` holding ``members``, importable for this test."""
    module = types.ModuleType(f"{package}.{name}")
    for key, value in members.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_a_source_kind_is_one_module_and_one_entry(monkeypatch, reference, tmp_path):
    def open_listing(spec: str, columns) -> Listing:
        hashes = {"toy": spec}
        items, names, arrays = array_items("toy", spec, IMAGES, LABELS, ["a", "b", "c"], hashes)
        return Listing("toy", spec, spec, items, names, arrays, hashes)

    toy = _plug(
        monkeypatch,
        "toy_sources",
        "toy",
        detect=lambda spec: str(spec).startswith("toy:"),
        open_listing=open_listing,
    )
    monkeypatch.setitem(sources.SOURCE_KINDS, "toy", toy)
    extract("toy:images", "pixels", tmp_path / "toy.h5", image_size=SIZE)
    features, labels = _features(tmp_path / "toy.h5")
    _, expected, expected_labels = reference
    assert features.shape == expected.shape == (12, SIZE * SIZE * 3)
    assert _relative(features, expected) < 1e-6
    np.testing.assert_array_equal(labels, expected_labels)
    with FeatureCache.open(tmp_path / "toy.h5") as cache:
        assert cache.class_names == ["a", "b", "c"]
        assert cache.provenance["source"]["kind"] == "toy"


def test_an_engine_is_one_module_and_one_entry(monkeypatch, reference, tmp_path):
    from bottleneck_transfer.features.loop import run_local

    ran: list[list[Path]] = []

    def run(plan):
        ran.append(list(plan.paths))
        return run_local(plan)

    _plug(
        monkeypatch,
        "bottleneck_transfer.features.engines",
        "toy",
        run=run,
        joblib_backend=lambda *args, **kwargs: __import__("contextlib").nullcontext(),
    )
    monkeypatch.setitem(choices.ENGINES, "toy", "toy")
    path, expected, _ = reference
    extract(str(path), "pixels", tmp_path / "engine.h5", image_size=SIZE, engine="toy")
    assert ran == [[tmp_path / "engine.h5"]]
    assert _relative(_features(tmp_path / "engine.h5")[0], expected) < 1e-6
    with pytest.raises(ValueError, match=r"engine must be one of local, dask, ray, toy"):
        extract(str(path), "pixels", tmp_path / "x.h5", engine="toys")


class _EagerRunner:
    """A runtime's runner: the Keras model called eagerly on float32 pixels."""

    name = "eager"

    def __init__(self, model) -> None:
        self.model = model
        self.batches = 0

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import keras

        self.batches += 1
        out = self.model(pixels.astype(np.float32), training=False)
        return np.asarray(keras.ops.convert_to_numpy(out), np.float32)

    @property
    def provenance(self) -> dict:
        return {"name": self.name, "batches": self.batches}


def test_a_runtime_is_one_module_and_one_entry(monkeypatch, reference, tmp_path):
    opened: list[_EagerRunner] = []

    def open_runner(job, batch_size, context) -> _EagerRunner:
        opened.append(_EagerRunner(job.runner.model))
        return opened[-1]

    _plug(monkeypatch, "bottleneck_transfer.features.runners", "eager", open=open_runner)
    monkeypatch.setitem(choices.RUNTIMES, "eager", "eager")
    path, expected, _ = reference
    out = tmp_path / "eager.h5"
    extract(str(path), "pixels", out, image_size=SIZE, runtime="eager", batch_size=5)
    assert len(opened) == 1 and opened[0].batches == 3
    assert _relative(_features(out)[0], expected) < 1e-6
    with FeatureCache.open(out) as cache:
        assert cache.provenance["extraction"]["runtime"]["name"] == "eager"


def test_an_export_format_is_one_module_and_one_entry(monkeypatch, reference, tmp_path):
    import keras
    from bottleneck_transfer import export
    from bottleneck_transfer.deploy import formats
    from bottleneck_transfer.deploy.exported import load_exported

    def convert(model, target: Path, metadata: dict, settings) -> None:
        model.save(target.with_suffix(".keras"))
        target.with_suffix(".keras").rename(target)

    def finish(target: Path, metadata: str) -> None:  # the metadata inside the zip
        with zipfile.ZipFile(target, "a") as archive:
            archive.writestr("bottleneck.json", metadata)

    def read_metadata(target: Path) -> str | None:
        with zipfile.ZipFile(target) as archive:
            names = archive.namelist()
            return archive.read("bottleneck.json").decode() if "bottleneck.json" in names else None

    class Runner:
        def __init__(self, path: Path) -> None:
            copy = path.with_name(path.stem + "_loaded.keras")
            shutil.copyfile(path, copy)
            self.model = keras.saving.load_model(copy, safe_mode=True)

        def predict(self, pixels: np.ndarray) -> np.ndarray:
            return np.asarray(self.model.predict_on_batch(pixels), np.float32)

    converter = formats.Converter(
        "zipped-keras",
        suffix=".zk",
        keras_format="keras",
        resizing="keras",
        finish=finish,
        read_metadata=read_metadata,
        runner=Runner,
        check_graph=lambda path, trusted=False: None,
        runtime=(),
        convert=convert,
    )
    _plug(monkeypatch, "toy_forms", "zipped_keras", CONVERTER=converter)
    monkeypatch.setitem(formats.CONVERTERS, converter.name, converter)
    path, _, _ = reference
    cache = tmp_path / "train.h5"
    extract(str(path), "pixels", cache, image_size=SIZE)
    result = export(cache, tmp_path / "model.zk", head="logreg", sample=6)
    assert result.parity.argmax_agreement == 1.0
    metadata = json.loads(read_metadata(tmp_path / "model.zk"))
    assert metadata["classes"] == ["0", "1", "2"]
    scores = load_exported(tmp_path / "model.zk").predict(IMAGES[:4])
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
