"""Bases from model hubs: KerasHub presets and SavedModel folders.

:func:`features.bases.load_base` hands a base here when :func:`hub_kind` recognises it, and
builds the description (so the cache fingerprint) from what :func:`load_hub` returns.

**KerasHub presets** (``pip install 'bottleneck-transfer[hub]'``): ``keras-hub:NAME`` (a
built-in preset such as ``resnet_50_imagenet``), an ``hf://`` or ``kaggle://`` handle, or a
folder as ``save_to_preset`` writes it (``config.json``). The backbone (for CLIP/SigLIP, its
vision encoder) comes from ``Backbone.from_preset``. The preset's ``ImageConverter`` gives the
input size, and its ``scale`` and ``offset`` become the base's frozen affine preprocessing
layer (checked against the converter on random pixels), so the features are the backbone's on
converted pixels; the resize is the decoder's (Pillow, bilinear, as for every base).

Pooling (``--pooling``): a convolutional backbone's feature map ``(H, W, C)`` is averaged
(``avg``, the default) or max-pooled (``max``); a transformer's tokens ``(T, D)`` are averaged
(``avg``: the mean token over all T tokens, KerasHub's ``"gap"``), max-pooled, or ``token``
takes the class token (the first token: ViT, DeiT, CLIP, DINOv2); a backbone that already
outputs a vector (SigLIP's attention-pooled encoder) is used as is (``pooling`` ``none``).

**SavedModel folders** (``saved_model.pb``: TF Hub, ``model.export()``) run through
``keras.layers.TFSMLayer``, on the TensorFlow backend only. A SavedModel's graph is a program:
its ops are checked first (:func:`bottleneck_transfer.graphs.check_saved_model`) and one off
the allow-list is refused unless ``trust_graph`` (``--trust-graph``, recorded as
``trust_graph: true`` in the description, so in the cache fingerprint). A SavedModel carries
no preprocessing, so ``--preprocess`` is required; the input size is its signature's, or
``--image-size`` when that is variable.

Provenance: ``preset`` (the handle) or ``preset_folder`` (the folder's name), ``preset_class``,
``preset_config_sha256`` (the backbone's config) and ``image_converter``; ``saved_model`` (the
folder's name), ``saved_model_sha256`` (every file in it), ``endpoint`` and, when its ops were
not checked, ``trust_graph``. With the base's
``weights_sha256`` they enter the cache fingerprint, so a changed preset is a stale cache.
An export of a preset base holds KerasHub layers: it loads with plain
``keras.saving.load_model`` wherever ``keras_hub`` is installed (Keras imports it).

Keras is imported inside the functions, so ``info`` reads :data:`NAME_KEYS` without a backend.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases.built import Built, candidates
from bottleneck_transfer.fingerprint import fingerprint, sha256_file
from bottleneck_transfer.graphs import check_saved_model

if TYPE_CHECKING:
    import keras
    import numpy as np
    from bottleneck_transfer.features.bases.built import BaseRequest

KERAS_HUB_PREFIX = "keras-hub:"
HANDLE_SCHEMES = ("hf://", "kaggle://")
PRESET_CONFIG = "config.json"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
#: The pooling that takes a transformer's class token (besides ``bases.POOLINGS``).
TOKEN = "token"
#: SavedModel endpoints tried in turn: ``model.export()`` writes ``serve``, TF ``serving_default``.
ENDPOINTS = ("serve", "serving_default")
#: The description keys that name a hub base (one of them is present).
NAME_KEYS = ("preset", "preset_folder", "saved_model")
#: What else a hub base's description records (``info`` shows them).
DETAIL_KEYS = (
    "preset_class",
    "preset_config_sha256",
    "image_converter",
    "saved_model_sha256",
    "endpoint",
    "trust_graph",
    "tokenizer",
    "tokenizer_sha256",
    "family",
    "max_length",
    "pooling_default",
)
#: Every description key a hub base adds (an export's metadata copies them).
PROVENANCE_KEYS = (*NAME_KEYS, *DETAIL_KEYS)
#: ``weights`` of a preset base: the preset's own, or random (seeded) ones.
PRESET_WEIGHTS = ("preset", "none")
SAVED_MODEL_WEIGHTS = "saved_model"


@dataclass
class HubModel:
    """What ``load_base`` needs from a hub base to describe it."""

    model: keras.Model
    name: str
    origin: dict
    weights: str
    size: tuple[int, int]
    affine: tuple[np.ndarray, np.ndarray]
    pooling: str


def spelled_path(base: Any) -> Path | None:
    """The path ``base`` spells, or None when it spells a name (or a hub handle).

    The one rule by which every ``--base`` is read: a path is a ``Path``, or text with a
    separator (``./mobilenet_v2``, ``models/x``, ``~/x``) or an extension (``resnet50.keras``);
    anything else is a name, looked up among the registered models only, so a file or folder
    in the working directory named like one (``./mobilenet_v2``) is never loaded in its place.
    """
    if isinstance(base, PurePath):
        return Path(base).expanduser()
    text = str(base)
    if text.startswith((KERAS_HUB_PREFIX, *HANDLE_SCHEMES)):
        return None
    separators = [sep for sep in (os.sep, os.altsep, "/") if sep]
    if any(sep in text for sep in separators) or text.startswith("~") or text in (".", ".."):
        return Path(text).expanduser()
    return Path(text) if PurePath(text).suffix else None


def hub_kind(base: Any) -> str | None:
    """``"preset"``, ``"saved_model"``, or None when ``base`` is not a hub base.

    Raises
    ------
    BaseModelError
        For a folder that is neither a KerasHub preset nor a SavedModel.
    """
    text = str(base)
    if text.startswith((KERAS_HUB_PREFIX, *HANDLE_SCHEMES)):
        return "preset"
    path = spelled_path(base)
    if path is None or not path.is_dir():
        return None
    if any((path / name).is_file() for name in SAVED_MODEL_FILES):
        return "saved_model"
    if (path / PRESET_CONFIG).is_file():
        return "preset"
    raise BaseModelError(
        f"{path} is a folder but neither a KerasHub preset ({PRESET_CONFIG}) nor a SavedModel "
        f"(saved_model.pb). Received: base={text!r}; give a folder saved with save_to_preset "
        "or model.export(), or a .keras/.h5 model file"
    )


def refuse_saved_model(described: dict, what: str) -> None:
    """Raise when ``what`` needs to rebuild the base's graph: a SavedModel's is fixed, and so
    is an ONNX file's (which Keras cannot run at all)."""
    if described.get("format") == "onnx":
        raise BaseModelError(
            f"{what} does not apply to the ONNX file {described.get('file')}: its graph and "
            "weights are fixed inside it and it runs on ONNX Runtime, not Keras; use a Keras "
            "model file as the base for it"
        )
    name = described.get("saved_model")
    if name is not None:
        raise BaseModelError(
            f"{what} does not apply to the SavedModel {name}: its graph and weights are fixed "
            "inside it (Keras runs a TFSMLayer as it is); use a Keras model file or a KerasHub "
            "preset as the base for it"
        )


