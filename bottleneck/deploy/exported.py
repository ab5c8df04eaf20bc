"""Exported models: their format, and loading them back (:func:`load_exported`).

**A single ``.keras`` file**, layer by layer::

    image       Input (None, None, C) uint8     raw images of any size (one size per call)
    resize      Resizing(H, W, bilinear, antialias=True)  -> uint8, identity at H x W
    to_float    Rescaling(1.0)                  -> float32 0..255
    <base>      the base cut at the cached layer (its own preprocessing inside), frozen
    head_*      Dense layers: the head with its StandardScaler folded into the weights
    bottleneck_metadata   Dense, identity K x K kernel, no bias: carries the metadata
    probabilities         Activation("softmax")

It loads with a plain ``keras.saving.load_model(path)`` (safe mode, no custom objects, no
Lambda layers, backend-agnostic ops only); ``model.predict(uint8_images)`` returns an
``(N, K)`` array. The class names and provenance travel inside the model as JSON::

    import json, keras
    model = keras.saving.load_model("model.keras")
    meta = json.loads(model.get_layer("bottleneck_metadata").bias_initializer.value)
    meta["classes"]   # column k of model.predict(...) is the class meta["classes"][k]

or, with this package, ``load_exported(path).class_names``; every export also has the class
names, one per line in column order, in a plain text file (:func:`labels_path`).

Why there: Keras offers no free-form metadata field. The model ``name`` cannot hold it (on
TensorFlow it becomes a root name scope, which must match ``[A-Za-z0-9.][A-Za-z0-9_.>-]*``:
no spaces, quotes or slashes, so ``predict`` fails), a file added to the ``.keras`` zip is
invisible to ``load_model``, and ``StringLookup`` needs TensorFlow. The carrier layer has no
bias (``use_bias=False``), so its ``bias_initializer`` (a ``Constant`` holding the JSON
string) is stored in the config and never evaluated; its kernel is the identity, which passes
the scores through exactly (each output is one product by 1.0 plus zeros).

**A text base's ``.keras`` file** takes raw strings instead: ``text`` Input ``()`` string ->
``tokenize`` (the preset's preprocessor: tokenizer, vocabulary and packer, padding to its
``max_length``) -> the base pooled as in extraction -> the same head, metadata and output
layers. It loads with ``keras.saving.load_model`` on the TensorFlow backend
once this package's layers are registered (``features.bases.text_model.text_layers()``;
Keras imports KerasHub itself); ``model.predict(np.array(texts, dtype=object))``. Its
metadata's ``base.input`` is ``"text"``.

**A folder** (heads without an exact Keras form): ``base.keras`` (the same front end and
base, features out), ``head.skops`` (the fitted scikit-learn head, saved with skops, never
pickle; loaded with the exact classes its head kind declares in the head registry, see
:func:`~bottleneck_transfer.heads.trust.load_trusted`) and ``model.json`` (classes,
outputs, head, cache fingerprint, base description, versions).

**A converted form** (``--format saved-model|tflite|onnx``, :mod:`deploy.formats`): the same
model in that runtime's file, the same metadata stored in it; loaded with its own runtime
(TFLite's interpreter, onnxruntime; a SavedModel's graph with TensorFlow), never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.deploy.formats import METADATA_NAME, Converter, Runner, converter_for
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import ExportError, HeadError
from bottleneck_transfer.features.runtimes import BatchRunner
from bottleneck_transfer.heads.trust import load_trusted

if TYPE_CHECKING:
    import keras

FORMAT = "bottleneck-export"
FORMAT_VERSION = 1
METADATA_LAYER = "bottleneck_metadata"
OUTPUT_LAYER = "probabilities"
FOLDER_FILES = ("model.json", "base.keras", "head.skops")
#: The class names file of a folder export (a file export ``NAME.SUFFIX`` has ``NAME.labels.txt``).
LABELS_FILE = "labels.txt"


@dataclass(repr=False)
class Exported(Display):
    """A loaded export: a single Keras model, a folder's base + scikit-learn head, or a
    converted form's runner (``kind`` ``"saved-model"``, ``"tflite"`` or ``"onnx"``).

    :meth:`predict` maps a uint8 batch ``(N, H, W, C)`` at :attr:`image_size` to ``(N, K)``
    scores in the order of :attr:`class_names`.
    """

    path: Path
    kind: str
    metadata: dict
    model: keras.Model | None = None
    head: Any = None
    runner: Runner | None = None

    @property
    def class_names(self) -> list[str]:
        """The class of each output column, in order."""
        return list(self.metadata["classes"])

    @property
    def modality(self) -> str:
        """``"image"`` (uint8 pixels in) or ``"text"`` (raw strings in)."""
        return "text" if self.metadata.get("base", {}).get("input") == "text" else "image"

    def _display_summary(self) -> dict[str, Any]:
        height, width = self.image_size
        shown = f"uint8 {height}x{width}x{self.channels}"
        return {
            "path": str(self.path),
            "kind": self.kind,
            "input": f"strings, up to {height} tokens" if self.modality == "text" else shown,
            "head": self.metadata.get("head"),
            "outputs": self.metadata.get("outputs"),
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per output column: its index and class name."""
        return [{"output": i, "class": name} for i, name in enumerate(self.class_names)]

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.metadata["input_shape"][:2]
        return int(height), int(width)

    @property
    def channels(self) -> int:
        return int(self.metadata["input_shape"][2])

    @cached_property
    def sized_model(self) -> keras.Model:
        """The model without its ``resize`` layer, for images already at :attr:`image_size`.

        There the resize is the identity (bit-exact), so both give the same outputs; this
        one skips the resize op (about a third of the time of a 28 x 28 base).
        """
        import keras

        try:
            resize = self.model.get_layer("resize")
        except ValueError:
            return self.model
        return keras.Model(resize.output, self.model.output, name=f"{self.model.name}_sized")

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """Head scores of base features (folder exports)."""
        return head_scores(self.head, features)

    def scorer(self, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        """Scores ``(N, K)`` of uint8 batches at :attr:`image_size`, for many batches.

        A Keras model runs as :attr:`sized_model` in one compiled call of ``batch_size``
        images; a converted form with its own runtime.
        """
        if self.runner is not None:
            return self.runner.predict
        if self.modality == "text":
            return self.predict
        run = BatchRunner(self.sized_model, batch_size)
        if self.kind == "folder":
            return lambda pixels: self.scores_from_features(run(pixels))
        return run

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Scores ``(N, K)`` of a uint8 batch (one compiled call per batch size), or of a
        text export's strings."""
        import keras

        if self.modality == "text":
            pixels = check_texts(pixels, self)
        else:
            check_pixels(pixels, self)
        if self.runner is not None:
            return self.runner.predict(pixels)
        out = keras.ops.convert_to_numpy(self.model.predict_on_batch(pixels))
        if self.kind == "folder":
            return self.scores_from_features(np.asarray(out, np.float32))
        return np.asarray(out, np.float32)


def labels_path(export_path: str | Path) -> Path:
    """The class names file of an export: ``labels.txt`` in a folder, else ``NAME.labels.txt``.

    One class name per line, line k naming output column k.
    """
    path = Path(export_path)
    return path / LABELS_FILE if path.is_dir() else path.with_suffix(".labels.txt")


def write_labels(export_path: str | Path, classes: list[str]) -> Path:
    """Write the class names file of an export (:func:`labels_path`), atomically; its path."""
    return atomic_write_text(labels_path(export_path), "\n".join(classes) + "\n")


def check_pixels(pixels: np.ndarray, exported: Exported) -> None:
    """Raise :class:`ExportError` when a batch cannot go into the model."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != exported.channels:
        raise ExportError(
            f"{exported.path} takes images of shape (N, H, W, {exported.channels}); "
            f"got an array of shape {pixels.shape}"
        )


def check_texts(texts: Any, exported: Exported) -> np.ndarray:
    """``texts`` as a 1-d object array of strings, or :class:`ExportError`."""
    array = np.empty(len(texts), dtype=object)
    array[:] = list(texts)
    if not all(isinstance(text, str) for text in array):
        raise ExportError(f"{exported.path} takes raw strings (a text base); got {texts!r:.80}")
    return array


def metadata_layer(metadata: dict, n_classes: int) -> keras.layers.Layer:
    """The identity Dense layer whose unused ``bias_initializer`` holds ``metadata`` as JSON."""
    import keras

    layer = keras.layers.Dense(
        n_classes,
        use_bias=False,
        kernel_initializer="identity",
        bias_initializer=keras.initializers.Constant(json.dumps(metadata, sort_keys=True)),
        trainable=False,
        name=METADATA_LAYER,
    )
    layer.build((None, n_classes))
    layer.set_weights([np.eye(n_classes, dtype=np.float32)])
    return layer


def read_metadata(model: keras.Model, path: str | Path) -> dict:
    """The metadata JSON of an exported ``.keras`` model, or :class:`ExportError`."""
    try:
        layer = model.get_layer(METADATA_LAYER)
        metadata = json.loads(layer.bias_initializer.value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ExportError(
            f"{path} is a Keras model but not a bottleneck export (no readable "
            f"{METADATA_LAYER!r} layer); export one with `bottleneck export`"
        ) from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExportError(f"{path} is a Keras model but not a bottleneck export")
    return metadata


def check_metadata(metadata: dict, path: Path) -> dict:
    """``metadata`` when this version reads it, else :class:`ExportError` naming ``path``."""
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportError(
            f"{path} is a bottleneck export of format version {version}; this bottleneck "
            f"reads version {FORMAT_VERSION}"
        )
    for key in ("classes", "input_shape"):
        if key not in metadata:
            raise ExportError(f"{path}: the export's metadata has no {key!r}")
    return metadata


def _output_columns(exported: Exported) -> int | None:
    """How many scores the export's model gives per image (None when its runtime hides it)."""
    if exported.kind == "folder":
        return len(getattr(exported.head, "classes_", [])) or None
    if exported.kind == "keras":
        return exported.model.output_shape[-1]
    return None


def check_consistent(exported: Exported) -> Exported:
    """``exported`` when its metadata agrees with its model and its labels file.

    Raises
    ------
    ExportError
        If the classes are not distinct names, the input shape not three positive sizes, the
        model gives another number of scores than there are classes, a folder's base takes
        another input shape, or the labels file lists other classes; naming the file.
    """
    path, metadata = exported.path, exported.metadata
    redo = f"re-export it with `bottleneck export ... -o {path.name} --force`"
    classes, shape = metadata["classes"], metadata["input_shape"]
    if not (
        isinstance(classes, list)
        and classes
        and all(isinstance(name, str) for name in classes)
        and len(set(classes)) == len(classes)
    ):
        raise ExportError(
            f"{path}: the metadata's classes must be a list of distinct names; got "
            f"{str(classes)[:80]}: {redo}"
        )
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(size) is int and size > 0 for size in shape)
    ):
        raise ExportError(
            f"{path}: the metadata's input_shape must be [height, width, channels]; got "
            f"{str(shape)[:80]}: {redo}"
        )
    columns = _output_columns(exported)
    if columns is not None and columns != len(classes):
        raise ExportError(
            f"{path}: the metadata names {len(classes)} classes but the model gives {columns} "
            f"scores per image: {redo}"
        )
    folder = exported.kind == "folder" and exported.modality == "image"
    taken = exported.model.input_shape[1:] if folder else None  # a text base takes strings
    if taken is not None and None not in taken and list(taken) != shape:
        raise ExportError(
            f"{path}: the metadata's input_shape {shape} is not its base's {list(taken)}: {redo}"
        )
    labels = labels_path(path)
    if labels.is_file() and labels.read_text(encoding="utf-8").splitlines() != classes:
        raise ExportError(
            f"{labels} does not list the export's {len(classes)} classes in order: restore it "
            f"from the metadata or {redo}"
        )
    return exported


