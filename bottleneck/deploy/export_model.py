"""What every export builds and returns: the single-file Keras model (uint8 images of any
size -> resize -> base -> head layers -> output; a text base's: raw strings -> its preset's
tokenizer -> base -> head layers -> output), the folder form's base model, the base's
provenance fields an export's metadata copies, and :class:`ExportResult`.

Shared by the class export (:mod:`.export`) and the target export (:mod:`.target_export`).
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy import onnx_base
from bottleneck_transfer.deploy.exported import (
    FORMAT,
    FORMAT_VERSION,
    OUTPUT_LAYER,
    Exported,
    load_exported,
    load_keras,
    metadata_layer,
)
from bottleneck_transfer.deploy.formats import Converter
from bottleneck_transfer.deploy.parity import Parity, Quantized
from bottleneck_transfer.deploy.settings import ExportSettings
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.bases import Base, hub
from bottleneck_transfer.versions import software_versions

if TYPE_CHECKING:
    import keras
    from bottleneck_transfer.features.cache import FeatureCache

#: Provenance fields of the base copied into an export's metadata.
BASE_KEYS = (
    "application",
    "file",
    "file_sha256",
    "format",
    "layout",
    "weights",
    "weights_sha256",
    "layer",
    "pooling",
    "input_shape",
    "feature_dim",
    "compute_dtype",
    "input",
    "max_length",
    "family",
    "tokenizer",
    "tokenizer_sha256",
    *hub.PROVENANCE_KEYS,
)


def input_shape(described: dict) -> list[int] | None:
    """The export's ``input_shape``: the base's ``[height, width, channels]``; a text base's
    ``[max_length, 1, 1]`` (tokens per text); None when the provenance records neither."""
    if described.get("input") == "text" and described.get("max_length"):
        return [int(described["max_length"]), 1, 1]
    return described.get("input_shape")


def provenance_metadata(cache: FeatureCache, described: dict, base: Base) -> dict[str, Any]:
    """The fields every export's metadata holds about where it came from: the format, the
    cache (name, fingerprint), the base (its provenance ``described``, the rebuilt ``base``'s
    layer), when, where and with which versions it was made."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "input_shape": input_shape(described),
        "fingerprint": cache.fingerprint,
        "base": {k: described[k] for k in BASE_KEYS if k in described},
        "base_layer": base.model.name,
        "cache": cache.path.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "versions": software_versions(),
    }


def form_metadata(
    converter: Converter,
    input_shape: list[int],
    settings: ExportSettings,
    output_names: tuple[str, ...] | None = None,
) -> dict:
    """What a converted form's metadata adds: its input tensor, outputs (``output_names``,
    else the converter's) and quantization."""
    return {
        "input": converter.input_metadata(list(input_shape), settings),
        "output_names": list(output_names or converter.output_names),
        "quantize": settings.quantize,
    }


def save_model(
    model: keras.Model,
    target: Path,
    converter: Converter | None,
    metadata: dict,
    settings: ExportSettings,
) -> Exported:
    """Write the export ``model`` to ``target`` (a ``.keras`` file, or converted by
    ``converter``) and load it back as ``predict`` loads it (a converted form: its metadata
    read back, run by its own runtime)."""
    if converter is None:
        model.save(target)
        return Exported(target, "keras", metadata, load_keras(target))
    converter.write(model, target, metadata, settings)
    return load_exported(target)


#: Why a text base's export (raw strings in) cannot take each converted form: its tokenizer
#: is TensorFlow Text ops (WordPiece, byte-pair) inside the graph.
TEXT_FORMS_REFUSED = {
    "onnx": "ONNX has no ops for its tokenizer (TensorFlow Text ops tf2onnx does not convert)",
    "tflite": "TFLite's built-in and select TensorFlow ops do not include its tokenizer's "
    "TensorFlow Text ops",
    "saved-model": "its graph would hold its tokenizer's TensorFlow Text ops, which are off "
    "the op allow-list predict checks a SavedModel against and load only with tensorflow-text",
}


def check_exportable_base(cache: FeatureCache, form: str) -> None:
    """Refuse a SavedModel base (Keras loads its ``TFSMLayer`` from a file only unsafely), an
    ONNX file base in any form but ``onnx`` (:func:`deploy.onnx_base.check_form`), and a text
    base in a converted form (:data:`TEXT_FORMS_REFUSED`)."""
    if cache.provenance.get("base", {}).get("input") == "text" and form in TEXT_FORMS_REFUSED:
        raise ExportError(
            f"--format {form} cannot hold the text base of {cache.path}: "
            f"{TEXT_FORMS_REFUSED[form]}; export -o NAME.keras (raw strings in) or a folder"
        )
    onnx_base.check_form(cache.provenance.get("base", {}), form, cache.path)
    name = cache.provenance.get("base", {}).get("saved_model")
    if name is not None:
        raise ExportError(
            f"the cache {cache.path} was made with the SavedModel {name}, which a .keras file or "
            "export folder cannot hold (Keras loads a TFSMLayer only outside safe mode); use its "
            "features with train, compare and evaluate, and serve the head beside the SavedModel"
        )


