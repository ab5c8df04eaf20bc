"""Saved heads load only the exact classes their kind declares: crafted files never run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.heads.registry import head_kind, head_names, trusted_type_names
from bottleneck_transfer.heads.training import (
    LabeledData,
    evaluate_head,
    load_head,
    save_head,
    train_head,
)
from bottleneck_transfer.heads.trust import file_types, load_trusted
from heads_fixtures import blobs, digits_caches, evil_head_file, evil_pipeline, write_cache
from sklearn.svm import SVC

PAYLOAD_TYPES = ("numpy.full_like", "numpy.take", "numpy.testing._private.utils.runstring")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return digits_caches(tmp_path_factory.mktemp("digits"))


def test_the_crafted_file_is_a_real_payload(tmp_path):
    """Loaded as a prefix allow-list did (everything skops names trusted), it runs code."""
    import skops.io

    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.skops"
    skops.io.dump(evil_pipeline(marker), path)
    untrusted = skops.io.get_untrusted_types(file=path)
    # skops' default-trusted list is empty once the library imported skops (trust.skops_io):
    # then the pipeline's own scikit-learn types are listed too
    assert set(PAYLOAD_TYPES) <= set(untrusted)
    assert all(name.startswith(("sklearn", "numpy", "scipy")) for name in untrusted)
    skops.io.load(path, trusted=untrusted).transform(np.zeros((1, 2)))
    assert marker.read_text() == "ran"


def test_evaluate_refuses_a_crafted_head_file_naming_its_types(caches, tmp_path):
    marker = tmp_path / "ran.txt"
    path = evil_head_file(tmp_path / "evil.skops", marker)
    with pytest.raises(HeadError) as info:
        evaluate_head(path, caches[1])
    message = str(info.value)
    assert "outside the allow-list" in message and "head kind 'logreg'" in message
    for name in (*PAYLOAD_TYPES, "sklearn.preprocessing._function_transformer.FunctionTransformer"):
        assert name in message
    assert "\n" not in message
    with pytest.raises(HeadError, match=r"numpy\.full_like"):
        load_head(path)
    assert not marker.exists()


def test_a_file_claiming_another_kind_is_refused(caches, tmp_path):
    """Exact per kind: an SVC is an rbf-svm class, not a knn one."""
    import skops.io

    data = LabeledData.from_cache(caches[0])
    trained = train_head(data, "rbf-svm")
    path = save_head(trained, tmp_path / "rbf.skops")
    assert load_head(path).metadata["head"] == "rbf-svm"
    content = skops.io.load(path, trusted=sorted(file_types(path)[0]))
    meta = json.loads(content["meta"])
    skops.io.dump({"head": content["head"], "meta": json.dumps({**meta, "head": "knn"})}, path)
    with pytest.raises(HeadError, match=r"sklearn\.svm\._classes\.SVC.*head kind 'knn'"):
        load_head(path)
    skops.io.dump({"head": SVC(), "meta": json.dumps({**meta, "head": "forest"})}, path)
    with pytest.raises(HeadError, match="no registered kind"):
        load_head(path)


@pytest.mark.parametrize(
    "spec",
    [
        "logreg",
        "linear-svm",
        "rbf-svm",
        "rbf-svm:max_exact_samples=10,n_components=20",
        "dense:hidden=8,dropout=0.1,epochs=2",
        "knn",
    ],
)
def test_every_kind_loads_back_with_its_exact_list(spec, tmp_path):
    X, y = blobs(n=120, dim=5, centers=3)  # 5 features: knn keeps a KD-tree
    trained = train_head(LabeledData.from_arrays(X, y), spec)
    path = save_head(trained, tmp_path / "head.skops")
    types, functions = file_types(path)
    assert not functions and types <= trusted_type_names(head_kind(spec))
    restored = load_head(path).estimator
    np.testing.assert_array_equal(restored.predict(X), trained.estimator.predict(X))


@pytest.mark.parametrize(
    ("spec", "estimator"),
    [
        ("logreg", "SGDClassifier"),
        ("linear-svm", "SGDClassifier"),
        ("nystroem:n_components=50", "NystroemHead"),
        ("dense:epochs=3", "DenseHead"),
    ],
)
def test_out_of_core_heads_load_back(spec, estimator, tmp_path):
    X, y = blobs(n=300, dim=6, centers=3)
    path = write_cache(tmp_path / "c.h5", X, y)
    with FeatureCache.open(path) as cache:
        trained = train_head(cache, spec, out_of_core=True)
    restored = load_head(save_head(trained, tmp_path / "h.skops")).estimator
    assert type(restored[-1]).__name__ == estimator
    X32 = np.asarray(X, np.float32)
    np.testing.assert_array_equal(restored.predict(X32), trained.estimator.predict(X32))


def test_no_kind_is_trusted_by_prefix_or_with_a_function():
    for name in head_names():
        allowed = trusted_type_names(head_kind(name))
        assert not [t for t in allowed if t.endswith(".")]
        assert not {*PAYLOAD_TYPES, "builtins.eval", "builtins.exec"} & allowed
        assert "sklearn.preprocessing._function_transformer.FunctionTransformer" not in allowed


def test_an_explicit_kind_overrides_nothing_it_does_not_declare(tmp_path):
    import skops.io

    marker = tmp_path / "ran.txt"
    path = tmp_path / "bare.skops"
    skops.io.dump(evil_pipeline(marker), path)
    for kind in head_names():
        with pytest.raises(HeadError, match="runstring"):
            load_trusted(path, kind)
    with pytest.raises(HeadError, match="names no head kind"):
        load_trusted(path)
    assert not marker.exists()
