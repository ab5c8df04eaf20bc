"""Base kind ``preset``: a KerasHub preset (``keras-hub:NAME``, an ``hf://`` or ``kaggle://``
handle, or a preset folder); loading lives in :mod:`.hub`, with the SavedModel kind's.
"""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.built import BaseRequest, Built
from bottleneck_transfer.features.bases.common import POOLINGS as _POOLINGS

KIND = "preset"
#: Vision transformers' class token besides the pooled feature map.
POOLINGS = (*_POOLINGS, hub.TOKEN)


def detect(base: str | Path) -> bool:
    """Whether ``base`` is a KerasHub handle or preset folder (:func:`.hub.hub_kind`)."""
    return hub.hub_kind(base) == KIND


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The preset a cache's provenance names (:func:`.hub.rebuild_spec`), else None."""
    if "preset" not in described and "preset_folder" not in described:
        return None
    return hub.rebuild_spec(described, base_path, weights, cache_path)


def build(base: str | Path, request: BaseRequest) -> Built:
    """The preset's backbone, cut and pooled (:func:`.hub.load_hub`)."""
    return hub.build(KIND, base, request)
