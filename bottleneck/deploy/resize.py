"""The antialiased resize that TFLite and ONNX exports use (see :mod:`deploy.formats`)."""

from __future__ import annotations

from typing import Any

import keras


class TriangleResize(keras.layers.Layer):
    """Antialiased bilinear resize of uint8 images to ``(height, width)``, as matrix products.

    The weights are TensorFlow's ``scale_and_translate`` triangle kernel (the one
    ``keras.layers.Resizing(antialias=True)`` uses): output pixel ``i`` of ``n_out`` averages
    input pixels ``j`` of ``n_in`` with weight ``max(0, 1 - |j + 0.5 - (i + 0.5) s| / max(s,
    1))``, ``s = n_in / n_out``, each row normalised; then rounded to uint8 values as Keras
    does. Built from ``keras.ops`` that TFLite and ONNX convert, for any input size.
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    @staticmethod
    def _weights(n_in: Any, n_out: int) -> Any:
        scale = keras.ops.cast(n_in, "float32") / n_out
        centres = (keras.ops.arange(n_out, dtype="float32") + 0.5) * scale
        positions = keras.ops.cast(keras.ops.arange(n_in), "float32") + 0.5
        distance = keras.ops.abs(positions[None, :] - centres[:, None])
        weights = keras.ops.relu(1.0 - distance / keras.ops.maximum(scale, 1.0))
        return weights / keras.ops.sum(weights, axis=1, keepdims=True)

    def call(self, images: Any) -> Any:
        shape = keras.ops.shape(images)
        x = keras.ops.cast(images, "float32")
        x = keras.ops.einsum("hH,nHWc->nhWc", self._weights(shape[1], self.height), x)
        x = keras.ops.einsum("wW,nhWc->nhwc", self._weights(shape[2], self.width), x)
        return keras.ops.clip(keras.ops.round(x), 0.0, 255.0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "height": self.height, "width": self.width}