def load_keras(path: Path) -> keras.Model:
    """Load a ``.keras`` file in safe mode, uncompiled, or :class:`ExportError`."""
    import keras
    from bottleneck_transfer.features.bases.text_model import text_layers

    text_layers()  # a text base's layers (tokenize, pooling): registered before loading
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        if "keras_hub" in str(exc):  # a KerasHub preset's layers, and keras-hub is missing
            raise ExportError(
                f"{path} holds KerasHub layers (its base is a KerasHub preset), and keras_hub "
                "cannot be imported: pip install keras-hub"
            ) from exc
        raise ExportError(
            f"cannot load {path} as a Keras model in safe mode: {type(exc).__name__}: {exc}"
        ) from exc


def load_head(path: str | Path, kind: str) -> Any:
    """Load a folder export's ``head.skops``: only the classes its head ``kind`` declares.

    Raises
    ------
    ExportError
        If the file holds any other type or a function (naming them), or is unreadable.
    """
    try:
        return load_trusted(path, kind)
    except HeadError as exc:
        raise ExportError(str(exc)) from exc


def load_converted(path: Path, converter: Converter, *, trust_graph: bool = False) -> Exported:
    """Load a converted export with its runtime, after reading its metadata back (parsing
    the file, running nothing) and checking its graph's ops (unless ``trust_graph``).

    Raises
    ------
    GraphError
        If its graph holds an op off the allow-list (:mod:`bottleneck_transfer.graphs`).
    ExportError
        If ``path`` cannot be read as that form or holds no bottleneck metadata.
    MissingDependencyError
        If its runtime is not installed (how to install it).
    """
    converter.check_runtime()
    redo = f"export one with `bottleneck export CACHE -o {path.name} --format {converter.name}`"
    try:
        text = converter.read_metadata(path)
    except Exception as exc:
        raise ExportError(
            f"cannot read {path} (--format {converter.name}): {_first_line(exc)}; {redo}"
        ) from exc
    try:
        metadata = json.loads(text) if text is not None else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExportError(
            f"{path} is not a bottleneck export (no readable {METADATA_NAME!r} metadata in it); "
            f"{redo}"
        )
    check_metadata(metadata, path)
    converter.check_graph(path, trusted=trust_graph)
    try:
        runner = converter.load(path)
    except Exception as exc:
        raise ExportError(
            f"cannot load {path} (--format {converter.name}): {_first_line(exc)}; {redo}"
        ) from exc
    return check_consistent(Exported(path, converter.name, metadata, runner=runner))


