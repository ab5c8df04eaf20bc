"""Base kind ``saved_model``: a TensorFlow SavedModel folder (``model.export()``), run as it
is (a TFSMLayer) after its graph's ops are checked against the allow-list (``--trust-graph``
to run others); loading lives in :mod:`.hub`.
"""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.built import BaseRequest, Built
from bottleneck_transfer.features.bases.common import POOLINGS as _POOLINGS

KIND = "saved_model"
#: A transformer's class token besides the pooled feature map.
POOLINGS = (*_POOLINGS, hub.TOKEN)


def detect(base: str | Path) -> bool:
    """Whether ``base`` is a SavedModel folder (:func:`.hub.hub_kind`)."""
    return hub.hub_kind(base) == KIND


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The SavedModel a cache's provenance names (:func:`.hub.rebuild_spec`), else None."""
    if "saved_model" not in described:
        return None
    return hub.rebuild_spec(described, base_path, weights, cache_path)


def build(base: str | Path, request: BaseRequest) -> Built:
    """The SavedModel's serving output, pooled (:func:`.hub.load_hub`)."""
    return hub.build(KIND, base, request)
