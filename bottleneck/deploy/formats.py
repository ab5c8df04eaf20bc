"""Export formats converted from the Keras model: SavedModel, TFLite and ONNX.

``bottleneck export CACHE -o OUT --format saved-model|tflite|onnx`` converts the same model as
the ``.keras`` export (uint8 images of any size -> class scores) with Keras' own
``Model.export``, then runs the converted file with its runtime in the export's parity check.

============ ============== ============================== ==================================
form         ``-o``          metadata                       runs with
============ ============== ============================== ==================================
saved-model  a folder        ``bottleneck.json`` inside     ``tf.saved_model.load(DIR).serve``
tflite       ``*.tflite``    TFLite metadata ``bottleneck`` ``tf.lite.Interpreter`` / LiteRT
onnx         ``*.onnx``      ``metadata_props`` bottleneck  ``onnxruntime.InferenceSession``
============ ============== ============================== ==================================

:func:`deploy.exported.load_exported` loads each form back (``bottleneck predict model.onnx``):
:func:`converter_for` recognises it from the path, ``Converter.read_metadata`` (the inverse
of ``finish``) reads the metadata back, ``Converter.check_graph`` reads its ops and refuses any
off the allow-list of :mod:`bottleneck_transfer.graphs` (unless ``--trust-graph``: a graph is
a program), both without loading it; then its ``runner`` runs it.

The resize inside: Keras' ``Resizing(antialias=True)`` is TensorFlow's ``ScaleAndTranslate``,
which neither TFLite nor tf2onnx converts, and TFLite's own ``RESIZE_BILINEAR`` does not
antialias (measured on 90-299 px texture crops into the 28 px Fashion-MNIST base: 66 % of its
predictions agree with the cache pipeline's, against 99 % for the antialiased resize; README,
"Export"). The TFLite and ONNX models therefore resize with
:class:`deploy.resize.TriangleResize`: the same antialiased bilinear filter written as two
matrix products (ops both converters support), equal to Keras' layer up to a rare rounding
tie (at most 1 grey level). At the base size every resize is the identity.

All three need TensorFlow as the Keras backend; ONNX also needs ``tf2onnx``, ``onnx`` and
``onnxruntime`` (``pip install 'bottleneck-transfer[onnx]'``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.cache.tables import require
from bottleneck_transfer.graphs import check_onnx, check_saved_model, check_tflite

if TYPE_CHECKING:
    import keras

#: Name of the metadata entry (TFLite, ONNX) or file (SavedModel, ``.json``) of an export.
METADATA_NAME = "bottleneck"
#: How the ``.keras``, folder and SavedModel forms resize images of other sizes.
KERAS_RESIZE = "bilinear, antialiased (Keras Resizing)"


@dataclass(frozen=True)
class Converter:
    """One converted export form: where it goes and what it needs."""

    name: str
    #: The suffix ``-o`` must have; ``""``: a folder.
    suffix: str
    #: ``keras.Model.export`` format.
    keras_format: str
    #: Whether its converter needs :class:`deploy.resize.TriangleResize` instead of Keras'
    #: ``Resizing``.
    triangle_resize: bool
    #: Stores the metadata in the converted file (and any fix-up after the conversion).
    finish: Callable[[Path, str], None]
    #: The inverse of ``finish``: the metadata JSON it stored, ``None`` when there is none.
    read_metadata: Callable[[Path], str | None]
    #: Loads the converted file with its runtime.
    runner: Callable[[Path], Runner]
    #: Refuses a file whose graph holds ops off the allow-list (``trusted=True``: no check);
    #: reads the file only, runs nothing.
    check_graph: Callable[..., None]
    #: Modules it needs beyond TensorFlow (the ``[onnx]`` extra).
    packages: tuple[str, ...] = ()
    #: Modules that read and run it (TensorFlow for TFLite: its flatbuffer reader; onnx to
    #: read an ONNX model's operators).
    runtime: tuple[str, ...] = ("tensorflow",)
    #: A file inside a folder form that shows the folder is one (``""``: a file form).
    marker: str = ""

    def check_available(self) -> None:
        """Raise one line when this process cannot write the form."""
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise ExportError(
                f"--format {self.name} needs TensorFlow as the Keras backend, this process "
                f"runs {backend}: rerun with KERAS_BACKEND=tensorflow (or export a .keras file)"
            )
        for module in self.packages:
            require(module, extra=self.name)

    @property
    def resize(self) -> str:
        """How the exported model resizes images of other sizes (recorded in its metadata)."""
        if self.triangle_resize:
            return "bilinear, antialiased (TriangleResize: as Keras Resizing, in matrix products)"
        return KERAS_RESIZE

    def resize_layer(self, image_size: tuple[int, int]) -> keras.layers.Layer | None:
        """The ``resize`` layer the converted model needs (``None``: Keras' own)."""
        from bottleneck_transfer.deploy.resize import TriangleResize

        return TriangleResize(*image_size, name="resize") if self.triangle_resize else None

    def write(self, model: keras.Model, target: Path, metadata: dict) -> None:
        """Convert ``model`` to ``target`` and store ``metadata`` in it."""
        model(np.zeros((1, 1, 1, model.input_shape[-1]), np.uint8))  # Keras exports called models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(str(target), format=self.keras_format, verbose=False)
        self.finish(target, json.dumps(metadata, sort_keys=True))

    def recognises(self, path: Path) -> bool:
        """Whether ``path`` is of this form: a file with its suffix, a folder with its marker."""
        if self.marker:
            return (path / self.marker).is_file()
        return path.suffix == self.suffix and not path.is_dir()

    def check_runtime(self) -> None:
        """Raise one line (how to install) when this process cannot read and run the form."""
        for module in self.runtime:
            require(module, extra=self.name if module in self.packages else None)

    def load(self, path: Path) -> Runner:
        """The converted file, loaded with its own runtime."""
        return self.runner(path)


def converter_for(path: Path) -> Converter | None:
    """The converted form ``path`` is (by suffix, or a folder's marker file), else ``None``."""
    return next((c for c in CONVERTERS.values() if c.recognises(path)), None)


# ----------------------------------------------------------------------------- writing


def _finish_saved_model(target: Path, metadata: str) -> None:
    (target / f"{METADATA_NAME}.json").write_text(metadata + "\n", encoding="utf-8")


def _finish_tflite(target: Path, metadata: str) -> None:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(target))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata.encode("utf-8"), np.uint8)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers)
    model.buffers.append(buffer)
    model.metadata = [*(model.metadata or []), entry]
    flatbuffer_utils.write_model(model, str(target))


