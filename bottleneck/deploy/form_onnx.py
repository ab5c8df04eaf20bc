"""The ONNX export's graph as serving stacks expect it: named input, outputs and axes.

Keras' ``Model.export(format="onnx")`` (tf2onnx) writes one graph (resize, the base with its
preprocessing, the head) whose output is named after a TensorFlow tensor (``Identity:0``) and
whose axes are ``unk__N``. :func:`name_graph` renames them: input ``image`` (uint8 NHWC, axes
``batch``, ``height``, ``width``), outputs ``probabilities`` (float32 ``[batch, K]``),
``label`` (the top class's name, a string tensor ``[batch]``: a ``Gather`` from the class
names stored in the graph) and ``label_index`` (its column, int64 ``[batch]``); the class
names also go into ``metadata_props`` (``classes``, a JSON list). A binary, multi-label or
regression export has one output, named as its metadata's ``output_names`` say
(:data:`~.settings.TARGET_OUTPUT_NAMES`: ``probabilities`` or ``values``), no label outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy.settings import OUTPUT_NAMES, ExportSettings

if TYPE_CHECKING:
    import keras

#: The input's axis names, in NHWC order (channels stay fixed).
AXES = ("batch", "height", "width")


def write_onnx(model: keras.Model, target: Path, metadata: dict, settings: ExportSettings) -> None:
    """Convert ``model`` with Keras (tf2onnx), then name its input, outputs and axes."""
    import onnx

    model.export(str(target), format="onnx", verbose=False)
    proto = onnx.load(str(target))
    name_graph(proto, metadata["classes"], tuple(metadata.get("output_names", OUTPUT_NAMES)))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(target))


def name_graph(proto: Any, classes: list[str], outputs: tuple[str, ...] = OUTPUT_NAMES) -> None:
    """Name the single-input, single-output graph's tensors (the scores ``outputs[0]``) and
    add the label outputs when ``outputs`` names them."""
    from onnx import TensorProto, helper

    graph = proto.graph
    (image,) = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    _rename(graph, image.name, "image")
    for dim, axis in zip(image.type.tensor_type.shape.dim, AXES, strict=False):
        if not dim.HasField("dim_value"):
            dim.dim_param = axis
    (output,) = graph.output
    _rename(graph, output.name, outputs[0])
    output.type.tensor_type.shape.dim[0].dim_param = "batch"
    helper.set_model_props(proto, {"classes": json.dumps(classes)})
    if "label" not in outputs:
        return
    names = helper.make_tensor("class_names", TensorProto.STRING, [len(classes)], classes)
    graph.node.extend(
        [
            helper.make_node("Constant", [], ["class_names"], value=names),
            helper.make_node("ArgMax", ["probabilities"], ["label_index"], axis=1, keepdims=0),
            helper.make_node("Gather", ["class_names", "label_index"], ["label"], axis=0),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("label_index", TensorProto.INT64, ["batch"]),
        ]
    )


def _rename(graph: Any, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` wherever the graph names it."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
