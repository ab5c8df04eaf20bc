"""Export with an ONNX file base (:mod:`features.bases.onnx_file`): one ONNX graph, base and
head.

The base is an ONNX graph, not a Keras model, so the ``.keras`` file, the folder, the
SavedModel and TFLite cannot hold it (:func:`check_form` refuses them in one line). The head's
Keras layers (:func:`deploy.keras_head.head_layers`, then the softmax) are converted with
Keras' ONNX exporter at the base's opset and merged after the base's feature graph
(``onnx.compose``):

    image (uint8, ``batch`` x H x W x C) -> Cast -> the base's feature graph -> features
    -> the head's graph -> probabilities

The export takes images at the base's input size (``bottleneck predict`` and the export's
parity check decode them to that size, as extraction does); it holds no resize
(:data:`RESIZE`, in its metadata). Its metadata is stored and read back as every ONNX
export's (:data:`deploy.formats.CONVERTERS`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy.formats import CONVERTERS
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.bases import Base
from bottleneck_transfer.features.bases.onnx_file import is_onnx_base

if TYPE_CHECKING:
    import keras
    import onnx

#: The export's input and output names.
IMAGE, PROBABILITIES = "image", "probabilities"
#: The highest opset Keras' ONNX exporter (tf2onnx) writes; a head for a base of a later
#: opset is converted up to it (``onnx.version_converter``).
HEAD_MAX_OPSET = 18
#: What the metadata says of resizing: there is none inside.
RESIZE = "none: images at input_shape (decode and resize them first, as predict does)"


def check_form(described: dict, form: str, cache_path: Path) -> None:
    """Refuse any form but ``onnx`` for a cache made with an ONNX file base, in one line."""
    if is_onnx_base(described) and form != "onnx":
        raise ExportError(
            f"the cache {cache_path} was made with the ONNX file {described.get('file')}, which "
            f"a {form} export cannot hold (Keras cannot run an ONNX graph): export -o NAME.onnx"
        )


def _opset(model: onnx.ModelProto) -> int:
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _head_graph(layers: list[keras.layers.Layer], dim: int, opset: int) -> onnx.ModelProto:
    """The head's layers and softmax, features ``(N, dim)`` -> probabilities, in ONNX at
    ``opset`` (written at :data:`HEAD_MAX_OPSET` and converted, beyond it)."""
    import keras
    import numpy as np
    import onnx

    inputs = keras.Input((dim,), name="features")
    x = inputs
    for layer in layers:
        x = layer(x)
    outputs = keras.layers.Activation("softmax", name=PROBABILITIES)(x)
    head = keras.Model(inputs, outputs, name="bottleneck_head")
    head(np.zeros((1, dim), np.float32))  # Keras exports called models
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "head.onnx"
        written = min(opset, HEAD_MAX_OPSET)
        head.export(str(path), format="onnx", verbose=False, opset_version=written)
        graph = onnx.load(str(path))
    if written == opset:
        return graph
    return onnx.version_converter.convert_version(graph, opset)


def merged(base: Base, layers: list[keras.layers.Layer]) -> onnx.ModelProto:
    """uint8 images -> the base's feature graph -> the head -> ``probabilities``, checked."""
    import onnx
    from onnx import TensorProto, compose, helper

    features = onnx.load_from_string(base.model.proto)
    head = compose.add_prefix(_head_graph(layers, base.dim, _opset(features)), "head/")
    ir = max(features.ir_version, head.ir_version)
    features.ir_version = head.ir_version = ir
    joined = compose.merge_models(
        features, head, io_map=[(features.graph.output[0].name, head.graph.input[0].name)]
    )
    graph = joined.graph
    pixels = graph.input[0].name
    height, width = base.image_size
    image = helper.make_tensor_value_info(
        IMAGE, TensorProto.UINT8, ["batch", height, width, base.channels]
    )
    probabilities = helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", None])
    nodes = [
        helper.make_node("Cast", [IMAGE], [pixels], to=TensorProto.FLOAT),
        *graph.node,
        helper.make_node("Identity", [graph.output[0].name], [PROBABILITIES]),
    ]
    rest = list(graph.input)[1:]
    built = helper.make_graph(
        nodes, "bottleneck_export", [image, *rest], [probabilities],
        initializer=graph.initializer, value_info=graph.value_info,
    )  # fmt: skip
    # one entry per domain (merge_models lists both models' imports)
    versions = {entry.domain: entry.version for entry in joined.opset_import}
    opsets = [helper.make_opsetid(domain, version) for domain, version in versions.items()]
    model = helper.make_model(built, opset_imports=opsets, ir_version=ir)
    model.functions.extend(joined.functions)
    onnx.checker.check_model(model)
    return model


class OnnxBaseWriter:
    """The export's write step for the :func:`merged` graph (as a converter's ``write``)."""

    def write(
        self, model: onnx.ModelProto, target: Path, metadata: dict, settings: Any = None
    ) -> None:
        """Write ``model`` to ``target`` with ``metadata`` stored as every ONNX export's
        (``settings``: the export's; an ONNX base's graph keeps its own input shape)."""
        import onnx

        onnx.save(model, str(target))
        CONVERTERS["onnx"].finish(target, json.dumps(metadata, sort_keys=True))
