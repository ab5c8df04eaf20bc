"""A text backbone's tokens pooled to one vector per text, as a Keras model.

:func:`token_pooling`'s layer reduces ``(N, T, D)`` tokens with their padding mask ``(N, T)``:
``cls`` the first token, ``mean`` the mean over non-padding tokens, ``last-token`` the last
non-padding token (right padding: what a decoder-only model's last position has seen).
It is a registered Keras layer (no Lambda), so a model holding it loads in safe mode.

:func:`strings_in`'s layer is the front of an export that takes raw strings: the preset's
preprocessor (its tokenizer and packer, vocabulary saved with the model) -> the backbone's int
inputs padded to ``max_length``. Its output spec is declared, so a saved model is rebuilt
without tokenizing (the vocabulary is loaded after the graph is), and TensorFlow runs it (the
tokenizers are TensorFlow Text ops).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases.common import _key, check_layers

if TYPE_CHECKING:
    import keras
    from bottleneck_transfer.features.bases.text import TextEncoder

#: Poolings over tokens (``pooled`` is a backbone's own pooled output instead).
TOKEN_POOLINGS = ("cls", "mean", "last-token")


@functools.cache
def token_pooling() -> type:
    """The :class:`TokenPooling` layer class, defined (and registered with Keras) on first use,
    so that importing this module imports no Keras."""
    import keras

    @keras.saving.register_keras_serializable(package="bottleneck_transfer")
    class TokenPooling(keras.layers.Layer):
        """``(N, T, D)`` tokens and their ``(N, T)`` padding mask -> ``(N, D)`` (see module)."""

        def __init__(self, mode: str = "mean", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if mode not in TOKEN_POOLINGS:
                raise ValueError(f"mode must be one of {TOKEN_POOLINGS}. Received: mode={mode!r}")
            self.mode = mode

        def call(self, tokens: Any, padding_mask: Any) -> Any:
            ops = keras.ops
            if self.mode == "cls":
                return tokens[:, 0, :]
            mask = ops.cast(padding_mask, tokens.dtype)
            if self.mode == "mean":
                total = ops.sum(tokens * mask[:, :, None], axis=1)
                return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
            last = ops.maximum(ops.cast(ops.sum(mask, axis=1), "int32") - 1, 0)
            return ops.take_along_axis(tokens, last[:, None, None], axis=1)[:, 0, :]

        def compute_output_shape(self, tokens_shape: Any, padding_mask_shape: Any = None) -> tuple:
            return (tokens_shape[0], tokens_shape[-1])

        def get_config(self) -> dict:
            return {**super().get_config(), "mode": self.mode}

    return TokenPooling


@functools.cache
def strings_layer() -> type:
    """The :class:`StringsIn` layer class, defined (and registered) on first use."""
    import keras

    @keras.saving.register_keras_serializable(package="bottleneck_transfer")
    class StringsIn(keras.layers.Layer):
        """``(N,)`` strings -> the backbone's int32 inputs ``(N, length)`` (see module);
        ``generate``: a decoder-only family's ``CausalLMPreprocessor.generate_preprocess``."""

        def __init__(
            self, preprocessor: Any, inputs: list[str], generate: bool = False, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.preprocessor = preprocessor
            self.inputs = list(inputs)
            self.generate = generate

        def build(self, input_shape: Any = None) -> None:
            self.built = True  # the preprocessor holds no weights to build

        def call(self, texts: Any) -> dict:
            pre = self.preprocessor
            out = pre.generate_preprocess(texts) if self.generate else pre(texts)
            ids = keras.ops.cast(out["token_ids"], "int32")
            return {
                k: keras.ops.cast(out[k], "int32") if k in out else ids * 0 for k in self.inputs
            }

        def compute_output_spec(self, texts: Any) -> dict:
            shape = (texts.shape[0], self.preprocessor.sequence_length)
            return {key: keras.KerasTensor(shape, "int32") for key in self.inputs}

        def get_config(self) -> dict:
            preprocessor = keras.saving.serialize_keras_object(self.preprocessor)
            return {**super().get_config(), "preprocessor": preprocessor,
                    "inputs": self.inputs, "generate": self.generate}  # fmt: skip

        @classmethod
        def from_config(cls, config: dict) -> Any:
            config = dict(config)
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
            return cls(**config)

    return StringsIn


def text_layers() -> dict[str, type]:
    """Define and register this module's layers (a model holding them loads only after
    this: ``keras.saving.load_model`` imports KerasHub by itself, not this package); their
    registered names -> classes, usable as ``custom_objects``."""
    return {
        "bottleneck_transfer>TokenPooling": token_pooling(),
        "bottleneck_transfer>StringsIn": strings_layer(),
    }


def strings_in(encoder: TextEncoder) -> keras.layers.Layer:
    """The layer that tokenizes raw strings as ``encoder`` does (its preset's preprocessor at
    its ``max_length``), named ``tokenize``."""
    preprocessor = getattr(encoder.preprocess, "__self__", encoder.preprocess)
    generate = preprocessor is not encoder.preprocess  # a bound generate_preprocess
    return strings_layer()(preprocessor, list(encoder.inputs), generate, name="tokenize")


def text_model(backbone: keras.Model, pooling: str, layer: str | None, name: str) -> keras.Model:
    """token ids (and the backbone's other int inputs) -> the backbone (cut at ``layer``) ->
    pooled features ``(N, D)``."""
    import keras

    inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in backbone.input}
    trunk = backbone
    if layer is not None:
        check_layers(backbone, [layer])
        trunk = keras.Model(backbone.input, backbone.get_layer(layer).output, name=f"{name}_cut")
    trunk.trainable = False
    out = trunk(inputs)
    if pooling == "pooled":
        if not isinstance(out, dict) or "pooled_output" not in out:
            raise BaseModelError(
                f"--pooling pooled takes the backbone's own pooled output; {name}"
                f"{' cut at ' + layer if layer else ''} has none. Received: pooling='pooled'; "
                f"use one of {', '.join(TOKEN_POOLINGS)}"
            )
        features = out["pooled_output"]
    else:
        tokens = out["sequence_output"] if isinstance(out, dict) else out
        if len(tokens.shape) != 3:
            raise BaseModelError(
                f"{name}{' at ' + layer if layer else ''} gives {tuple(tokens.shape[1:])}, "
                "not tokens (N, T, D): cut at a transformer layer"
            )
        pool = token_pooling()(pooling, name="bottleneck_pool")
        features = pool(tokens, inputs["padding_mask"])
    return keras.Model(inputs, features, name=f"{_key(name)}_features")