def requirements(described: dict) -> list[str]:
    """Packages a model holding this base needs to load (KerasHub layers need keras-hub)."""
    return ["keras-hub"] if "preset" in described or "preset_folder" in described else []


def load_hub(
    kind: str,
    base: str | Path,
    *,
    weights: str | None,
    image_size: tuple[int, int] | None,
    pooling: str,
    layer: str | None,
    preprocess: str | None,
    seed: int,
    trust_graph: bool = False,
) -> HubModel:
    """Load a hub base of ``kind`` (see :func:`hub_kind`); raises :class:`BaseModelError`
    (:class:`GraphError` for a SavedModel holding an op off the allow-list, unless
    ``trust_graph``)."""
    from bottleneck_transfer.features.bases.common import POOLINGS, _check_enum

    _check_enum(pooling, (*POOLINGS, TOKEN), "pooling")
    if kind == "preset":
        return _load_preset(str(base), weights, image_size, pooling, layer, preprocess, seed)
    return _load_saved_model(
        str(base), weights, image_size, pooling, layer, preprocess, trust_graph
    )


def build(kind: str, base: str | Path, request: BaseRequest) -> Built:
    """A hub base of ``kind`` (``preset`` or ``saved_model``) as a kind module's ``build``
    returns it (:mod:`.preset`, :mod:`.saved_model`)."""
    shaping = {
        "weights": request.weights,
        "image_size": request.size,
        "pooling": request.pooling,
        "layer": request.layer,
    }
    loaded = load_hub(
        kind,
        base,
        preprocess=request.preprocess,
        seed=request.seed,
        trust_graph=request.trust_graph,
        **shaping,
    )
    return Built(
        loaded.model, loaded.name, loaded.origin, loaded.weights, loaded.size, 3,
        loaded.affine, request.layer, loaded.pooling,
    )  # fmt: skip


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]]:
    """A hub base: its handle, or its folder (``--base``, else found by name; the weights'
    sha256 check in :func:`rebuild_base` decides whether it is the same)."""
    weight_args = [str(weights) if weights is not None else described.get("weights")]
    if base_path is not None:
        return Path(base_path).expanduser(), weight_args
    if "preset" in described:
        return described["preset"], weight_args
    name = described.get("preset_folder") or described["saved_model"]
    for path in candidates(name, cache_path):
        if path.is_dir():
            return path, weight_args
    raise BaseModelError(
        f"the cache {cache_path} was made with the hub base folder {name}, which is not beside "
        "it or in the working directory; point at it with --base PATH"
    )


