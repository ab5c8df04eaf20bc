"""Export: exact head conversion, parity on real files, loading without bottleneck, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.exported import METADATA_LAYER, load_exported, read_metadata
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.errors import BaseModelError, BottleneckError, ExportError, HeadError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.registry import make_head
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import SVC, LinearSVC

REPO = Path(__file__).resolve().parents[2]
FM_BASE = REPO / "data" / "bases" / "fashion_mnist_0-4.keras"
FM_CLASSES = "0,5,7,9"  # T-shirt/top, Sandal, Sneaker, Ankle boot: a "/" and a space


def make_photos(root: Path, per_class: int = 5) -> Path:
    """Three classes of real photo crops of varied sizes, JPEG and PNG."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for c, name in enumerate(["cat", "dog", "eel"]):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            photo = photos[(c + k) % len(photos)]
            h, w = 40 + 17 * k, 50 + 9 * c
            crop = photo[k * 9 : k * 9 + h, c * 11 : c * 11 + w]
            ext = "jpg" if k % 2 else "png"
            Image.fromarray(crop).save(root / name / f"{k:02d}.{ext}")
    return root


@pytest.fixture(scope="module")
def fm_cache(tmp_path_factory, fashion_mnist_available):
    out = tmp_path_factory.mktemp("fm") / "fm.h5"
    extract("fashion-mnist:test", FM_BASE, out, classes=FM_CLASSES, limit=240, progress=False)
    return out


@pytest.fixture(scope="module")
def fm_features(fm_cache):
    with FeatureCache.open(fm_cache) as cache:
        return cache.features.copy(), cache.labels.copy(), cache.class_names


@pytest.fixture(scope="module")
def fm_pixels(fm_cache):
    """The cache's source images decoded by the extraction path, in cache row order."""
    with FeatureCache.open(fm_cache) as cache:
        ids = cache.ids
    source = open_source("fashion-mnist:test", classes=FM_CLASSES, limit=240)
    by_id = {item.id: item for item in source.items}
    return np.stack([source.load(by_id[i], (28, 28), 1) for i in ids])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos") / "imgs")


