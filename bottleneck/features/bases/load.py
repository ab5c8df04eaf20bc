"""Base models by kind, cut and frozen: :func:`load_base` and :func:`load_layers`.

:func:`load_base` returns a :class:`Base` whose ``model`` maps raw pixels (float32 values
0..255, shape ``(H, W, C)``) to bottleneck features ``(D,)``. The kind of ``base`` is found by
:mod:`.registry` (applications by name, model files, raw pixels, KerasHub presets,
SavedModels: one module each); an application's own ``preprocess_input`` is rebuilt as a
frozen per-channel affine ``Dense`` layer inside the model, so the model is self-contained,
backend-agnostic and loads in Keras safe mode (no Lambda layers). ``description``
identifies everything that determines the features, including a sha256 of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases.built import BaseRequest, default_cut, describe
from bottleneck_transfer.features.bases.common import (
    Base,
    _affine_layer,
    _assemble,
    _check_enum,
    _cut,
    _key,
    _pool,
    check_layers,
)
from bottleneck_transfer.features.bases.preprocessing import describe_preprocess
from bottleneck_transfer.features.bases.registry import (
    base_kind,
    cuts_layers,
    default_pooling,
    layouts,
    poolings,
)

if TYPE_CHECKING:
    import keras


def load_base(
    base: str | Path,
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str | None = None,
    layer: str | None = None,
    preprocess: str | None = None,
    channels: int = 3,
    seed: int = 0,
    trust_graph: bool = False,
    layout: str | None = None,
    max_length: int | None = None,
) -> Base:
    """Build a frozen feature extractor.

    Parameters
    ----------
    base : str or Path
        A ``keras.applications`` name in any spelling (``resnet50``, ``MobileNetV2``), a
        ``.keras``/``.h5`` model file, ``"pixels"`` (raw pixels, the no-transfer baseline), or
        a hub base (:mod:`features.hub`): ``keras-hub:NAME``, an ``hf://`` or ``kaggle://``
        handle, a KerasHub preset folder, or a SavedModel folder; or an ``.onnx`` file
        (:mod:`.onnx_file`; ``layer`` names its output).
    weights : str, optional
        ``"imagenet"`` (the default for applications), ``"none"`` (random, seeded by
        ``seed``) or a weights file. Model files use their own weights by default.
    image_size : int or (int, int), optional
        Input ``(height, width)``; defaults to the application's training size, or the model
        file's input size.
    pooling : {"avg", "max"}, optional
        How a 4-D feature map at the cut is reduced to a vector (default ``avg``; hub bases
        also take ``"token"``, a transformer's class token; see :mod:`features.hub`). Text
        bases: ``cls``, ``pooled``, ``mean`` or ``last-token`` (default: the family's;
        :mod:`.text`).
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
    layout : {"nchw", "nhwc"}, optional
        An ONNX file base's input layout (default: from its input shape or metadata).
    max_length : int, optional
        Text bases only: tokens per text (longer texts are truncated and counted).

    Examples
    --------
    >>> base = load_base("mobilenet_v2", weights="none", image_size=96)
    >>> base.dim
    1280
    >>> load_base("data/bases/fashion_mnist_0-4.keras", layer="bottleneck").dim
    128
    """

    kind = base_kind(base)
    pooling = pooling or default_pooling(kind)
    if pooling is not None:
        _check_enum(pooling, poolings(kind), "pooling")
    _check_kind_options(kind, base, layout, max_length)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    request = BaseRequest(
        weights, size, pooling, layer, preprocess, channels, seed, trust_graph, layout, max_length
    )
    return kind.build(base, request).base(seed, preprocess)


def _check_kind_options(
    kind: ModuleType, base: str | Path, layout: str | None, max_length: int | None
) -> None:
    """Refuse ``layout`` for a kind that takes NHWC pixels only and ``max_length`` for a
    kind that takes no text, in one line each."""
    if layout is not None and not layouts(kind):
        raise BaseModelError(
            f"--layout applies to .onnx bases; a {kind.KIND} base takes NHWC pixels. "
            f"Received: layout={layout!r}, base={str(base)!r}; leave --layout out"
        )
    if max_length is not None and getattr(kind, "KIND", "") != "text-preset":
        raise BaseModelError(
            f"--max-length applies to text bases (KerasHub text presets); {base} takes images. "
            f"Received: max_length={max_length}"
        )


def load_layers(
    base: str | Path,
    layers: Sequence[str],
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str | None = None,
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

    kind = base_kind(base)
    if not cuts_layers(kind):
        raise BaseModelError(
            f"--layers applies to keras.applications bases and .keras/.h5 model files; "
            f"extract one --layer at a time from this base. Received: base={str(base)!r}"
        )
    pooling = pooling or "avg"
    _check_enum(pooling, poolings(kind), "pooling")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    request = BaseRequest(weights, size, pooling, None, preprocess, 3, seed, False)
    bone = kind.backbone(base, request)
    resolved = default_cut(bone, layers, pooling)
    check_layers(bone.model, [layer for layer in resolved if layer is not None])
    bases = []
    for layer in resolved:
        model = _assemble(bone.model, layer, pooling, bone.affine, bone.stem)
        model.trainable = False
        description = describe(
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
