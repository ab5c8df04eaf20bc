"""Versions of the software that caches, heads and exported models depend on."""

from __future__ import annotations

import importlib.metadata
import platform
import sys


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    """bottleneck, Keras, h5py, NumPy, scikit-learn, skops and Python, and the Keras backend
    with its version when this process started one (a scikit-learn head needs none)."""
    from bottleneck_transfer import __version__

    versions = {
        "bottleneck": __version__,
        "keras": _version("keras"),
        "python": platform.python_version(),
    }
    keras = sys.modules.get("keras")
    if keras is not None:  # never imported for it: that takes seconds
        backend = keras.backend.backend()
        versions["keras"] = keras.__version__
        versions["backend"] = backend
        packages = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
        if backend in packages:
            versions[backend] = _version(packages[backend])
    for distribution in ("h5py", "numpy", "scikit-learn", "skops"):
        versions[distribution] = _version(distribution)
    return versions