# ----------------------------------------------------------------------------- presets


def preset_weights(weights: str | None) -> str:
    """A preset base's ``weights``: ``preset`` (its own, when None) or ``none`` (random)."""
    weights_id = "preset" if weights is None else str(weights).lower().replace("random", "none")
    if weights_id not in PRESET_WEIGHTS:
        raise BaseModelError(
            f"--weights of a KerasHub preset: omit it for the preset's own weights, or none "
            f"for random ones. Received: weights={weights!r}"
        )
    return weights_id


#: The configs of a preset folder whose classes are checked before anything is built.
PRESET_CONFIGS = (PRESET_CONFIG, "tokenizer.json", "preprocessor.json", "image_converter.json")


def check_preset_classes(path: Path) -> None:
    """Refuse a preset folder whose configs name a class that is not KerasHub's own.

    KerasHub builds only classes registered with Keras; this also refuses one registered by
    any other package imported in this process, before anything is built.
    """
    import json

    for name in PRESET_CONFIGS:
        if not (path / name).is_file():
            continue
        try:
            config = json.loads((path / name).read_text(encoding="utf-8"))
            module = str(config.get("module", ""))
            registered = str(config.get("registered_name") or "")
        except (OSError, ValueError, AttributeError) as exc:
            raise BaseModelError(f"cannot read {path / name}: {exc}") from exc
        owner = registered.split(">", 1)[0] if ">" in registered else module.split(".", 1)[0]
        if owner != "keras_hub":
            raise BaseModelError(
                f"{path / name} names the class {registered or module!r}, which is not "
                "KerasHub's: a preset folder may only name KerasHub classes; re-save it with "
                "save_to_preset from a KerasHub model"
            )


