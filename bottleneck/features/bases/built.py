"""What a base kind builds, before :func:`~.load.load_base` freezes it: :class:`Built` (a
model of any kind, cut and pooled) and :class:`Backbone` (an uncut model that can be cut at
several layers, for ``--layers``), and the description that identifies a base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases.common import PIXELS, Base, _assemble, weights_sha256
from bottleneck_transfer.features.bases.preprocessing import describe_preprocess
from bottleneck_transfer.fingerprint import sha256_file

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class BaseRequest:
    """What ``load_base`` was asked for, handed whole to a kind's ``build``/``backbone``."""

    weights: str | None
    size: tuple[int, int] | None
    pooling: str
    layer: str | None
    preprocess: str | None
    channels: int
    seed: int
    trust_graph: bool
    #: An ONNX base's input layout (``nchw``/``nhwc``; None: from its shape or metadata).
    layout: str | None = None
    #: Text bases: tokens per text (None: the preset's longest, capped).
    max_length: int | None = None


@dataclass
class Built:
    """A model of any kind, before it is frozen and described."""

    model: keras.Model
    name: str
    origin: dict
    weights_id: str
    size: tuple[int, int]
    channels: int
    affine: tuple[np.ndarray, np.ndarray]
    layer: str | None
    pooling: str

    def base(self, seed: int, preprocess: str | None) -> Base:
        """The frozen :class:`Base`, its description made."""
        model, size, channels = self.model, self.size, self.channels
        model.trainable = False
        description = describe(
            model, self.origin, self.weights_id, self.layer, self.pooling, size, channels, seed
        )
        description["preprocess"] = describe_preprocess(self.affine, preprocess)
        return Base(model, self.name, (int(size[0]), int(size[1])), int(channels), description)


@dataclass
class Backbone:
    """A keras.applications model or model file, before the cut."""

    model: keras.Model
    name: str
    stem: str
    origin: dict
    weights_id: str
    size: tuple[int, int]
    channels: int
    affine: tuple[np.ndarray, np.ndarray]


def weights_arg(weights: str | None) -> str | None:
    """``imagenet``, None (random: ``none``/``random``/None) or an existing weights file."""
    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.exists():
        raise BaseModelError(
            f"weights file not found: {path}. Received: weights={weights!r}; "
            "use imagenet, none, or a path to a weights file"
        )
    return str(path)


def cut(bone: Backbone, layer: str | None, pooling: str) -> Built:
    """A backbone cut at ``layer`` (None: the penultimate layer) and pooled."""
    layer = default_cut(bone, [layer], pooling)[0]
    model = _assemble(bone.model, layer, pooling, bone.affine, bone.stem)
    return Built(
        model, bone.name, bone.origin, bone.weights_id, bone.size, bone.channels,
        bone.affine, layer, pooling,
    )  # fmt: skip


def default_cut(bone: Backbone, layers: Sequence[str | None], pooling: str) -> list[str | None]:
    """``layers`` with the name of an application classifier's global pooling layer
    (``avg_pool`` in ResNet50, EfficientNet, DenseNet, InceptionV3) read as the default cut:
    the backbone is built without its top, so that layer is not in it, and the default cut
    pooled with the same ``pooling`` is that very layer's output.

    The classifier is built (without weights) only when a name is missing from the backbone.
    """
    import keras

    names = {lyr.name for lyr in bone.model.layers}
    if "application" not in bone.origin or all(n is None or n in names for n in layers):
        return list(layers)
    builder = getattr(keras.applications, bone.origin["application"])
    pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
    top = [lyr.name for lyr in builder(weights=None).layers if type(lyr) is pool[pooling]]
    return [None if top and layer == top[-1] else layer for layer in layers]


def _random(origin: dict, weights_id: str) -> bool:
    """Whether a base's weights are random (seeded): ``"none"``, but raw pixels (no weights)."""
    return weights_id == "none" and origin.get("application") != PIXELS


def describe(
    model: keras.Model,
    origin: dict,
    weights_id: str,
    layer: str | None,
    pooling: str,
    size: tuple[int, int],
    channels: int,
    seed: int,
) -> dict:
    """What determines a cut base's features, but its preprocessing (the caller adds it);
    random weights (``"none"``) record their seed, so the base can be rebuilt."""
    return {
        **origin,
        "weights": weights_id,
        **({"weights_seed": int(seed)} if _random(origin, weights_id) else {}),
        "weights_sha256": weights_sha256(model),
        "layer": layer or "penultimate",
        "pooling": pooling,
        "input_shape": [int(size[0]), int(size[1]), int(channels)],
        "decoder": "pillow-bilinear-v1",
        "feature_dim": int(model.output_shape[-1]),
    }


def _repo_bases_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "data" / "bases"


def candidates(name: str, cache_path: Path) -> list[Path]:
    """Where a base named only by its file or folder name is looked for."""
    folders = [Path.cwd(), cache_path.parent, cache_path.parent.parent, _repo_bases_dir()]
    return [folder / name for folder in folders]


def resolve_base_file(described: dict, base_path: str | Path | None, cache_path: Path) -> Path:
    """Find the base model file named in the provenance (``file``) and verify its sha256."""
    name = described["file"]
    expected = described.get("file_sha256")
    if base_path is not None:
        path = Path(base_path).expanduser()
        if not path.is_file():
            raise BaseModelError(f"base model file not found: {path} (--base)")
        actual = sha256_file(path)
        if expected and actual != expected:
            raise BaseModelError(
                f"{path} is not the base the cache {cache_path} was made with: its sha256 is "
                f"{actual}, the cache's base {name} has {expected}"
            )
        return path
    places = candidates(name, cache_path)
    for path in places:
        if path.is_file() and (not expected or sha256_file(path) == expected):
            return path
    raise BaseModelError(
        f"the cache {cache_path} was made with the base model file {name} ({expected}), "
        f"which is not in {', '.join(str(c.parent) for c in places)}; "
        "point at it with --base PATH"
    )
