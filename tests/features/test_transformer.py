"""BottleneckFeatures: image paths -> store-cached features, inside scikit-learn pipelines."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features import extract as extract_module
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.features.transformer import BottleneckFeatures
from feature_checks import assert_features_close, assert_features_differ
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

BASE = "data/bases/fashion_mnist_0-4.keras"
CLASSES = ("a", "b", "c")
PER_CLASS = 8


def _image(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (28, 28))
    pixels[6 + 7 * label : 10 + 7 * label, 4:24] = 230  # a bright bar whose row is the class
    return pixels.astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A class-folder tree of 24 28x28 PNGs; returns (root, paths, labels)."""
    root = tmp_path_factory.mktemp("images")
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for k in range(PER_CLASS):
            path = root / name / f"{k}.png"
            Image.fromarray(_image(label, 100 * label + k)).save(path)
            paths.append(str(path))
            labels.append(label)
    return root, paths, np.asarray(labels)


@pytest.fixture
def runs(monkeypatch):
    """Every extraction that ran the base: the number of images it gave the base."""
    calls: list[int] = []

    def counting(source, base, out, **kwargs):
        result = extract(source, base, out, **kwargs)
        if not result.up_to_date:
            calls.append(len(source))
        return result

    monkeypatch.setattr(extract_module, "extract", counting)
    return calls


def _reference(root, tmp_path):
    """Features of the tree from a plain extraction, by absolute path."""
    out = tmp_path / "reference.h5"
    extract(str(root), BASE, out, progress=False)
    with FeatureCache.open(out) as cache:
        return {str(root / i): row for i, row in zip(cache.ids, cache.features, strict=True)}


def test_grid_search_runs_the_base_once_per_image(images, runs, tmp_path):
    root, paths, labels = images
    pipe = Pipeline(
        [
            ("features", BottleneckFeatures(base=BASE, cache_dir=tmp_path / "store")),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    search = GridSearchCV(pipe, {"clf__C": [0.1, 1.0, 10.0]}, cv=3).fit(paths, labels)
    assert sum(runs) == len(paths), "each image went through the base exactly once"
    assert search.best_score_ > 0.9
    assert (search.predict(paths[::5]) == labels[::5]).mean() > 0.9

    runs.clear()
    GridSearchCV(pipe, {"clf__C": [0.5, 2.0]}, cv=4).fit(paths, labels)
    assert runs == [], "a second search extracts nothing"

    reference = _reference(root, tmp_path)
    features = BottleneckFeatures(base=BASE, cache_dir=tmp_path / "store").fit_transform(paths)
    assert_features_close(features, [reference[p] for p in paths])


def test_images_of_an_extracted_cache_are_reused_and_order_is_kept(images, runs, tmp_path):
    root, paths, _ = images
    store = tmp_path / "store"
    extract(str(root), BASE, store / "tree.h5", progress=False)  # `bottleneck extract` output
    wanted = [paths[5], paths[0], paths[17], paths[5]]  # any order, duplicates allowed
    features = BottleneckFeatures(base=BASE, cache_dir=store).fit_transform(wanted)
    assert runs == []
    with FeatureCache.open(store / "tree.h5") as cache:
        rows = [cache.ids.index(os.path.relpath(p, root)) for p in wanted]
        np.testing.assert_array_equal(features, cache.features[rows])


def test_a_changed_image_is_extracted_again(images, runs, tmp_path):
    _, paths, _ = images
    copy = tmp_path / "copy"
    copy.mkdir()
    mine = []
    for k, path in enumerate(paths[:4]):
        mine.append(str(copy / f"{k}.png"))
        Image.open(path).save(mine[-1])
    features = BottleneckFeatures(base=BASE, cache_dir=tmp_path / "store")
    first = features.fit_transform(mine)
    Image.fromarray(_image(2, 999)).save(mine[1])  # new content: new size and mtime
    second = features.transform(mine)
    assert runs == [4, 1]
    np.testing.assert_array_equal(second[[0, 2, 3]], first[[0, 2, 3]])
    assert_features_differ(second[1], first[1])


def test_a_source_is_accepted_whole(images, runs, tmp_path):
    root, paths, _ = images
    features = BottleneckFeatures(base=BASE, cache_dir=tmp_path / "store").fit(None)
    by_source = features.transform(open_source(str(root)))
    np.testing.assert_array_equal(by_source, features.transform(str(root)))
    np.testing.assert_array_equal(by_source, features.transform(paths))
    assert runs == [len(paths)]

    arrays = np.stack([_image(k % 3, k) for k in range(6)])
    npz = tmp_path / "images.npz"
    np.savez(npz, images=arrays, labels=np.arange(6) % 3)
    out = features.transform(str(npz))  # an array source: extracted whole, by fingerprint
    assert out.shape == (6, features.n_features_out_) and runs == [len(paths), 6]
    np.testing.assert_array_equal(features.transform(str(npz)), out)
    assert runs == [len(paths), 6]


def test_clone_params_and_feature_names(tmp_path):
    features = BottleneckFeatures(base=BASE, layer="conv2", cache_dir=tmp_path)
    cloned = clone(features)
    assert cloned.get_params() == features.get_params()
    fitted = cloned.fit([])
    assert fitted.n_features_out_ == 64
    names = fitted.get_feature_names_out()
    assert len(names) == 64 and names[0] == "bottleneckfeatures0"
    assert fitted.transform([]).shape == (0, 64)


def test_bad_inputs_say_what_to_give(images, tmp_path):
    features = BottleneckFeatures(base=BASE, cache_dir=tmp_path / "store").fit([])
    with pytest.raises(SourceError, match="sequence of image paths"):
        features.transform(np.zeros((3, 4)))
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(ImageError, match=r"broken\.png"):
        features.transform([images[1][0], str(broken)])


def test_import_holds_no_scikit_learn_backend_or_hdf5():
    code = (
        "import sys; from bottleneck_transfer import BottleneckFeatures; "
        "print(sorted({'sklearn', 'keras', 'tensorflow', 'h5py', 'pandas'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_params_repr_and_output_containers(images, tmp_path):
    features = BottleneckFeatures(base=BASE, pooling="max", cache_dir=tmp_path)
    assert (
        repr(features)
        == f"BottleneckFeatures(base={BASE!r}, cache_dir={tmp_path!r}, pooling='max')"
    )
    assert features.set_params(batch_size=4) is features and features.batch_size == 4
    with pytest.raises(ValueError, match=r"Invalid parameter 'size'.*'batch_size'"):
        features.set_params(size=3)
    with pytest.raises(ValueError, match="Received: transform='arrow'"):
        features.set_output(transform="arrow")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        features.transform(images[1][:2])
    paths = images[1][:3]
    plain = features.fit(paths).transform(paths)
    frame = features.set_output(transform="pandas").transform(paths)
    assert list(frame.columns) == list(features.get_feature_names_out())
    np.testing.assert_array_equal(frame.to_numpy(), plain)