def _finish_onnx(target: Path, metadata: str) -> None:
    import onnx

    model = onnx.load(str(target))
    onnx.helper.set_model_props(model, {METADATA_NAME: metadata})
    onnx.save(model, str(target))


# ----------------------------------------------------------------------------- reading


def _read_saved_model(path: Path) -> str | None:
    metadata = path / f"{METADATA_NAME}.json"
    return metadata.read_text(encoding="utf-8") if metadata.is_file() else None


def _read_tflite(path: Path) -> str | None:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            return bytes(model.buffers[entry.buffer].data).decode("utf-8")
    return None


def _read_onnx(path: Path) -> str | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # parsed, not run
    return next((p.value for p in model.metadata_props if p.key == METADATA_NAME), None)


# ----------------------------------------------------------------------------- running


class Runner(Protocol):
    """A converted export run by its own runtime."""

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Scores ``(N, K)`` of a uint8 batch ``(N, H, W, C)``."""


class SavedModelRunner:
    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(path))  # its functions need it alive

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self._loaded.serve(np.asarray(pixels, np.uint8)), np.float32)


class TFLiteRunner:
    """LiteRT's interpreter when ``ai-edge-litert`` is installed, else TensorFlow's."""

    def __init__(self, path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TensorFlow's interpreter warns it is deprecated
            self._interpreter = Interpreter(model_path=str(path))
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, np.uint8)
        if pixels.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input, pixels.shape)
            self._interpreter.allocate_tensors()
            self._shape = pixels.shape
        self._interpreter.set_tensor(self._input, pixels)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output), np.float32)


class ONNXRunner:
    def __init__(self, path: Path) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        feed = {self._input: np.asarray(pixels, np.uint8)}
        return np.asarray(self._session.run(None, feed)[0], np.float32)


CONVERTERS = {
    converter.name: converter
    for converter in (
        Converter(
            "saved-model",
            suffix="",
            keras_format="tf_saved_model",
            triangle_resize=False,
            finish=_finish_saved_model,
            read_metadata=_read_saved_model,
            runner=SavedModelRunner,
            check_graph=check_saved_model,
            marker="saved_model.pb",
        ),
        Converter(
            "tflite",
            suffix=".tflite",
            keras_format="litert",
            triangle_resize=True,
            finish=_finish_tflite,
            read_metadata=_read_tflite,
            runner=TFLiteRunner,
            check_graph=check_tflite,
        ),
        Converter(
            "onnx",
            suffix=".onnx",
            keras_format="onnx",
            triangle_resize=True,
            finish=_finish_onnx,
            read_metadata=_read_onnx,
            runner=ONNXRunner,
            check_graph=check_onnx,
            packages=("tf2onnx", "onnx", "onnxruntime"),
            runtime=("onnx", "onnxruntime"),
        ),
    )
}