def preset_handle(base: str, keras_hub: Any) -> tuple[str, dict]:
    """What ``from_preset`` takes, and the description entry naming the preset (a folder's
    configs checked first: :func:`check_preset_classes`)."""
    if base.startswith(KERAS_HUB_PREFIX):
        name = base[len(KERAS_HUB_PREFIX) :]
        if name not in keras_hub.models.Backbone.presets:
            raise BaseModelError(
                f"unknown KerasHub preset {name!r}. Received: base={base!r}; list the names "
                'with `python -c "import keras_hub; print(sorted(keras_hub.models.Backbone'
                '.presets))"`, or give an hf:// or kaggle:// handle or a preset folder'
            )
        return name, {"preset": base}
    if base.startswith(HANDLE_SCHEMES):
        return base, {"preset": base}
    path = Path(base).expanduser()
    check_preset_classes(path)
    return str(path), {"preset_folder": path.name}


def one_line(exc: Exception) -> str:
    """``Type: message`` on one line (Keras' "Arguments received" trace and colours cut)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split("Arguments received")[0]
    text = text.replace("Exception encountered when calling", "in")
    return f"{type(exc).__name__}: {' '.join(text.split())[:300]}"


def preset_error(base: str, exc: Exception) -> BaseModelError:
    detail = one_line(exc)
    if not base.startswith((KERAS_HUB_PREFIX, *HANDLE_SCHEMES)):
        return BaseModelError(
            f"cannot load the KerasHub preset folder {base} ({detail}); it must be a folder "
            "as save_to_preset writes it (config.json, model.weights.h5, image_converter.json)"
        )
    return BaseModelError(
        f"could not load the KerasHub preset {base} ({detail}). Offline? Load it once on a "
        "connected machine (KerasHub keeps it under ~/.cache/kagglehub or ~/.cache/huggingface), "
        "or save it there with Backbone.from_preset(...).save_to_preset(DIR) and its "
        "ImageConverter's save_to_preset(DIR), then pass --base DIR"
    )


def _converter_affine(converter: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The converter's ``x * scale + offset`` as ``(W, b)``, checked on random pixels."""
    import keras
    import numpy as np

    scale = np.broadcast_to(np.asarray(1.0 if converter.scale is None else converter.scale), 3)
    offset = np.broadcast_to(np.asarray(0.0 if converter.offset is None else converter.offset), 3)
    weight, bias = np.diag(scale.astype(np.float64)), offset.astype(np.float64)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *size, 3)).astype(np.float32)
    converted = keras.ops.convert_to_numpy(converter(pixels))
    if converted.shape != pixels.shape or not np.allclose(
        converted, pixels @ weight + bias, atol=1e-4 * max(1.0, float(np.abs(converted).max()))
    ):
        raise BaseModelError(
            f"the preset's {type(converter).__name__} is not a resize with a per-channel scale "
            "and offset; pass --preprocess (none, unit, tf, torch, caffe) to replace it"
        )
    return weight, bias


def _image_converter(keras_hub: Any, handle: str) -> Any | None:
    try:
        return keras_hub.layers.ImageConverter.from_preset(handle)
    except FileNotFoundError:
        return None


def _load_preset(
    base: str,
    weights: str | None,
    image_size: tuple[int, int] | None,
    pooling: str,
    layer: str | None,
    preprocess: str | None,
    seed: int,
) -> HubModel:
    import keras
    from bottleneck_transfer.features.bases.preprocessing import preprocess_affine
    from bottleneck_transfer.features.cache.tables import require

    keras_hub = require("keras_hub", "hub")
    weights_id = preset_weights(weights)
    handle, origin = preset_handle(base, keras_hub)
    keras.utils.set_random_seed(seed)
    try:
        backbone = keras_hub.models.Backbone.from_preset(
            handle, load_weights=weights_id == "preset"
        )
        converter = _image_converter(keras_hub, handle)
    except Exception as exc:
        raise preset_error(base, exc) from exc
    encoder = getattr(backbone, "vision_encoder", backbone)
    if len(encoder.inputs) != 1 or len(encoder.inputs[0].shape) != 4:
        raise BaseModelError(
            f"{base} is a {type(backbone).__name__}, not an image backbone (it takes "
            f"{[tuple(t.shape) for t in encoder.inputs]}); give an image model's preset"
        )
    converter_size = None if converter is None else converter.image_size
    size = image_size or converter_size or tuple(encoder.inputs[0].shape[1:3])
    if None in size:
        raise BaseModelError(f"{base} does not fix its input size; pass --image-size")
    if preprocess is not None:
        affine = preprocess_affine(preprocess, 3)
    elif converter is None:
        raise BaseModelError(
            f"the preset {base} has no image converter (image_converter.json), so its "
            "preprocessing is unknown; pass --preprocess (none, unit, tf, torch, caffe)"
        )
    else:
        affine = _converter_affine(converter, converter_size or size)
    config = keras.saving.serialize_keras_object(backbone)["config"]
    origin = {
        **origin,
        "preset_class": type(backbone).__name__,
        "preset_config_sha256": fingerprint(config),
        "image_converter": "none" if converter is None else type(converter).__name__,
    }
    model, pooling = _assemble(encoder, size, affine, layer, pooling, base)
    return HubModel(model, base, origin, weights_id, size, affine, pooling)