@pytest.fixture(scope="module")
def photo_cache(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("pc") / "photos.h5"
    base = load_base("mobilenet_v2", weights="none", image_size=32)
    extract(photos, base, out, batch_size=8, progress=False)
    return out


@pytest.fixture(scope="module")
def photo_export(photo_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("pe") / "model.keras"
    result = export(photo_cache, out, head="logreg", sample=64)
    return out, result


def _assert_same(got: np.ndarray, expected: np.ndarray, atol: float = 1e-4) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol)
    assert (got.argmax(1) == expected.argmax(1)).all()


HEADS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    "linear-svm": lambda: make_pipeline(StandardScaler(), LinearSVC(max_iter=5000)),
    "logreg-no-scaler": lambda: LogisticRegression(max_iter=3000),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_linear_heads_round_trip_exactly(name, fm_cache, fm_features, fm_pixels, tmp_path):
    import keras

    X, y, names = fm_features
    head = HEADS[name]().fit(X, y)
    result = export(fm_cache, tmp_path / "m.keras", head=head)
    assert result.kind == "keras"
    assert result.classes == names
    assert result.parity.n == 64 and result.parity.argmax_agreement == 1.0
    assert result.outputs == ("decision-softmax" if "svm" in name else "probabilities")
    model = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    got = model.predict(fm_pixels, verbose=0)
    _assert_same(got, head_scores(head, X))
    assert (got.argmax(1) == head.predict(X)).all()
    if name == "logreg":
        np.testing.assert_allclose(got, head.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("spec", ["dense:epochs=3,random_state=0", "dense:hidden=16,epochs=3"])
def test_dense_head_round_trip(spec, fm_cache, fm_features, fm_pixels, tmp_path):
    import keras

    X, y, _ = fm_features
    head = make_head(spec).fit(X, y)
    result = export(fm_cache, tmp_path / "d.keras", head=head)
    model = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    layers = [layer.name for layer in model.layers]
    assert ("head_hidden" in layers) == ("hidden" in spec)
    _assert_same(model.predict(fm_pixels, verbose=0), head.predict_proba(X))
    assert result.outputs == "probabilities"


def test_gram_solved_linear_svm_exports_exactly(fm_cache, fm_features, fm_pixels, tmp_path):
    import keras

    X, y, _ = fm_features
    head = make_head("linear-svm", calibrate=False).fit(X[:100], y[:100])  # 100 < 128 features
    assert head[-1].solver_.startswith("gram")  # "gram+newton" when Newton steps finish it
    result = export(fm_cache, tmp_path / "svm.keras", head=head)
    assert result.kind == "keras" and result.outputs == "decision-softmax"
    model = keras.saving.load_model(tmp_path / "svm.keras", safe_mode=True)
    got = model.predict(fm_pixels, verbose=0)
    _assert_same(got, head_scores(head, X))
    assert (got.argmax(1) == head.predict(X)).all()


def test_binary_heads_round_trip(tmp_path, fashion_mnist_available):
    import keras

    cache = tmp_path / "bin.h5"
    extract("fashion-mnist:test", FM_BASE, cache, classes="5,7", limit=120, progress=False)
    with FeatureCache.open(cache) as opened:
        X, y, ids = opened.features.copy(), opened.labels.copy(), opened.ids
    source = open_source("fashion-mnist:test", classes="5,7", limit=120)
    by_id = {item.id: item for item in source.items}
    pixels = np.stack([source.load(by_id[i], (28, 28), 1) for i in ids])
    for make in (HEADS["logreg"], HEADS["linear-svm"]):
        head = make().fit(X, y)
        export(cache, tmp_path / "b.keras", head=head)
        got = keras.saving.load_model(tmp_path / "b.keras").predict(pixels, verbose=0)
        assert got.shape == (len(ids), 2)
        _assert_same(got, head_scores(head, X))


def test_head_spec_is_fitted_on_the_whole_cache(fm_cache, fm_features, fm_pixels, tmp_path):
    import keras

    X, y, names = fm_features
    result = export(fm_cache, tmp_path / "s.keras", head="logreg:C=0.5", sample=16)
    assert result.head == "logreg" and result.parity.n == 16
    model = keras.saving.load_model(tmp_path / "s.keras")
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(X, y)
    _assert_same(model.predict(fm_pixels, verbose=0), reference.predict_proba(X), atol=1e-3)
    meta = read_metadata(model, "s.keras")
    assert meta["classes"] == names == ["T-shirt/top", "Sandal", "Sneaker", "Ankle boot"]
    assert meta["head_spec"] == "logreg:C=0.5"
    with FeatureCache.open(fm_cache) as cache:
        assert meta["fingerprint"] == cache.fingerprint
        assert meta["base"]["weights_sha256"] == cache.provenance["base"]["weights_sha256"]


def test_model_structure_and_any_image_size(photo_export):
    import keras

    path, result = photo_export
    model = keras.saving.load_model(path, safe_mode=True)
    assert model.input.dtype == "uint8"
    assert tuple(model.input.shape) == (None, None, None, 3)
    assert model.layers[1].name == "resize" and isinstance(model.layers[1], keras.layers.Resizing)
    assert model.output_names == ["probabilities"]
    assert not model.get_layer(result.metadata["base_layer"]).trainable
    for height, width in [(32, 32), (17, 90), (300, 451)]:
        images = np.random.default_rng(0).integers(0, 255, (2, height, width, 3), dtype=np.uint8)
        probs = model.predict(images, verbose=0)
        assert probs.shape == (2, 3)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    types = {type(layer).__name__ for layer in model.layers}
    assert "Lambda" not in types


def test_resize_layer_is_close_to_pillow(photo_export):
    import keras
    from skimage import data

    model = keras.saving.load_model(photo_export[0])
    resize = model.get_layer("resize")
    for photo in (data.astronaut(), data.chelsea()):
        ours = keras.ops.convert_to_numpy(resize(photo[None]))[0].astype(int)
        pillow = np.asarray(Image.fromarray(photo).resize((32, 32), Image.Resampling.BILINEAR))
        assert np.abs(ours - pillow).max() <= 1
        same = photo[:32, :32][None]
        assert (keras.ops.convert_to_numpy(resize(same)) == same).all()


def test_parity_on_real_image_files(photos, photo_cache, photo_export):
    _, result = photo_export
    with FeatureCache.open(photo_cache) as cache:
        ids = cache.ids
        X, y = cache.features.copy(), cache.labels.copy()
    assert result.parity.n == len(ids) == 15
    assert result.parity.ids == ids
    assert result.parity.max_abs_diff < 1e-4
    assert any(i.endswith(".jpg") for i in ids) and any(i.endswith(".png") for i in ids)
    exported = load_exported(result.path)
    source = open_source(photos)
    pixels = np.stack([source.load(item, (32, 32), 3) for item in source.items])
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    _assert_same(exported.predict(pixels).astype(np.float64), head.predict_proba(X), atol=1e-3)


CHILD = """
import json, sys
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
meta = json.loads(model.get_layer("bottleneck_metadata").bias_initializer.value)
probs = model.predict(np.load(sys.argv[2]), verbose=0)
odd = model.predict(np.zeros((1, 45, 61, 3), np.uint8), verbose=0)
assert "bottleneck_transfer" not in sys.modules, "bottleneck_transfer was imported"
print(json.dumps({"classes": meta["classes"], "probs": probs.tolist(), "odd": odd.shape}))
"""


def test_loads_and_predicts_in_a_process_without_bottleneck(photo_export, photos, tmp_path):
    path, result = photo_export
    source = open_source(photos)
    pixels = np.stack([source.load(item, (32, 32), 3) for item in source.items])
    np.save(tmp_path / "pixels.npy", pixels)
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "pixels.npy")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["classes"] == ["cat", "dog", "eel"] == result.classes
    assert answer["odd"] == [1, 3]
    expected = load_exported(path).predict(pixels)
    np.testing.assert_allclose(np.asarray(answer["probs"]), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["rbf-svm", "knn"])
def test_folder_export_for_heads_keras_cannot_express(name, photo_cache, tmp_path):
    import keras
    import skops.io as sio

    out = tmp_path / name
    result = export(photo_cache, out, head=name)
    assert result.kind == "folder"
    assert sorted(p.name for p in out.iterdir()) == [
        "base.keras",
        "bottleneck-manifest.json",
        "head.skops",
        "labels.txt",
        "model.json",
    ]
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert meta["classes"] == ["cat", "dog", "eel"]
    assert meta["head"] == name
    assert meta["versions"]["keras"] == keras.__version__ and "scikit-learn" in meta["versions"]
    with FeatureCache.open(photo_cache) as cache:
        assert meta["fingerprint"] == cache.fingerprint
        X = cache.features.copy()
    assert meta["parity"]["n"] == 15 and meta["parity"]["argmax_agreement"] == 1.0
    assert zipfile.is_zipfile(out / "head.skops")
    untrusted = sio.get_untrusted_types(file=out / "head.skops")
    assert meta["skops_trusted_types"] == sorted(untrusted)
    if untrusted:
        with pytest.raises(Exception, match=r"[Uu]ntrusted"):
            sio.load(out / "head.skops")  # not loadable without the explicit allow-list
    exported = load_exported(out)
    assert exported.kind == "folder"  # its model: base.keras, loaded (once: MobileNetV2 is slow)
    features = exported.model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0)
    assert features.shape == (1, X.shape[1])
    np.testing.assert_allclose(
        exported.scores_from_features(X), head_scores(exported.head, X), atol=0
    )


