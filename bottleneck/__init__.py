"""bottleneck: transfer learning by cached bottleneck features.

Extract a frozen base's penultimate-layer features once into an HDF5 cache, then train,
compare and export lightweight heads on the cache in seconds.

The public names below are imported on first use, so ``import bottleneck`` (and the CLI's
``--help``) stays fast and does not start a Keras backend.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

if __name__ == "bottleneck":  # pragma: no cover - exercised in subprocesses by tests/test_name.py
    # This source folder is named `bottleneck/`, the import name of the NumPy accelerator that
    # pandas imports. Python finds the folder under that name only when the repository root is
    # on sys.path (Python started there). Hand the import to the real package, or fail as a
    # missing package does (pandas then treats it as absent), rather than shadow it.
    import importlib.machinery
    import importlib.util
    import sys

    _root = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _path = [p for p in sys.path if os.path.realpath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec("bottleneck", _path)
    if _spec is None or _spec.loader is None:
        raise ModuleNotFoundError("No module named 'bottleneck'", name="bottleneck")
    sys.modules["bottleneck"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["bottleneck"])

from bottleneck_transfer.quiet import hide_backend_logs

hide_backend_logs()

__version__ = "0.1.0"

_EXPORTS = {
    "Base": "bottleneck_transfer.features.bases",
    "load_base": "bottleneck_transfer.features.bases",
    "FeatureCache": "bottleneck_transfer.features.cache",
    "extract": "bottleneck_transfer.features.extract",
    "ExtractResult": "bottleneck_transfer.features.extract",
    "cache_info": "bottleneck_transfer.features.inspection",
    "verify_cache": "bottleneck_transfer.features.inspection",
    "Source": "bottleneck_transfer.features.sources",
    "open_source": "bottleneck_transfer.features.sources",
    "open_arrays": "bottleneck_transfer.features.sources",
    "open_texts": "bottleneck_transfer.features.sources",
    "BottleneckError": "bottleneck_transfer.errors",
    "CacheError": "bottleneck_transfer.errors",
    "ImageError": "bottleneck_transfer.errors",
    "SourceError": "bottleneck_transfer.errors",
    "StaleCacheError": "bottleneck_transfer.errors",
    "BaseModelError": "bottleneck_transfer.errors",
    "HeadError": "bottleneck_transfer.errors",
    "ExportError": "bottleneck_transfer.errors",
    "compare_heads": "bottleneck_transfer.heads.compare",
    "make_head": "bottleneck_transfer.heads.registry",
    "train_head": "bottleneck_transfer.heads.training",
    "evaluate_head": "bottleneck_transfer.heads.training",
    "export": "bottleneck_transfer.deploy.export",
    "load_exported": "bottleneck_transfer.deploy.exported",
    "predict": "bottleneck_transfer.deploy.predict",
    "finetune": "bottleneck_transfer.deploy.finetune",
    "run_pipeline": "bottleneck_transfer.pipeline.run",
    "BottleneckFeatures": "bottleneck_transfer.features.transformer",
    "HeadKind": "bottleneck_transfer.heads.registry",
    "register_head": "bottleneck_transfer.heads.registry",
    "learning_curve": "bottleneck_transfer.heads.learning_curve",
    "layer_sweep": "bottleneck_transfer.heads.layer_sweep",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bottleneck_transfer' has no attribute {name!r}")
