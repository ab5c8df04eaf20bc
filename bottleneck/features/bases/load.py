"""Base models: keras.applications by name, user model files, hub bases, the layer cut.

:func:`load_base` returns a :class:`Base` whose ``model`` maps raw pixels (float32 values
0..255, shape ``(H, W, C)``) to bottleneck features ``(D,)``. The application's own
``preprocess_input`` is measured once and rebuilt as a frozen per-channel affine ``Dense``
layer inside the model, so the model is self-contained, backend-agnostic and loads in
Keras safe mode (no Lambda layers). ``description`` identifies everything that
determines the features, including a sha256 of the weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.errors import BaseModelError, did_you_mean
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import (
    PIXELS,
    POOLINGS,
    Base,
    _affine_layer,
    _assemble,
    _check_enum,
    _cut,
    _key,
    _pool,
    check_layers,
    random_weights,
    weights_sha256,
)
from bottleneck_transfer.features.bases.preprocessing import describe_preprocess, preprocess_affine
from bottleneck_transfer.fingerprint import sha256_file

if TYPE_CHECKING:
    import keras


#: Input sizes the applications were trained at (others: 224).
_DEFAULT_SIZES = {
    "inceptionv3": 299,
    "inceptionresnetv2": 299,
    "xception": 299,
    "nasnetlarge": 331,
    "efficientnetb1": 240,
    "efficientnetb2": 260,
    "efficientnetb3": 300,
    "efficientnetb4": 380,
    "efficientnetb5": 456,
    "efficientnetb6": 528,
    "efficientnetb7": 600,
    "efficientnetv2b1": 240,
    "efficientnetv2b2": 260,
    "efficientnetv2b3": 300,
    "efficientnetv2s": 384,
    "efficientnetv2m": 480,
    "efficientnetv2l": 480,
}


def application_names() -> list[str]:
    """Names of every ``keras.applications`` model (``ResNet50``, ``MobileNetV2``, ...)."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def resolve_application(name: str) -> str:
    """Map ``resnet50`` / ``mobilenet_v2`` / ``ResNet50`` to the application's own name.

    Raises
    ------
    BaseModelError
        For a name no application has; when a file or folder of that name is in the working
        directory, saying how to pick it (``./name``: see :func:`features.hub.spelled_path`).
    """
    matches = [n for n in application_names() if _key(n) == _key(name)]
    if not matches and Path(name).exists():
        raise BaseModelError(
            f"base {name!r} is a name, and no registered model has it; the file or folder "
            f"{name} in the working directory is used only when spelled as a path. Received: "
            f"base={name!r}; pass --base ./{name} for it, or a keras.applications name"
        )
    if not matches:
        close = did_you_mean(name, application_names(), key=_key)
        raise BaseModelError(
            f"unknown base {name!r}: not a model file and not a keras.applications name.{close} "
            f"Received: base={name!r}; valid names include {', '.join(application_names())}, "
            f"{PIXELS!r}, or a path to a .keras/.h5 model"
        )
    return matches[0]


