"""Export formats converted from the Keras model: SavedModel, TFLite and ONNX.

``bottleneck export CACHE -o OUT --format saved-model|tflite|onnx`` converts the same model as
the ``.keras`` export (uint8 images of any size -> class scores) with Keras' own
``Model.export``, then runs the converted file with its runtime in the export's parity check.

============ =============== ============================== ========================================
form         ``-o``          metadata                       runs with
============ =============== ============================== ========================================
saved-model  ``DIR`` (DIR/N) ``bottleneck.json`` inside     ``tf.saved_model.load(DIR/N).serve``
tflite       ``*.tflite``    TFLite metadata ``bottleneck`` ``tf.lite.Interpreter`` / LiteRT
onnx         ``*.onnx``      ``metadata_props`` bottleneck  ``onnxruntime.InferenceSession``
============ =============== ============================== ========================================

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

What serving and mobile stacks expect of each form (:class:`ExportSettings` carries the
options): the SavedModel goes into a numeric version folder (``OUT/1/``, then ``OUT/2/``...)
with a ``serving_default`` signature that takes encoded image bytes
(:mod:`deploy.form_saved_model`); the TFLite model takes a fixed ``[batch, H, W, C]`` uint8
input (``--batch``, default 1) and may be quantized (``--quantize``,
:mod:`deploy.form_tflite`); the ONNX graph has a named input ``image`` and outputs
``probabilities``, ``label`` and ``label_index``, batch axis ``batch``
(:mod:`deploy.form_onnx`). Each states its input tensor in the metadata (``input``:
:meth:`Converter.input_metadata`).

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
from bottleneck_transfer.deploy import form_onnx, form_saved_model, form_tflite
from bottleneck_transfer.deploy.settings import OUTPUT_NAMES, PIXELS, ExportSettings
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
    #: How the converted model resizes: ``"keras"`` (Keras' ``Resizing``), ``"triangle"``
    #: (:class:`deploy.resize.TriangleResize`, for converters without Keras' op) or
    #: ``"fixed"`` (none: the input is fixed at the base size).
    resizing: str
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
    #: Writes the converted file (``(model, target, metadata, settings)``); ``None``: Keras'
    #: ``Model.export`` in ``keras_format``.
    convert: Callable[..., None] | None = None
    #: The :class:`ExportSettings` fields it takes beyond their defaults.
    settings: tuple[str, ...] = ()
    #: Its outputs, by name (TFLite: one tensor, the scores).
    output_names: tuple[str, ...] = OUTPUT_NAMES
    #: The path an export to ``-o OUT`` goes to (the SavedModel: a version folder inside).
    place: Callable[[Path], Path] = Path
    #: The export inside a given path (the SavedModel: its newest version folder), or None.
    locate: Callable[[Path], Path | None] | None = None

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
        if self.resizing == "triangle":
            return "bilinear, antialiased (TriangleResize: as Keras Resizing, in matrix products)"
        if self.resizing == "fixed":
            return "none: the input is fixed at the base size; resize images before (antialiased)"
        return KERAS_RESIZE

    def resize_layer(self, image_size: tuple[int, int]) -> keras.layers.Layer | None:
        """The ``resize`` layer the converted model needs (``None``: Keras' own)."""
        import keras
        from bottleneck_transfer.deploy.resize import TriangleResize

        if self.resizing == "fixed":
            return keras.layers.Identity(name="resize")
        return TriangleResize(*image_size, name="resize") if self.resizing == "triangle" else None

    def input_metadata(self, input_shape: list[int], settings: ExportSettings) -> dict:
        """The input tensor as the metadata states it: name, shape (axis names where
        dynamic), dtype and scaling."""
        height, width, channels = input_shape
        if self.resizing == "fixed":
            shape: list = [settings.batch, height, width, channels]
        else:
            shape = ["batch", "height", "width", channels]
        return {"name": "image", "shape": shape, **PIXELS}

    def write(
        self, model: keras.Model, target: Path, metadata: dict, settings: ExportSettings
    ) -> None:
        """Convert ``model`` to ``target`` and store ``metadata`` in it."""
        model(np.zeros((1, *metadata["input_shape"]), np.uint8))  # Keras exports called models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.convert is not None:
                self.convert(model, target, metadata, settings)
            else:
                model.export(str(target), format=self.keras_format, verbose=False)
        self.finish(target, json.dumps(metadata, sort_keys=True))

    def recognises(self, path: Path) -> bool:
        """Whether ``path`` is of this form: a file with its suffix, a folder with its marker
        (or, for a folder of versions, its newest version has it)."""
        if self.marker:
            return (path / self.marker).is_file() or (
                self.locate is not None and self.locate(path) is not None
            )
        return path.suffix == self.suffix and not path.is_dir()

    def check_runtime(self) -> None:
        """Raise one line (how to install) when this process cannot read and run the form."""
        for module in self.runtime:
            require(module, extra=self.name if module in self.packages else None)

    def load(self, path: Path) -> Runner:
        """The converted file, loaded with its own runtime."""
        return self.runner(path)

    def resolve(self, path: Path) -> Path:
        """The export a given path means (the newest version inside a versions folder)."""
        if self.marker and not (path / self.marker).is_file() and self.locate is not None:
            return self.locate(path) or path
        return path


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
    props = {p.key: p.value for p in model.metadata_props}  # keeps form_onnx's "classes"
    onnx.helper.set_model_props(model, {**props, METADATA_NAME: metadata})
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
        out = self._loaded.serve(np.asarray(pixels, np.uint8))
        if isinstance(out, dict):  # the scores: probabilities, or a regression's values
            out = out["probabilities"] if "probabilities" in out else out["values"]
        return np.asarray(out, np.float32)


class TFLiteRunner:
    """LiteRT's interpreter when ``ai-edge-litert`` is installed, else TensorFlow's.

    A fixed input shape (``[batch, H, W, C]``) runs in chunks of ``batch`` images, the last
    padded; a dynamic one (an export before fixed shapes) is resized to each batch.
    """

    def __init__(self, path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TensorFlow's interpreter warns it is deprecated
            self._interpreter = Interpreter(model_path=str(path))
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        signature = tuple(int(n) for n in details["shape_signature"])
        self._fixed = None if -1 in signature else signature
        self._shape: tuple[int, ...] | None = None
        if self._fixed is not None:
            self._interpreter.allocate_tensors()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, np.uint8)
        if self._fixed is None:
            return self._run(pixels, resize=True)
        batch = self._fixed[0]
        if pixels.shape[1:] != self._fixed[1:]:
            raise ExportError(
                f"this TFLite export takes images of shape {list(self._fixed[1:])}, got "
                f"{list(pixels.shape[1:])}: resize them to the base size first"
            )
        out = []
        for start in range(0, len(pixels), batch):
            chunk = pixels[start : start + batch]
            pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), np.uint8)
            padded = np.concatenate([chunk, pad])
            out.append(self._run(padded)[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _run(self, pixels: np.ndarray, resize: bool = False) -> np.ndarray:
        if resize and pixels.shape != self._shape:
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
        self._output = self._session.get_outputs()[0].name  # the scores (``probabilities``)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        feed = {self._input: np.asarray(pixels, np.uint8)}
        return np.asarray(self._session.run([self._output], feed)[0], np.float32)


CONVERTERS = {
    converter.name: converter
    for converter in (
        Converter(
            "saved-model",
            suffix="",
            keras_format="tf_saved_model",
            resizing="keras",
            finish=_finish_saved_model,
            read_metadata=_read_saved_model,
            runner=SavedModelRunner,
            check_graph=check_saved_model,
            marker="saved_model.pb",
            convert=form_saved_model.write_saved_model,
            place=form_saved_model.next_version,
            locate=form_saved_model.newest_version,
        ),
        Converter(
            "tflite",
            suffix=".tflite",
            keras_format="litert",
            resizing="fixed",
            finish=_finish_tflite,
            read_metadata=_read_tflite,
            runner=TFLiteRunner,
            check_graph=check_tflite,
            convert=form_tflite.write_tflite,
            settings=("batch", "quantize"),
            output_names=("probabilities",),
        ),
        Converter(
            "onnx",
            suffix=".onnx",
            keras_format="onnx",
            resizing="triangle",
            finish=_finish_onnx,
            read_metadata=_read_onnx,
            runner=ONNXRunner,
            check_graph=check_onnx,
            packages=("tf2onnx", "onnx", "onnxruntime"),
            runtime=("onnx", "onnxruntime"),
            convert=form_onnx.write_onnx,
        ),
    )
}
