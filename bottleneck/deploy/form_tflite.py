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
            input and float32 output stay, and dense layers (the head) stay float
            (:data:`FLOAT_OPS`)
=========== ===========================================================================

``export`` measures what quantization costs on cached images not used for calibration
(:func:`deploy.parity.check_quantized`).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy.settings import ExportSettings
from bottleneck_transfer.errors import ExportError

if TYPE_CHECKING:
    import keras

#: Training images that calibrate int8 quantization.
CALIBRATION = 200
#: Ops that int8 quantization leaves in float (see :func:`_int8`).
FLOAT_OPS = ("FULLY_CONNECTED",)


def write_tflite(
    model: keras.Model, target: Path, metadata: dict, settings: ExportSettings
) -> None:
    """Convert ``model`` at a fixed ``[batch, H, W, C]`` uint8 input, as Keras' LiteRT export
    does (a SavedModel, then ``TFLiteConverter.from_saved_model``), quantized as asked."""
    import keras
    import tensorflow as tf

    height, width, channels = metadata["input_shape"]
    spec = tf.TensorSpec((settings.batch, height, width, channels), tf.uint8, name="image")
    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve", functools.partial(model.__call__, training=False), input_signature=[spec]
        )
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,  # refused at load by graphs.check_tflite if used
        ]
        converter.experimental_enable_resource_variables = True
        for name, value in converter_options(settings).items():
            setattr(converter, name, value)
        if settings.quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        int8 = settings.quantize == "int8"
        target.write_bytes(_int8(converter, settings) if int8 else converter.convert())


def converter_options(settings: ExportSettings) -> dict[str, Any]:
    """``tf.lite.TFLiteConverter`` attributes for ``settings.quantize``."""
    import tensorflow as tf

    if settings.quantize is None:
        return {}
    options: dict[str, Any] = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if settings.quantize == "int8":
        if settings.calibration is None or len(settings.calibration) < settings.batch:
            raise ExportError(
                "--quantize int8 needs training images to calibrate on: export from a cache "
                "whose source is reachable"
            )
        options["representative_dataset"] = lambda: _batches(settings)
    return options


def _int8(converter: Any, settings: ExportSettings) -> bytes:
    """Full-integer quantization with the ``FULLY_CONNECTED`` ops kept in float.

    The head holds its StandardScaler folded into its weights (``w / std``): a feature of
    tiny variance gets a weight thousands of times the others, and TFLite's per-tensor int8
    weights of a dense layer then round the others to zero (measured on the demo: top-1
    accuracy 0.947 -> 0.645; kept in float, 0.945). Convolutions stay int8.
    """
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: _batches(settings),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS)),
    )
    return debugger.get_nondebug_quantized_model()


def _batches(settings: ExportSettings) -> Iterator[list[Any]]:
    pixels, batch = settings.calibration, settings.batch
    for start in range(0, len(pixels) - batch + 1, batch):
        yield [pixels[start : start + batch]]