def _first_line(exc: Exception) -> str:
    """``Type: first line of the message``: a runtime's error in a one-line message."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def load_exported(path: str | Path, *, trust_graph: bool = False) -> Exported:
    """Load an export: a ``.keras`` file, an export folder, or a converted form (a SavedModel
    folder, a ``.tflite`` or ``.onnx`` file).

    A converted form's graph is a program: its ops are checked before it is loaded, and one
    off the allow-list of :mod:`bottleneck_transfer.graphs` is refused unless ``trust_graph``
    (``--trust-graph``). ``.keras`` files load in Keras' safe mode.

    Raises
    ------
    GraphError
        A converted form whose graph holds an op off the allow-list (naming it).
    ExportError
        If ``path`` is missing, is not a model of one of these forms, or is one that is not
        a bottleneck export, naming the file.
    MissingDependencyError
        A converted form whose runtime is not installed (how to install it).

    Examples
    --------
    >>> exported = load_exported("model.keras")
    >>> exported.class_names[:2]
    ['Sandal', 'Shirt']
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ExportError(f"model not found: {path}")
    converter = converter_for(path)
    if converter is not None:
        return load_converted(converter.resolve(path), converter, trust_graph=trust_graph)
    if path.is_dir():
        missing = [name for name in FOLDER_FILES if not (path / name).is_file()]
        if missing:
            raise ExportError(
                f"{path} is a folder but not a bottleneck export (missing {', '.join(missing)})"
            )
        try:
            metadata = json.loads((path / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{path / 'model.json'} is not readable JSON: {exc}") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ExportError(f"{path / 'model.json'} is not a bottleneck export's model.json")
        check_metadata(metadata, path)
        model = load_keras(path / "base.keras")
        head = load_head(path / "head.skops", metadata.get("head", ""))
        return check_consistent(Exported(path, "folder", metadata, model, head))
    if path.suffix != ".keras":
        raise ExportError(
            f"{path} is not a bottleneck export: give a .keras, .tflite or .onnx file, an "
            "export folder or a SavedModel export folder"
        )
    model = load_keras(path)
    metadata = check_metadata(read_metadata(model, path), path)
    return check_consistent(Exported(path, "keras", metadata, model))