def test_plain_sklearn_rbf_svc_and_knn_export_as_folders(photo_cache, tmp_path):
    with FeatureCache.open(photo_cache) as cache:
        X, y = cache.features.copy(), cache.labels.copy()
    for i, (head, outputs) in enumerate(
        [
            (make_pipeline(StandardScaler(), SVC(kernel="rbf")), "decision-softmax"),
            (make_pipeline(Normalizer(), KNeighborsClassifier(3)), "probabilities"),
        ]
    ):
        head.fit(X, y)
        with pytest.raises(HeadError, match="no exact Keras form"):
            export(photo_cache, tmp_path / f"h{i}.keras", head=head)
        result = export(photo_cache, tmp_path / f"h{i}", head=head, sample=8)
        assert result.outputs == outputs and result.parity.argmax_agreement == 1.0


def test_keras_file_refused_for_rbf_svm_spec(photo_cache, tmp_path):
    with pytest.raises(HeadError, match=r"exports as a folder.*-o .*model"):
        export(photo_cache, tmp_path / "model.keras", head="rbf-svm")
    assert not (tmp_path / "model.keras").exists()


def _tampered(cache: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "tampered.h5"
    copy.write_bytes(cache.read_bytes())
    with h5py.File(copy, "r+") as h5:
        edit(h5)
    return copy


def test_parity_mismatch_names_the_sample(fm_cache, tmp_path):
    with FeatureCache.open(fm_cache) as cache:
        target_id = cache.ids[7]

    def edit(h5):
        h5["features"][7] = h5["features"][7] + 50.0

    copy = _tampered(fm_cache, tmp_path, edit)
    with pytest.raises(ExportError, match=rf"parity check failed on sample {target_id} "):
        export(copy, tmp_path / "m.keras", head="logreg", sample=1000)
    assert not (tmp_path / "m.keras").exists()
    assert not list(tmp_path.glob(".m.keras*"))


def _edit_provenance(change):
    def edit(h5):
        provenance = json.loads(h5.attrs["provenance"])
        change(provenance["base"])
        h5.attrs["provenance"] = json.dumps(provenance)

    return edit


def test_base_with_other_weights_is_refused(fm_cache, tmp_path):
    def change(base):
        base["weights_sha256"] = "sha256:" + "0" * 64

    copy = _tampered(fm_cache, tmp_path, _edit_provenance(change))
    with pytest.raises(BaseModelError, match="other weights than the ones the cache"):
        export(copy, tmp_path / "m.keras", head="logreg")


def test_base_file_is_found_by_path_and_verified(fm_cache, photo_cache, tmp_path):
    import keras

    def rename(base):
        base["file"] = "renamed_base.keras"

    copy = _tampered(fm_cache, tmp_path, _edit_provenance(rename))
    with pytest.raises(BaseModelError, match=r"renamed_base\.keras.*--base PATH"):
        export(copy, tmp_path / "m.keras", head="logreg", sample=0)
    result = export(copy, tmp_path / "m.keras", head="logreg", base=FM_BASE, sample=8)
    assert result.parity.n == 8
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]).save(other)
    with pytest.raises(BaseModelError, match=r"other\.keras is not the base .* sha256"):
        export(copy, tmp_path / "m.keras", head="logreg", base=other)
    with pytest.raises(BaseModelError, match="not found"):
        export(copy, tmp_path / "m.keras", head="logreg", base=tmp_path / "nope.keras")


