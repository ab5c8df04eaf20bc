"""Base kind ``model_file``: a Keras ``.keras``/``.h5`` model file (a base spelled as a path
that is not a folder), loaded in Keras safe mode, at its own input size and weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.built import (
    Backbone,
    BaseRequest,
    Built,
    cut,
    resolve_base_file,
    weights_arg,
)
from bottleneck_transfer.features.bases.common import random_weights
from bottleneck_transfer.features.bases.preprocessing import preprocess_affine
from bottleneck_transfer.fingerprint import sha256_file

if TYPE_CHECKING:
    import keras

KIND = "model_file"


def detect(base: str | Path) -> bool:
    """Whether ``base`` spells a path (a folder is a hub kind's, detected before this one)."""
    return hub.spelled_path(base) is not None


def build(base: str | Path, request: BaseRequest) -> Built:
    """The model cut at ``request.layer`` and pooled."""
    return cut(backbone(base, request), request.layer, request.pooling)


def backbone(base: str | Path, request: BaseRequest) -> Backbone:
    """The whole model file, and what describes it (its name and sha256)."""
    path = hub.spelled_path(base)
    if not path.exists():
        raise BaseModelError(f"model file not found: {path}")
    weights, size = request.weights, request.size
    source = _load_model_file(path, weights, request.seed)
    shape = source.input_shape
    if size is not None and tuple(shape[1:3]) != tuple(size) and None not in shape[1:3]:
        raise BaseModelError(
            f"{path.name} takes {shape[1]}x{shape[2]} images. Received: "
            f"image_size={size}; leave --image-size out for model files"
        )
    size = tuple(shape[1:3]) if None not in shape[1:3] else (size or (224, 224))
    channels = int(shape[3])
    affine = preprocess_affine(request.preprocess or "none", channels)
    origin = {"file": path.name, "file_sha256": sha256_file(path)}
    weights_id = "file" if weights in (None, "file") else str(weights)
    return Backbone(source, path.name, path.stem, origin, weights_id, size, channels, affine)


def _load_model_file(path: Path, weights: str | None, seed: int) -> keras.Model:
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise BaseModelError(
            f"cannot load model file {path}: {exc}. It must be a Keras .keras/.h5 model "
            "loadable in safe mode (no Lambda layers)"
        ) from exc
    if weights is not None and str(weights).lower() in ("none", "random"):
        model = random_weights(model, seed)
    elif weights == "imagenet":
        raise BaseModelError(
            f"--weights imagenet applies to keras.applications bases; {path.name} has its own "
            "weights. Received: weights='imagenet'; omit --weights, or use none or a file"
        )
    elif weights not in (None, "file"):
        model.load_weights(weights_arg(weights))
    return model


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The model file a cache's provenance names (found, its sha256 checked) and the
    ``weights`` to try: its own as ``"file"`` and as None (``bottleneck extract``'s default;
    the weights' sha256 decides); None when ``described`` is not a model file's."""
    if "file" not in described:
        return None
    weights_id = described.get("weights")
    spec = resolve_base_file(described, base_path, cache_path)
    if weights is not None:
        return spec, [str(weights)]
    if weights_id == "file":
        return spec, ["file", None]
    if weights_id in ("none", "random"):
        return spec, [weights_id]
    raise BaseModelError(
        f"the cache {cache_path} was made with the weights file {weights_id!r} for "
        f"{described['file']}; pass it with --weights PATH"
    )
