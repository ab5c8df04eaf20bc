"""Small ONNX models for the ONNX-base tests: built with ``onnx.helper`` (no framework), a
Keras CNN exported by Keras' ONNX exporter, and an NCHW conv net exported by ``torch.onnx``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def helper_model(
    path: Path,
    nodes: list,
    input_shape: list,
    outputs: dict[str, list],
    *,
    metadata: dict[str, str] | None = None,
    domains: dict[str, int] | None = None,
    opset: int = 17,
    input_name: str = "x",
) -> Path:
    """Save a float32 graph of ``nodes`` from ``input_name`` (``input_shape``; str: a named dim)
    to ``outputs`` (name -> shape) at ``opset``, with ``metadata`` props and extra ``domains``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def identity_model(path: Path, input_shape: list, **kwargs) -> Path:
    """A graph returning its input (``y``): features are the pooled preprocessed pixels."""
    from onnx import helper

    node = helper.make_node("Identity", ["x"], ["y"])
    return helper_model(path, [node], input_shape, {"y": input_shape}, **kwargs)


def two_output_model(path: Path, opset: int = 17) -> Path:
    """NCHW 3x8x8 in; outputs ``map`` (Relu, 4-D) and ``flat`` (its flattening, 2-D)."""
    from onnx import helper

    nodes = [
        helper.make_node("Relu", ["x"], ["map"]),
        helper.make_node("Flatten", ["map"], ["flat"], axis=1),
    ]
    shapes = {"map": ["N", 3, 8, 8], "flat": ["N", 192]}
    return helper_model(path, nodes, ["N", 3, 8, 8], shapes, opset=opset)


def custom_op_model(path: Path) -> Path:
    """A graph running an operator of a non-standard domain (``com.example.Exec``)."""
    from onnx import helper

    node = helper.make_node("Exec", ["x"], ["y"], domain="com.example")
    shape = ["N", 3, 8, 8]
    return helper_model(path, [node], shape, {"y": shape}, domains={"com.example": 1})


def keras_cnn(folder: Path) -> tuple[Path, Path]:
    """A tiny 8 x 8 RGB Keras CNN (4-D output), as ``cnn.keras`` and as ``cnn.onnx``."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(5, 3, name="conv2")(x)
    model = keras.Model(inputs, x, name="cnn")
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "cnn.keras")
    model(np.zeros((1, 8, 8, 3), np.float32))  # Keras exports called models
    model.export(str(folder / "cnn.onnx"), format="onnx", verbose=False, opset_version=17)
    return folder / "cnn.keras", folder / "cnn.onnx"


def torch_nchw(path: Path):
    """A tiny NCHW conv net exported by ``torch.onnx`` (TorchScript exporter: no onnxscript);
    returns the path and the net."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 3)
    ).eval()
    torch.onnx.export(
        net,
        torch.zeros(1, 3, 10, 12),
        str(path),
        input_names=["input"],
        output_names=["fmap"],
        dynamic_axes={"input": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path, net


def images(root: Path, size: tuple[int, int], n: int = 12) -> Path:
    """``n`` random PNGs of exactly ``size`` (no resize at decoding) in classes a and b."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for k in range(n):
        path = root / "ab"[k % 2] / f"{k:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return root
