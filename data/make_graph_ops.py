"""Regenerate ``bottleneck/graph_ops.json``: the SavedModel ops bottleneck runs without
``--trust-graph`` (see ``bottleneck/graphs.py``).

The list is what this tool's own bases and exports produce, read back from the files it
writes: the demo base and ``keras.applications`` backbones (random weights, small inputs)
written as SavedModels by ``model.export()``, the tiny SavedModel the tests use as a hub base,
and ``bottleneck export --format saved-model`` of logreg and dense heads on a small cache; plus
:data:`ORDINARY` inference ops that TF Hub image models use (each checked to be a registered
TensorFlow op). It refuses to write a list holding any of ``graphs.NEVER_ALLOWED``, or a
checkpoint op (``graphs.CHECKPOINT_OPS``) outside its saver side.

Run from the repository root (about two minutes on a CPU)::

    KERAS_BACKEND=tensorflow python data/make_graph_ops.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from bottleneck_transfer import graphs
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO_BASE = ROOT / "data" / "bases" / "fashion_mnist_0-4.keras"
#: keras.applications backbones (random weights) at a small input size.
APPLICATIONS = {"mobilenet_v2": 96, "resnet50": 64, "efficientnetb0": 64, "convnext_tiny": 64}
#: Ordinary inference ops of image models (convolutions, normalisation, activations, shapes,
#: control flow whose bodies are library functions, checked like any other).
ORDINARY = [
    "Abs",
    "Add",
    "AddN",
    "AddV2",
    "All",
    "Any",
    "ArgMax",
    "ArgMin",
    "Assert",
    "AvgPool",
    "AvgPool3D",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "BatchToSpaceND",
    "BiasAdd",
    "BroadcastArgs",
    "BroadcastTo",
    "Cast",
    "Ceil",
    "CheckNumerics",
    "ClipByValue",
    "ConcatV2",
    "Const",
    "Conv2D",
    "Conv2DBackpropInput",
    "Conv3D",
    "Cos",
    "Cumsum",
    "DepthToSpace",
    "DepthwiseConv2dNative",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "ExpandDims",
    "Fill",
    "Floor",
    "FloorDiv",
    "FloorMod",
    "FusedBatchNorm",
    "FusedBatchNormV3",
    "GatherNd",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "Identity",
    "IdentityN",
    "If",
    "LeakyRelu",
    "Less",
    "LessEqual",
    "Log",
    "LogSoftmax",
    "LogicalAnd",
    "LogicalNot",
    "LogicalOr",
    "MatMul",
    "Max",
    "MaxPool",
    "MaxPoolV2",
    "Maximum",
    "Mean",
    "Min",
    "Minimum",
    "MirrorPad",
    "Mul",
    "Neg",
    "NoOp",
    "NotEqual",
    "OneHot",
    "OnesLike",
    "Pack",
    "Pad",
    "PadV2",
    "PartitionedCall",
    "Placeholder",
    "PlaceholderWithDefault",
    "Pow",
    "Prod",
    "Range",
    "Rank",
    "ReadVariableOp",
    "RealDiv",
    "Reciprocal",
    "Relu",
    "Relu6",
    "Reshape",
    "ResizeBicubic",
    "ResizeBilinear",
    "ResizeNearestNeighbor",
    "Round",
    "Rsqrt",
    "ScaleAndTranslate",
    "Select",
    "SelectV2",
    "Selu",
    "Shape",
    "ShapeN",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToBatchND",
    "SpaceToDepth",
    "Split",
    "SplitV",
    "Sqrt",
    "Square",
    "SquaredDifference",
    "Squeeze",
    "StatefulPartitionedCall",
    "StatelessIf",
    "StatelessWhile",
    "StopGradient",
    "StridedSlice",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "TopKV2",
    "Transpose",
    "Unpack",
    "VarHandleOp",
    "VarIsInitializedOp",
    "While",
    "ZerosLike",
    # The SavedModel export's serving_default: encoded images decoded in memory, in a map_fn.
    "DecodeImage",
    "TensorListFromTensor",
    "TensorListGetItem",
    "TensorListReserve",
    "TensorListSetItem",
    "TensorListStack",
]


def _exports(folder: Path) -> list[Path]:
    """SavedModels of this tool's own bases and exports, written under ``folder``."""
    import hub_fixtures  # tests/: the SavedModel the hub tests use as a base

    written = [hub_fixtures.save_saved_model(folder / "hub")]
    for name, size in APPLICATIONS.items():
        base = load_base(name, weights="none", image_size=size)
        base.model.export(str(folder / name), verbose=False)
        written.append(folder / name)
    demo = load_base(DEMO_BASE)
    demo.model.export(str(folder / "demo"), verbose=False)
    written.append(folder / "demo")
    images = folder / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (28, 28), np.uint8)
            Image.fromarray(pixels).save(images / label / f"{i}.png")
    cache = folder / "cache.h5"
    extract(str(images), str(DEMO_BASE), cache, progress=False)
    for head in ("logreg", "dense:hidden=8"):
        out = folder / f"export-{head.split(':')[0]}"
        export(cache, out, head=head, base=DEMO_BASE, format="saved-model", sample=4)
        written.append(out)
    return written


def generate() -> dict[str, list[str]]:
    """The allow-list by side: inference, and the extra ops of the restore and save sides."""
    unknown = [op for op in ORDINARY if not hasattr(tf.raw_ops, op)]
    if unknown:
        sys.exit(f"not TensorFlow ops: {unknown}")
    found: dict[str, set[str]] = {"inference": set(ORDINARY), "restore": set(), "save": set()}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in _exports(Path(tmp)):
            for side, ops in graphs.saved_model_ops(folder).items():
                found[side] |= ops
    for side, ops in found.items():
        others = set().union(*(v for k, v in graphs.CHECKPOINT_OPS.items() if k != side))
        bad = ops & (graphs.NEVER_ALLOWED | others)
        if bad:
            sys.exit(f"refusing to allow {sorted(bad)} on the {side} side")
    return {
        "inference": sorted(found["inference"]),
        "restore": sorted(found["restore"] - found["inference"]),
        "save": sorted(found["save"] - found["inference"]),
    }


def main() -> None:
    keras.utils.set_random_seed(0)
    listed = {"about": f"generated by data/{Path(__file__).name}", **generate()}
    graphs.ALLOWED_OPS_FILE.write_text(json.dumps(listed, indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{side} {len(listed[side])}" for side in ("inference", "restore", "save"))
    print(f"wrote {graphs.ALLOWED_OPS_FILE}: {counts}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    main()