@dataclass(repr=False)
class ExportResult(Display):
    """What :func:`export` wrote."""

    path: Path
    kind: str
    labels: Path
    head: str
    classes: list[str]
    outputs: str
    parity: Parity | None
    seconds: float
    metadata: dict
    #: A quantized TFLite export's accuracy change (its parity is not checked at ``atol``).
    quantized: Quantized | None = None

    def _display_summary(self) -> dict[str, Any]:
        parity = self.parity
        quantized = {"quantized": describe_quantized(self.quantized)} if self.quantized else {}
        return {
            "path": str(self.path),
            "kind": self.kind,
            "head": self.head,
            "outputs": self.outputs,
            "classes": f"{len(self.classes)} (names in {self.labels})",
            "parity": "not checked"
            if parity is None
            else f"{parity.n} source {'texts' if parity.relative else 'images'}, max "
            f"{'relative ' * parity.relative}difference {parity.max_abs_diff:.1e}, "
            f"top-1 agreement {parity.argmax_agreement:.4g}",
            **quantized,
            "seconds": self.seconds,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per output column: its index and class name."""
        return [{"output": i, "class": name} for i, name in enumerate(self.classes)]

    def to_dict(self) -> dict[str, Any]:
        """What ``bottleneck export --json`` prints."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "labels": str(self.labels),
            "head": self.head,
            "classes": self.classes,
            "outputs": self.outputs,
            "parity": None if self.parity is None else self.parity.to_dict(),
            "quantized": self.quantized.to_dict() if self.quantized else None,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """One line for ``bottleneck export``: what was written and how it was checked."""
        parity = self.parity
        relative = "relative " if parity and parity.relative else ""
        unit = "texts" if relative else "images"
        checked = (
            f"checked on {parity.n} source {unit} (max {relative}difference "
            f"{parity.max_abs_diff:.1e})"
            if parity
            else "not checked (--sample 0)"
        )
        if self.quantized is not None:
            checked = f"quantized {describe_quantized(self.quantized)}"
        return (
            f"Wrote {self.path} ({self.kind}): head {self.head}, {len(self.classes)} "
            f"classes (names in {self.labels}), outputs {self.outputs}; {checked}."
        )


def describe_quantized(quantized: Quantized) -> str:
    """One line: what quantization changed on held-out cached images."""
    return (
        f"{quantized.quantize}: top-1 accuracy {quantized.float_accuracy:.4f} -> "
        f"{quantized.accuracy:.4f} ({100 * quantized.change:+.2f} points) on {quantized.n} "
        f"cached images not used for calibration, agreement with float32 "
        f"{100 * quantized.agreement:.1f} %, max |dp| {quantized.max_abs_diff:.3f}"
    )


def _front_end(base: Base, resize: keras.layers.Layer | None = None) -> tuple[Any, Any]:
    """uint8 images of any size -> resize -> float32 -> base features; a text base's raw
    strings -> its tokenizer (:func:`features.bases.text_model.strings_in`) -> features."""
    import keras

    base.model.trainable = False
    if base.encoder is not None:
        from bottleneck_transfer.features.bases.text_model import strings_in

        inputs = keras.Input(shape=(), dtype="string", name="text")
        return inputs, base.model(strings_in(base.encoder)(inputs))

    height, width = base.image_size
    inputs = keras.Input(shape=(None, None, base.channels), dtype="uint8", name="image")
    if resize is None:
        resize = keras.layers.Resizing(
            height, width, interpolation="bilinear", antialias=True, name="resize"
        )
    x = resize(inputs)
    x = keras.layers.Rescaling(1.0, name="to_float")(x)
    return inputs, base.model(x)


def build_keras_model(
    base: Base,
    layers: list[keras.layers.Layer],
    metadata: dict,
    resize: keras.layers.Layer | None = None,
) -> keras.Model:
    """The single-file export model (:mod:`deploy.exported`); ``resize`` replaces Keras'
    ``Resizing`` (a converter's :class:`deploy.resize.TriangleResize`)."""
    import keras

    inputs, x = _front_end(base, resize)
    for layer in layers:
        x = layer(x)
    x = metadata_layer(metadata, len(metadata["classes"]))(x)
    # softmax over classes; a binary, multi-label or regression target's own (sigmoid, linear)
    activation = metadata.get("activation", "softmax")
    outputs = keras.layers.Activation(activation, name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="bottleneck_export")


def build_base_model(base: Base) -> keras.Model:
    """The folder export's ``base.keras``: uint8 images (or strings) -> features."""
    import keras

    inputs, features = _front_end(base)
    return keras.Model(inputs, features, name="bottleneck_base")
