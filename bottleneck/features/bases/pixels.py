"""Base kind ``pixels``: the raw-pixels baseline (no transfer), the preprocessed pixels
flattened; ``pixels`` spelled as a name, never a path.
"""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.built import BaseRequest, Built
from bottleneck_transfer.features.bases.common import PIXELS, _affine_layer, _key
from bottleneck_transfer.features.bases.preprocessing import preprocess_affine

KIND = "pixels"


def detect(base: str | Path) -> bool:
    """Whether ``base`` names the raw-pixels baseline (a name, not a path)."""
    return hub.spelled_path(base) is None and _key(str(base)) == PIXELS


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """``pixels`` (no weights) when a cache's provenance names it, else None."""
    if described.get("application") != PIXELS:
        return None
    return PIXELS, [described.get("weights")]


def build(base: str | Path, request: BaseRequest) -> Built:
    """The (preprocessed) pixels, flattened, at ``request.size`` (default 32x32)."""
    return _pixels(request.size or (32, 32), request.channels, request.preprocess)


def _pixels(size: tuple[int, int], channels: int, preprocess: str | None) -> Built:
    """The raw-pixels baseline: the (preprocessed) pixels, flattened."""
    import keras

    affine = preprocess_affine(preprocess or "unit", channels)
    inputs = keras.Input(shape=(*size, channels), name="pixels")
    layer_ = _affine_layer(*affine)
    x = layer_(inputs) if layer_ is not None else inputs
    model = keras.Model(inputs, keras.layers.Flatten(name="flatten")(x), name="pixels")
    return Built(
        model, PIXELS, {"application": PIXELS}, "none", size, channels, affine, None, "none"
    )