# ----------------------------------------------------------------------------- SavedModels


def _tfsm_layer(path: Path) -> tuple[Any, str]:
    """The SavedModel as a ``TFSMLayer`` on the first endpoint of :data:`ENDPOINTS` it has."""
    import keras

    for endpoint in ENDPOINTS:
        try:
            return keras.layers.TFSMLayer(str(path), call_endpoint=endpoint), endpoint
        except ValueError as exc:
            if "endpoint" not in str(exc).lower():
                raise BaseModelError(f"cannot load the SavedModel {path}: {exc}") from exc
    raise BaseModelError(
        f"the SavedModel {path} has none of the endpoints {', '.join(ENDPOINTS)}; export it "
        "with model.export() or a serving_default signature"
    )


def _signature_shape(layer: Any) -> tuple:
    """The input shape of the SavedModel's endpoint, ``(None, H, W, C)`` or with Nones."""
    import tensorflow as tf

    function = layer.call_endpoint_fn
    signature = getattr(function, "input_signature", None)
    if signature is None:
        signature = function.structured_input_signature
    specs = [s for s in tf.nest.flatten(signature) if isinstance(s, tf.TensorSpec)]
    if len(specs) != 1 or specs[0].shape.rank != 4:
        raise BaseModelError(
            f"the SavedModel {layer.filepath} takes {specs}, not one batch of images (N, H, W, C)"
        )
    return tuple(specs[0].shape.as_list())


