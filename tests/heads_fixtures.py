"""Helpers shared by the head, compare, report and train/evaluate tests: real small caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bottleneck_transfer.features.cache import CacheWriter, FeatureCache
from bottleneck_transfer.features.cache.partial import partial_path
from bottleneck_transfer.fingerprint import fingerprint
from sklearn.datasets import load_digits, make_blobs

BASE = {"name": "test-base", "weights_sha256": "sha256:aaaa", "layer": "avg_pool"}


def write_cache(
    path: Path,
    X: np.ndarray,
    y: np.ndarray,
    *,
    ids: list[str] | None = None,
    class_names: list[str] | None = None,
    base: dict | None = None,
    source: str = "test",
    source_info: dict | None = None,
) -> Path:
    """Write a complete cache with ``CacheWriter`` exactly as extraction does.

    ``source_info`` adds to the provenance's ``source`` entry (e.g. its ``root``).
    """
    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.int32)
    ids = ids if ids is not None else [f"{source}/{i:05d}.png" for i in range(len(y))]
    if class_names is None:
        class_names = [f"class{i}" for i in range(int(max(y.max(), 1)) + 1)]
    identity = {
        "base": base or BASE,
        "source": {"kind": "arrays", "name": source, **(source_info or {})},
    }
    writer = CacheWriter.create(
        partial_path(path),
        dim=X.shape[1],
        fingerprint=fingerprint(identity),
        identity=identity,
        provenance={"base": identity["base"], "source": identity["source"]},
        class_names=class_names,
    )
    for start in range(0, len(y), 500):
        stop = min(start + 500, len(y))
        writer.write_batch(X[start:stop], y[start:stop], ids[start:stop], [], items_done=stop)
        writer.commit()
    return writer.finalize(path, extraction={"seconds": 0.0})


def digits_caches(tmp: Path, base: dict | None = None) -> tuple[Path, Path]:
    """scikit-learn's digits (64 features, 10 classes) split into train/test caches."""
    X, y = load_digits(return_X_y=True)
    names = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.25
    train_path = write_cache(
        tmp / "digits-train.h5", X[~test], y[~test], class_names=names, base=base, source="train"
    )
    test_path = write_cache(
        tmp / "digits-test.h5", X[test], y[test], class_names=names, base=base, source="test"
    )
    return train_path, test_path


def blobs(n: int = 600, dim: int = 16, centers: int = 3, seed: int = 0, std: float = 2.0):
    """Gaussian blobs ``(X, y)``: separable but not trivially."""
    return make_blobs(
        n_samples=n, n_features=dim, centers=centers, cluster_std=std, random_state=seed
    )


def open_cache(path: Path) -> FeatureCache:
    """Open a cache for reading."""
    return FeatureCache.open(path)


def evil_pipeline(marker: Path):
    """A scikit-learn Pipeline that writes ``marker`` when it transforms (or predicts).

    No class in it is malicious: ``FunctionTransformer`` (trusted by skops' defaults) calls
    ``numpy.full_like`` (an array of the code string), ``numpy.take`` (the string) and
    NumPy's test helper ``runstring`` (``exec``). Allow-lists by module prefix let it load.
    """
    from numpy.testing._private.utils import runstring
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    code = f"open({str(marker)!r}, 'w').write('ran')"
    return Pipeline(
        [
            ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": "O"})),
            ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
            ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
        ]
    )


def evil_head_file(path: Path, marker: Path, kind: str = "logreg") -> Path:
    """``evil_pipeline`` saved as a ``bottleneck train`` head file of ``kind``."""
    import json

    import skops.io

    meta = {"format": "bottleneck-head", "format_version": 1, "head": kind}
    skops.io.dump({"head": evil_pipeline(marker), "meta": json.dumps(meta)}, path)
    return path
