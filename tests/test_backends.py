"""The same code on every Keras backend: features agree, and an exported model moves between them.

Each backend runs in its own process (Keras picks its backend once per process). The GPU
machine has JAX and PyTorch but no TensorFlow, so this is what keeps the core honest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.features.cache import FeatureCache
from feature_checks import assert_features_close

BACKENDS = ["tensorflow", "jax", "torch"]
SCRIPT = """
import json, sys
import numpy as np
import keras
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.deploy.export import export

out, model_in = sys.argv[1], sys.argv[2]
extract("fashion-mnist:test", "data/bases/fashion_mnist_0-4.keras", out + "/fm.h5",
        classes="5-9", limit=96, progress=False)
extract(out + "/../photos.npz", "mobilenet_v2", out + "/mn.h5", weights="none",
        image_size=32, progress=False)
export(out + "/fm.h5", out + "/model.keras", head="logreg")
images = np.load(out + "/../probe.npy")
foreign = keras.saving.load_model(model_in) if model_in != "-" else None
print(json.dumps({
    "backend": keras.backend.backend(),
    "foreign": None if foreign is None else np.asarray(foreign.predict_on_batch(images)).tolist(),
}))
"""


def _available(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def _run(backend: str, folder: Path, model_in: str = "-") -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), model_in],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_features_and_exports_agree_across_backends(tmp_path, fashion_mnist_available):
    backends = [b for b in BACKENDS if _available(b)]
    if len(backends) < 2:
        pytest.skip(f"needs two Keras backends; installed: {backends}")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "photos.npz", images=rng.integers(0, 256, (20, 40, 48, 3), np.uint8))
    np.save(tmp_path / "probe.npy", rng.integers(0, 256, (6, 28, 28, 1), np.uint8))
    reference = _run(backends[0], tmp_path / backends[0])
    assert reference["backend"] == backends[0]
    model_in = str(tmp_path / backends[0] / "model.keras")
    for backend in backends[1:]:
        result = _run(backend, tmp_path / backend, model_in)
        assert result["backend"] == backend
        for name in ("fm.h5", "mn.h5"):
            with (
                FeatureCache.open(tmp_path / backends[0] / name) as ref,
                FeatureCache.open(tmp_path / backend / name) as got,
            ):
                assert got.ids == ref.ids and got.dim == ref.dim
                same_weights = (
                    got.provenance["base"]["weights_sha256"]
                    == (ref.provenance["base"]["weights_sha256"])
                )
                # Trained weights from a file are the same everywhere, so are the features.
                # Seeded random weights come from each backend's own RNG: other weights, so
                # another fingerprint (never mixed up with the first backend's cache).
                assert same_weights == (name == "fm.h5")
                assert (got.fingerprint == ref.fingerprint) == same_weights
                if same_weights:
                    assert_features_close(got.features, ref.features, rtol=1e-4)
        # The model exported on the first backend runs on this one, with its probabilities.
        probabilities = np.asarray(result["foreign"])
        assert probabilities.shape == (6, 5)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        own = _run(backends[0], tmp_path / f"{backends[0]}-again", model_in)["foreign"]
        np.testing.assert_allclose(probabilities, np.asarray(own), atol=1e-5)
