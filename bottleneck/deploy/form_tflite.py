"""The TFLite export as on-device pipelines take it: a fixed input shape, optionally quantized.

The input is uint8 ``[batch, H, W, C]`` at the base size (``--batch``, default 1): mobile
pipelines (ML Kit, the Task Library, MediaPipe) read the model's input size from the tensor
and refuse a dynamic one (``[1, 1, 1, 1]`` before resizing). Images are resized to ``H x W``
before they go in (antialiased bilinear, as ``predict`` and extraction do), so the model
holds no resize. The metadata states the input (shape, dtype, normalisation mean 0 and std 1
on 0-255 pixels: the base's own preprocessing is inside) and the labels (``classes``).

``--quantize`` (TensorFlow's post-training quantization):

=========== ===========================================================================
dynamic     weights int8, activations float (dynamic range quantization)
float16     weights float16, computed in float32 (or float16 on a GPU delegate)
int8        weights and activations int8, calibrated on training images of the cache's
            source (:data:`CALIBRATION` of them, rows spread over the cache); the uint8
            input and float32 output stay
=========== ===========================================================================

``export`` measures what quantization costs on cached images not used for calibration
(:func:`deploy.parity.check_quantized`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy.settings import ExportSettings
from bottleneck_transfer.errors import ExportError

if TYPE_CHECKING:
    import keras

#: Training images that calibrate int8 quantization.
CALIBRATION = 200


def write_tflite(
    model: keras.Model, target: Path, metadata: dict, settings: ExportSettings
) -> None:
    """Convert ``model`` with Keras (LiteRT) at a fixed ``[batch, H, W, C]`` uint8 input."""
    import tensorflow as tf

    height, width, channels = metadata["input_shape"]
    shape = (settings.batch, height, width, channels)
    model.export(
        str(target),
        format="litert",
        verbose=False,
        input_signature=[tf.TensorSpec(shape, tf.uint8, name="image")],
        **converter_options(settings),
    )


def converter_options(settings: ExportSettings) -> dict[str, Any]:
    """``tf.lite.TFLiteConverter`` attributes for ``settings.quantize``."""
    import tensorflow as tf

    if settings.quantize is None:
        return {}
    options: dict[str, Any] = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if settings.quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif settings.quantize == "int8":
        if settings.calibration is None or len(settings.calibration) < settings.batch:
            raise ExportError(
                "--quantize int8 needs training images to calibrate on: export from a cache "
                "whose source is reachable"
            )
        options["representative_dataset"] = lambda: _batches(settings)
    return options


def _batches(settings: ExportSettings) -> Iterator[list[Any]]:
    pixels, batch = settings.calibration, settings.batch
    for start in range(0, len(pixels) - batch + 1, batch):
        yield [pixels[start : start + batch]]