def test_missing_source_gives_a_clear_error(photos, tmp_path):
    import shutil

    images = tmp_path / "imgs"
    shutil.copytree(photos, images)
    cache = tmp_path / "c.h5"
    extract(images, load_base("pixels", image_size=8), cache, progress=False)
    shutil.rmtree(images)
    with pytest.raises(ExportError, match=r"cannot reopen the source.*--sample 0"):
        export(cache, tmp_path / "m.keras", head="logreg")
    result = export(cache, tmp_path / "m.keras", head="logreg", sample=0)
    assert result.parity is None and (tmp_path / "m.keras").is_file()


def test_load_exported_rejects_what_is_not_an_export(tmp_path):
    import keras

    with pytest.raises(ExportError, match=r"model not found: .*missing\.keras"):
        load_exported(tmp_path / "missing.keras")
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    with pytest.raises(ExportError, match=r"plain\.keras is a Keras model but not a bottleneck"):
        load_exported(plain)
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip", encoding="utf-8")
    with pytest.raises(ExportError, match=r"cannot load .*junk\.keras"):
        load_exported(junk)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ExportError, match=r"folder but not a bottleneck export \(missing"):
        load_exported(folder)
    other = tmp_path / "model.h5"
    other.write_bytes(b"")
    with pytest.raises(ExportError, match=r"model\.h5 is not a bottleneck export"):
        load_exported(other)
    assert issubclass(ExportError, BottleneckError)


