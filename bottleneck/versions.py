"""Versions of the software that caches, heads and exported models depend on."""

from __future__ import annotations

import importlib.metadata
import platform


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    """bottleneck, Keras and its backend, h5py, NumPy, scikit-learn, skops and Python."""
    import keras
    from bottleneck_transfer import __version__

    backend = keras.backend.backend()
    versions = {
        "bottleneck": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "python": platform.python_version(),
    }
    packages = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    if backend in packages:
        versions[backend] = _version(packages[backend])
    for distribution in ("h5py", "numpy", "scikit-learn", "skops"):
        versions[distribution] = _version(distribution)
    return versions