def _measure_affine(preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Recover ``preprocess(x) == x @ W + b`` per pixel from probes, and check it holds."""
    import keras

    probes = np.zeros((4, 1, 1, 3), np.float32)
    for c in range(3):
        probes[c + 1, 0, 0, c] = 100.0
    out = keras.ops.convert_to_numpy(preprocess(probes.copy())).astype(np.float64)
    bias = out[0, 0, 0]
    weight = np.stack([(out[c + 1, 0, 0] - bias) / 100.0 for c in range(3)])
    check = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(preprocess(check.copy()))
    if not np.allclose(check @ weight + bias, expected, atol=1e-3):
        raise BaseModelError("the application's preprocess_input is not a per-channel affine map")
    return weight, bias


def _pooled_top(bone: _Backbone, layers: Sequence[str | None], pooling: str) -> list[str | None]:
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


def _weights_arg(weights: str | None) -> str | None:
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


def _build_application(
    name: str, weights: str | None, size: tuple[int, int], seed: int
) -> keras.Model:
    import keras

    builder = getattr(keras.applications, name)
    try:
        model = builder(include_top=False, weights=weights, input_shape=(*size, 3))
        return random_weights(model, seed) if weights is None else model
    except ValueError as exc:
        raise BaseModelError(f"cannot build {name} at {size[0]}x{size[1]}: {exc}") from exc
    except Exception as exc:
        if weights == "imagenet" and _looks_like_download_failure(exc):
            raise BaseModelError(
                f"could not download the imagenet weights of {name} (no internet?). "
                f"Download them once on a connected machine (they are cached in "
                f"~/.keras/models/), pass --weights PATH to a weights file, or use "
                f"--weights none for random weights. ({type(exc).__name__}: {exc})"
            ) from exc
        raise


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("url", "fetch", "download", "connection", "resolve"))


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
        model.load_weights(_weights_arg(weights))
    return model


def _is_pixels(base: str | Path) -> bool:
    """Whether ``base`` names the raw-pixels baseline (a name, not a path)."""
    return hub.spelled_path(base) is None and _key(str(base)) == PIXELS


def load_base(
    base: str | Path,
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str = "avg",
    layer: str | None = None,
    preprocess: str | None = None,
    channels: int = 3,
    seed: int = 0,
    trust_graph: bool = False,
) -> Base:
    """Build a frozen feature extractor.

    Parameters
    ----------
    base : str or Path
        A ``keras.applications`` name in any spelling (``resnet50``, ``MobileNetV2``), a
        ``.keras``/``.h5`` model file, ``"pixels"`` (raw pixels, the no-transfer baseline), or
        a hub base (:mod:`features.hub`): ``keras-hub:NAME``, an ``hf://`` or ``kaggle://``
        handle, a KerasHub preset folder, or a SavedModel folder.
    weights : str, optional
        ``"imagenet"`` (the default for applications), ``"none"`` (random, seeded by
        ``seed``) or a weights file. Model files use their own weights by default.
    image_size : int or (int, int), optional
        Input ``(height, width)``; defaults to the application's training size, or the model
        file's input size.
    pooling : {"avg", "max"}
        How a 4-D feature map at the cut is reduced to a vector (hub bases also take
        ``"token"``, a transformer's class token; see :mod:`features.hub`).
    layer : str, optional
        Cut at this layer's output instead of the penultimate layer.
    preprocess : str, optional
        Override preprocessing: ``none``, ``unit`` (x/255), ``tf``, ``torch``, ``caffe``, or
        any per-channel normalisation ``mean=M,std=S`` (one number, or one per channel:
        ``mean=123.7,116.3,103.5;std=58.4,57.1,57.4``); see :mod:`features.preprocessing`.
        Defaults to the application's own; model files are assumed to include theirs.
    channels : {1, 3}
        Only for ``"pixels"``: grayscale or RGB.
    seed : int
        Seed for random weights, so that ``weights="none"`` is reproducible.
    trust_graph : bool
        Run a SavedModel base whose graph holds ops off the allow-list of
        :mod:`bottleneck_transfer.graphs` (``--trust-graph``; recorded in the description).

    Examples
    --------
    >>> base = load_base("mobilenet_v2", weights="none", image_size=96)
    >>> base.dim
    1280
    >>> load_base("data/bases/fashion_mnist_0-4.keras", layer="bottleneck").dim
    128
    """

    kind = hub.hub_kind(base)
    if kind is None:
        _check_enum(pooling, POOLINGS, "pooling")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if kind is not None:
        shaping = {"weights": weights, "image_size": size, "pooling": pooling, "layer": layer}
        loaded = hub.load_hub(
            kind, base, preprocess=preprocess, seed=seed, trust_graph=trust_graph, **shaping
        )
        built = _Built(
            loaded.model, loaded.name, loaded.origin, loaded.weights, loaded.size, 3,
            loaded.affine, layer, loaded.pooling,
        )  # fmt: skip
    elif _is_pixels(base):
        built = _pixels(size or (32, 32), channels, preprocess)
    else:
        bone = _backbone(base, weights, size, preprocess, seed)
        layer = _pooled_top(bone, [layer], pooling)[0]
        model = _assemble(bone.model, layer, pooling, bone.affine, bone.stem)
        built = _Built(
            model, bone.name, bone.origin, bone.weights_id, bone.size, bone.channels,
            bone.affine, layer, pooling,
        )  # fmt: skip
    return built.base(seed, preprocess)


@dataclass
class _Built:
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
        description = _describe(
            model, self.origin, self.weights_id, self.layer, self.pooling, size, channels, seed
        )
        description["preprocess"] = describe_preprocess(self.affine, preprocess)
        return Base(model, self.name, (int(size[0]), int(size[1])), int(channels), description)


def _pixels(size: tuple[int, int], channels: int, preprocess: str | None) -> _Built:
    """The raw-pixels baseline: the (preprocessed) pixels, flattened."""
    import keras

    affine = preprocess_affine(preprocess or "unit", channels)
    inputs = keras.Input(shape=(*size, channels), name="pixels")
    layer_ = _affine_layer(*affine)
    x = layer_(inputs) if layer_ is not None else inputs
    model = keras.Model(inputs, keras.layers.Flatten(name="flatten")(x), name="pixels")
    return _Built(
        model, PIXELS, {"application": PIXELS}, "none", size, channels, affine, None, "none"
    )


def load_layers(
    base: str | Path,
    layers: Sequence[str],
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str = "avg",
    preprocess: str | None = None,
    seed: int = 0,
) -> tuple[list[Base], keras.Model]:
    """Bases cut at each of ``layers``, and one model computing all their features at once.

    Base ``i`` equals ``load_base(base, layer=layers[i], ...)`` (same description, so the
    same cache fingerprint); the joint model maps pixels to the list of every layer's pooled
    features in one call, sharing one backbone. For ``keras.applications`` bases and model
    files.

    Raises
    ------
    BaseModelError
        For a hub or ``pixels`` base, or names that are not layers of the base (close names
        are suggested).
    """
    import keras

    if hub.hub_kind(base) is not None or _is_pixels(base):
        raise BaseModelError(
            f"--layers applies to keras.applications bases and .keras/.h5 model files; "
            f"extract one --layer at a time from this base. Received: base={str(base)!r}"
        )
    _check_enum(pooling, POOLINGS, "pooling")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    bone = _backbone(base, weights, size, preprocess, seed)
    resolved = _pooled_top(bone, layers, pooling)
    check_layers(bone.model, [layer for layer in resolved if layer is not None])
    bases = []
    for layer in resolved:
        model = _assemble(bone.model, layer, pooling, bone.affine, bone.stem)
        model.trainable = False
        description = _describe(
            model, bone.origin, bone.weights_id, layer, pooling, bone.size, bone.channels, seed
        )
        description["preprocess"] = describe_preprocess(bone.affine, preprocess)
        shape = (int(bone.size[0]), int(bone.size[1]))
        bases.append(Base(model, bone.name, shape, bone.channels, description))
    trunk = keras.Model(bone.model.inputs, [_cut(bone.model, layer) for layer in resolved])
    trunk.trainable = False
    inputs = keras.Input(shape=bone.model.input_shape[1:], name="pixels")
    preprocessing = _affine_layer(*bone.affine)
    x = preprocessing(inputs) if preprocessing is not None else inputs
    cuts = trunk(x)
    outputs = [_pool(cut, pooling, f"_{i}") for i, cut in enumerate(cuts)]
    joint = keras.Model(inputs, outputs, name=f"{_key(bone.stem)}_layers")
    joint.trainable = False
    return bases, joint


@dataclass
class _Backbone:
    """A keras.applications model or model file, before the cut."""

    model: keras.Model
    name: str
    stem: str
    origin: dict
    weights_id: str
    size: tuple[int, int]
    channels: int
    affine: tuple[np.ndarray, np.ndarray]


def _backbone(
    base: str | Path,
    weights: str | None,
    size: tuple[int, int] | None,
    preprocess: str | None,
    seed: int,
) -> _Backbone:
    """The uncut model of an application name or a model file (a path as
    :func:`features.hub.spelled_path` reads it), and what describes it."""
    import keras

    path = hub.spelled_path(base)
    if path is not None:
        if not path.exists():
            raise BaseModelError(f"model file not found: {path}")
        source = _load_model_file(path, weights, seed)
        shape = source.input_shape
        if size is not None and tuple(shape[1:3]) != tuple(size) and None not in shape[1:3]:
            raise BaseModelError(
                f"{path.name} takes {shape[1]}x{shape[2]} images. Received: "
                f"image_size={size}; leave --image-size out for model files"
            )
        size = tuple(shape[1:3]) if None not in shape[1:3] else (size or (224, 224))
        channels = int(shape[3])
        affine = preprocess_affine(preprocess or "none", channels)
        origin = {"file": path.name, "file_sha256": sha256_file(path)}
        weights_id = "file" if weights in (None, "file") else str(weights)
        return _Backbone(source, path.name, path.stem, origin, weights_id, size, channels, affine)
    name = resolve_application(str(base))
    size = size or (_DEFAULT_SIZES.get(_key(name), 224),) * 2
    keras_weights = _weights_arg("imagenet" if weights is None else weights)
    model = _build_application(name, keras_weights, size, seed)
    module = importlib.import_module(getattr(keras.applications, name).__module__)
    affine = (
        preprocess_affine(preprocess, 3) if preprocess else _measure_affine(module.preprocess_input)
    )
    weights_id = keras_weights if keras_weights in (None, "imagenet") else "file"
    origin = {"application": name}
    return _Backbone(model, name, name, origin, weights_id or "none", size, 3, affine)


def _random(origin: dict, weights_id: str) -> bool:
    """Whether a base's weights are random (seeded): ``"none"``, but raw pixels (no weights)."""
    return weights_id == "none" and origin.get("application") != PIXELS


def _describe(
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