def _folder_sha256(path: Path) -> str:
    """sha256 over every file of a folder: relative names and contents, in name order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\0".encode())
    return "sha256:" + digest.hexdigest()


def _load_saved_model(
    base: str,
    weights: str | None,
    image_size: tuple[int, int] | None,
    pooling: str,
    layer: str | None,
    preprocess: str | None,
    trust_graph: bool,
) -> HubModel:
    import keras
    from bottleneck_transfer.features.bases.preprocessing import preprocess_affine

    path = Path(base).expanduser()
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BaseModelError(
            f"{path} is a SavedModel, which Keras runs only on the TensorFlow backend "
            f"(keras.layers.TFSMLayer); this process uses {backend}. Received: base={base!r}; "
            "run with KERAS_BACKEND=tensorflow"
        )
    if layer is not None:
        raise BaseModelError(
            f"--layer does not apply to the SavedModel {path}: its layers are not visible. "
            f"Received: layer={layer!r}; export the model cut at that layer instead"
        )
    if weights not in (None, SAVED_MODEL_WEIGHTS):
        raise BaseModelError(
            f"--weights does not apply to the SavedModel {path}: it holds its own. "
            f"Received: weights={weights!r}; omit --weights"
        )
    if preprocess is None:
        raise BaseModelError(
            f"a SavedModel does not carry its preprocessing: pass --preprocess for {path} "
            "(unit for TF Hub image models, which take [0, 1]; none for 0..255 pixels; tf for "
            "[-1, 1]). Received: preprocess=None"
        )
    check_saved_model(path, trusted=trust_graph)
    tfsm, endpoint = _tfsm_layer(path)
    shape = _signature_shape(tfsm)
    fixed = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
    if shape[3] not in (None, 3):
        raise BaseModelError(f"the SavedModel {path} takes {shape[3]} channels; only 3 (RGB)")
    if fixed and image_size and tuple(image_size) != fixed:
        raise BaseModelError(
            f"the SavedModel {path} takes {fixed[0]}x{fixed[1]} images. Received: "
            f"image_size={tuple(image_size)}; leave --image-size out"
        )
    size = fixed or image_size
    if size is None:
        raise BaseModelError(
            f"the SavedModel {path} takes images of any size: pass --image-size "
            "(the size it was trained at)"
        )
    affine = preprocess_affine(preprocess, 3)
    model, pooling = _assemble(tfsm, size, affine, None, pooling, path.name)
    origin = {
        "saved_model": path.name,
        "saved_model_sha256": _folder_sha256(path),
        "endpoint": endpoint,
        **({"trust_graph": True} if trust_graph else {}),
    }
    return HubModel(model, path.name, origin, SAVED_MODEL_WEIGHTS, size, affine, pooling)


# ----------------------------------------------------------------------------- the model


def _pool_tokens(tokens: Any, pooling: str, class_token: bool) -> Any:
    """``(N, T, D)`` tokens -> ``(N, D)``: mean, max, or the class token (the first)."""
    import keras

    if pooling != TOKEN:
        pool = {"avg": keras.layers.GlobalAveragePooling1D, "max": keras.layers.GlobalMaxPooling1D}
        return pool[pooling](name="bottleneck_pool")(tokens)
    if not class_token or tokens.shape[1] is None:
        raise BaseModelError(
            "--pooling token takes the class token, and this backbone has none. "
            "Received: pooling='token'; use avg (the mean token) or max"
        )
    first = keras.layers.Cropping1D((0, tokens.shape[1] - 1), name="bottleneck_token")(tokens)
    return keras.layers.Flatten(name="bottleneck_pool")(first)


def _assemble(
    encoder: Any,
    size: tuple[int, int],
    affine: tuple[np.ndarray, np.ndarray],
    layer: str | None,
    pooling: str,
    name: str,
) -> tuple[keras.Model, str]:
    """raw pixels -> affine preprocessing -> the encoder (cut at ``layer``) -> pooled features.

    Returns the model and the pooling it applies (``none`` when the output is a vector).
    """
    import keras
    from bottleneck_transfer.features.bases.common import _affine_layer, _cut, _key, _pool

    trunk = encoder
    if layer is not None:
        trunk = keras.Model(encoder.inputs, _cut(encoder, layer), name=f"{encoder.name}_cut")
    trunk.trainable = False
    inputs = keras.Input(shape=(*size, 3), name="pixels")
    preprocess = _affine_layer(*affine)
    x = preprocess(inputs) if preprocess is not None else inputs
    try:
        out = trunk(x)
    except Exception as exc:
        raise BaseModelError(
            f"{name} cannot run on {size[0]}x{size[1]} images ({one_line(exc)}); "
            "leave --image-size out for the preset's own size"
        ) from exc
    if isinstance(out, dict):
        if len(out) != 1:
            raise BaseModelError(f"{name} has several outputs ({', '.join(out)}); need one")
        out = next(iter(out.values()))
    rank = len(out.shape)
    if rank == 3:
        class_token = bool(getattr(encoder, "get_config", dict)().get("use_class_token", True))
        features = _pool_tokens(out, pooling, class_token)
    elif pooling == TOKEN:
        raise BaseModelError(
            f"--pooling token takes a transformer's class token; {name} gives "
            f"{tuple(out.shape[1:])} features. Received: pooling='token'; use avg or max"
        )
    else:
        features = _pool(out, pooling)
    model = keras.Model(inputs, features, name=f"{_key(name)}_features")
    return model, pooling if rank > 2 else "none"