def test_folder_head_with_untrusted_type_is_refused(photo_cache, tmp_path):
    import skops.io as sio

    out = tmp_path / "f"
    export(photo_cache, out, head="knn", sample=0)
    sio.dump({"evil": Path("/")}, out / "head.skops")  # a type outside the allow-list
    with pytest.raises(ExportError, match=r"outside the allow-list \(pathlib"):
        load_exported(out)


def test_metadata_survives_in_the_keras_config(photo_export):
    path, _ = photo_export
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    names = [layer["config"]["name"] for layer in config["config"]["layers"]]
    assert METADATA_LAYER in names and names[-1] == "probabilities"
    assert "Lambda" not in json.dumps(config)


def test_head_file_from_train_exports_exactly(fm_cache, fm_pixels, fm_features, tmp_path):
    import keras

    training = pytest.importorskip("bottleneck_transfer.heads.training")
    X, _, names = fm_features
    with FeatureCache.open(fm_cache) as cache:
        trained = training.train_head(cache, "linear-svm:C=0.5")
        streamed = training.train_head(cache, "logreg", out_of_core=True)
    for i, head in enumerate((trained, streamed)):
        path = training.save_head(head, tmp_path / f"head{i}.skops")
        result = export(fm_cache, tmp_path / f"m{i}.keras", head_file=path, sample=16)
        assert result.classes == names
        assert result.metadata["head_spec"] == head.metadata["head"]
        got = keras.saving.load_model(tmp_path / f"m{i}.keras").predict(fm_pixels, verbose=0)
        _assert_same(got, head_scores(head.estimator, X))
    assert result.outputs == "probabilities"  # SGD log-loss: one-vs-rest sigmoids, exactly


@pytest.mark.filterwarnings("ignore::bottleneck_transfer.errors.SmallDataWarning")
def test_head_file_from_other_data_is_refused(fm_cache, photo_cache, tmp_path):
    training = pytest.importorskip("bottleneck_transfer.heads.training")
    with FeatureCache.open(photo_cache) as cache:
        path = training.save_head(training.train_head(cache, "logreg"), tmp_path / "h.skops")
    with pytest.raises(HeadError, match="trained on features of another base"):
        export(fm_cache, tmp_path / "m.keras", head_file=path)
    with pytest.raises(HeadError, match="head file not found"):
        export(fm_cache, tmp_path / "m.keras", head_file=tmp_path / "missing.skops")


def test_output_paths_that_are_not_exports_are_refused(fm_cache, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="busy exists and is not an export folder"):
        export(fm_cache, busy, head="knn")
    assert (busy / "notes.txt").is_file()
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(ExportError, match=r"dir\.keras is a folder"):
        export(fm_cache, tmp_path / "dir.keras", head="logreg")
    first = export(fm_cache, tmp_path / "again", head="knn", sample=4)
    second = export(fm_cache, tmp_path / "again", head="logreg", sample=4)  # replaces an export
    assert first.head == "knn" and second.head == "logreg"
    assert json.loads((tmp_path / "again" / "model.json").read_text())["head"] == "logreg"
