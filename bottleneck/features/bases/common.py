"""What every base kind shares: the :class:`Base` it returns and the helpers that shape one
(the layer cut, pooling, the affine preprocessing layer, seeded random weights).

Every kind module (:mod:`.load`, :mod:`.hub`) imports these; none imports another kind.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import BaseModelError, did_you_mean
from bottleneck_transfer.fingerprint import sha256_arrays

if TYPE_CHECKING:
    import keras


POOLINGS = ("avg", "max")


PIXELS = "pixels"


def items_word(described: dict) -> str:
    """What a base's items are called in messages, from its provenance ``described``:
    ``"texts"`` for a text base, else ``"images"``."""
    return "texts" if described.get("input") == "text" else "images"


@dataclass(repr=False)
class Base(Display):
    """A frozen feature extractor: raw pixels in, bottleneck features out.

    Examples
    --------
    >>> base = load_base("data/bases/fashion_mnist_0-4.keras")
    >>> base.image_size, base.channels, base.dim
    ((28, 28), 1, 128)
    """

    model: keras.Model
    name: str
    image_size: tuple[int, int]
    channels: int
    description: dict
    #: A text base's tokenizer and packer (:class:`.text.TextEncoder`); None for images.
    encoder: Any = None

    @property
    def modality(self) -> str:
        """``image`` (pixels in) or ``text`` (strings in, through :attr:`encoder`)."""
        return "image" if self.encoder is None else "text"

    def _display_summary(self) -> dict[str, Any]:
        height, width = self.image_size
        shape = f"{height}x{width}x{self.channels}"
        return {
            "name": self.name,
            "input": shape if self.encoder is None else f"text, {height} tokens",
            "features": self.dim,
            "layers": len(self.model.layers),
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per entry of the description (what the fingerprint is made of)."""
        return [{"key": key, "value": value} for key, value in self.description.items()]

    @property
    def dim(self) -> int:
        """Feature size D."""
        return int(self.model.output_shape[-1])


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _affine_layer(weight: np.ndarray, bias: np.ndarray) -> keras.layers.Layer | None:
    import keras

    channels = weight.shape[0]
    if np.allclose(weight, np.eye(channels)) and np.allclose(bias, 0):
        return None
    layer = keras.layers.Dense(channels, name="preprocess", trainable=False)
    layer.build((None, channels))
    layer.set_weights([weight.astype(np.float32), bias.astype(np.float32)])
    return layer


def weights_sha256(model: keras.Model) -> str:
    """sha256 over the values of the model's weights, in the model's order (with each one's
    dtype and shape): independent of file format, of variable and layer names (Keras numbers
    layers per process: ``normalization_2``), and changed by any one weight's value."""
    import keras

    return sha256_arrays(keras.ops.convert_to_numpy(weight) for weight in model.weights)


def _derived_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th initializer of a model built with ``seed`` (31 bits)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def random_weights(model: keras.Model, seed: int) -> keras.Model:
    """``model``'s architecture with fresh random weights that depend only on ``seed``.

    The model is rebuilt from its config with every initializer given its own seed, derived
    from ``seed`` and the initializer's place in the config, so the weights are equal in
    every process, thread and engine. (Keras' unseeded initializers draw their seeds from
    Python's global ``random``, which a Dask worker's other threads use too: a one-worker
    Dask run built other weights than the local run of the same ``--seed``.)
    """
    import keras

    count = itertools.count()

    def seeded(node: Any) -> Any:
        if isinstance(node, list):
            return [seeded(value) for value in node]
        if not isinstance(node, dict):
            return node
        node = {key: seeded(value) for key, value in node.items()}
        config = node.get("config")
        if node.get("module") == "keras.initializers" and "seed" in (config or {}):
            node["config"] = {**config, "seed": _derived_seed(seed, next(count))}
        return node

    keras.utils.set_random_seed(seed)  # for initializers that take no seed
    return type(model).from_config(seeded(model.get_config()))


def _pool(tensor, pooling: str, suffix: str = ""):
    import keras

    if len(tensor.shape) == 4:
        pool = (
            keras.layers.GlobalAveragePooling2D
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling2D
        )
        return pool(name=f"bottleneck_pool{suffix}")(tensor)
    if len(tensor.shape) != 2:
        return keras.layers.Flatten(name=f"bottleneck_flatten{suffix}")(tensor)
    return tensor


def check_layers(model: keras.Model, layers: Sequence[str]) -> None:
    """Refuse layer names ``model`` does not have, in one line naming close ones.

    Raises
    ------
    BaseModelError
        Naming every missing layer, the closest names (difflib) and the last layers.
    """
    names = [lyr.name for lyr in model.layers]
    missing = [layer for layer in layers if layer not in names]
    if not missing:
        return
    hints = "".join(did_you_mean(layer, names) for layer in missing)
    word = "layer" if len(missing) == 1 else "layers"
    raise BaseModelError(
        f"{word} {', '.join(map(repr, missing))} not found in {model.name}.{hints} "
        f"Received: layer={', '.join(layers)}; its last layers are: {', '.join(names[-12:])} "
        f"({len(names)} layers in all)"
    )


def _cut(model: keras.Model, layer: str | None):
    """The tensor at the cut: ``layer``'s output; by default the input of a classifier's last
    layer, or a headless model's output."""
    if layer is None:
        return model.layers[-1].input if _has_head(model) else model.output
    check_layers(model, [layer])
    return model.get_layer(layer).output


def _assemble(
    backbone: keras.Model,
    layer: str | None,
    pooling: str,
    affine: tuple[np.ndarray, np.ndarray],
    name: str,
) -> keras.Model:
    """raw pixels -> affine preprocessing -> backbone cut at ``layer`` -> pooled features."""
    import keras

    trunk = keras.Model(backbone.inputs, _cut(backbone, layer), name=f"{backbone.name}_cut")
    trunk.trainable = False
    inputs = keras.Input(shape=backbone.input_shape[1:], name="pixels")
    x = inputs
    preprocess = _affine_layer(*affine)
    if preprocess is not None:
        x = preprocess(x)
    features = _pool(trunk(x), pooling)
    return keras.Model(inputs, features, name=f"{_key(name)}_features")


def _has_head(model: keras.Model) -> bool:
    """Whether a model ends in a classifier layer to remove (rank-2 output)."""
    return len(model.output.shape) == 2


def _check_enum(value: str, valid: tuple[str, ...], option: str) -> None:
    if value not in valid:
        raise BaseModelError(
            f"invalid --{option}. Received: {option}={value!r}; valid: {', '.join(valid)}"
        )
