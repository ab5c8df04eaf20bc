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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_EXPORTS = {
    "Base": "bottleneck.bases",
    "load_base": "bottleneck.bases",
    "FeatureCache": "bottleneck.cache",
    "extract": "bottleneck.extract",
    "ExtractResult": "bottleneck.extract",
    "cache_info": "bottleneck.inspection",
    "verify_cache": "bottleneck.inspection",
    "Source": "bottleneck.sources",
    "open_source": "bottleneck.sources",
    "BottleneckError": "bottleneck.errors",
    "CacheError": "bottleneck.errors",
    "ImageError": "bottleneck.errors",
    "SourceError": "bottleneck.errors",
    "StaleCacheError": "bottleneck.errors",
    "BaseModelError": "bottleneck.errors",
    "HeadError": "bottleneck.errors",
    "ExportError": "bottleneck.errors",
    "compare_heads": "bottleneck.compare",
    "make_head": "bottleneck.heads",
    "train_head": "bottleneck.training",
    "evaluate_head": "bottleneck.training",
    "export": "bottleneck.export",
    "load_exported": "bottleneck.export",
    "predict": "bottleneck.predict",
    "finetune": "bottleneck.finetune",
    "run_pipeline": "bottleneck.pipeline",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bottleneck' has no attribute {name!r}")
