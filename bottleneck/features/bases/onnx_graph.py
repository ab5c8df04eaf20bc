"""An ONNX file read as a base: its inputs, outputs and metadata, and the feature graph built
from it (:class:`OnnxGraph`, which stands where a Keras model stands in a
:class:`~.common.Base`).

The feature graph takes what every base takes, float pixels 0..255 of shape
``(N, H, W, C)``, and gives ``(N, D)`` features:

    pixels -> preprocessing (``x @ W + b`` per pixel, :func:`.preprocessing.preprocess_affine`)
    -> NCHW transpose (an NCHW model) -> cast (a model taking another float type)
    -> the file's graph -> the chosen output -> pooled (a 4-D output: ``GlobalAveragePool`` or
    ``GlobalMaxPool`` over its spatial axes, in the model's layout) or flattened.

The nodes added exist with the same signature in every opset since 7, so the file keeps its
own opset. Nothing here runs the graph but :func:`feature_dim`'s one probe, after the
caller's op check (:func:`bottleneck_transfer.graphs.check_onnx`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import BaseModelError, MissingDependencyError
from bottleneck_transfer.features.choices import LAYOUTS

if TYPE_CHECKING:
    import onnx

#: ``metadata_props`` keys read as defaults of ``--layout``, ``--image-size``, ``--preprocess``.
METADATA_KEYS = ("layout", "image_size", "preprocess")
#: The feature graph's input and output names (prefixed: a file's own names stay free).
PIXELS, FEATURES = "bottleneck_pixels", "bottleneck_features"
#: Runtime an ONNX base runs on (``--runtime``): its graph is not a Keras model.
RUNTIME = "onnx"


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: its name, shape (None for a named or unknown dim), type."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    elem_type: int

    def to_dict(self) -> dict[str, Any]:
        shape = None if self.shape is None else ["?" if d is None else d for d in self.shape]
        return {"name": self.name, "shape": shape, "dtype": self.dtype}


def require_onnx(what: str) -> None:
    """Raise one line unless onnx and onnxruntime import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs onnx and onnxruntime ({exc.name} is missing): "
            "pip install 'bottleneck-transfer[onnx]'"
        ) from exc


def read_model(path: Path) -> onnx.ModelProto:
    """The ONNX model at ``path`` (its external data beside it), or one line saying why not."""
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, a missing external data file
        first = (str(exc).splitlines() or [""])[0][:160]
        raise BaseModelError(
            f"cannot read {path} as an ONNX model ({type(exc).__name__}: {first}); give an "
            ".onnx file exported by torch.onnx, tf2onnx, jax2onnx or another converter"
        ) from exc


def _tensor(value: Any) -> Tensor:
    import onnx

    kind = value.type.tensor_type
    shape = None
    if kind.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).name if kind.elem_type else "?"
    return Tensor(value.name, shape, dtype, kind.elem_type)


def inputs(model: onnx.ModelProto) -> list[Tensor]:
    """The graph's inputs that are not initializers (what a caller feeds)."""
    weights = {init.name for init in model.graph.initializer}
    return [_tensor(v) for v in model.graph.input if v.name not in weights]


def outputs(model: onnx.ModelProto) -> list[Tensor]:
    """The graph's outputs."""
    return [_tensor(v) for v in model.graph.output]


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {prop.key: prop.value for prop in model.metadata_props}


def domains(model: onnx.ModelProto) -> dict[str, int]:
    """The operator domains the model imports, with their versions (``""`` is ``ai.onnx``)."""
    return {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}


def detect_layout(shape: tuple[int | None, ...], given: str | None, path: Path) -> str:
    """``given`` (``--layout`` or the metadata's), else the layout the input's shape shows:
    NCHW when only axis 1 holds 1 or 3 channels, NHWC when only axis 3 does.

    Raises
    ------
    BaseModelError
        An input that is not 4-D, or one both layouts fit (or neither), asking for --layout.
    """
    if len(shape) != 4:
        raise BaseModelError(
            f"{path.name} takes an input of shape {list(shape)}, not an image batch "
            "(N, C, H, W) or (N, H, W, C); give an image model"
        )
    if given is not None:
        if given.lower() not in LAYOUTS:
            raise BaseModelError(
                f"invalid layout for {path.name}. Received: layout={given!r}; valid: "
                f"{', '.join(LAYOUTS)}"
            )
        return given.lower()
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first != last:
        return "nchw" if first else "nhwc"
    raise BaseModelError(
        f"cannot tell the layout of {path.name} from its input shape "
        f"{['?' if d is None else d for d in shape]}: pass --layout nchw or --layout nhwc"
    )


def parse_size(text: str, path: Path) -> tuple[int, int]:
    """An ``image_size`` metadata value: ``224``, ``224,224`` or ``224x224``."""
    parts = text.replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise BaseModelError(
            f"{path.name}: metadata image_size={text!r} is not a size; write 224, 224,224 or "
            "224x224 (or pass --image-size)"
        )
    return (sizes[0], sizes[-1])


def choose_output(model: onnx.ModelProto, name: str | None, path: Path) -> Tensor:
    """The output named ``name`` (``--output``/``--layer``; default: the first).

    Raises
    ------
    BaseModelError
        A name the graph has no output of, listing the outputs.
    """
    found = outputs(model)
    if name is None:
        return found[0]
    for tensor in found:
        if tensor.name == name:
            return tensor
    listed = ", ".join(repr(t.name) for t in found)
    raise BaseModelError(
        f"{path.name} has no output {name!r}. Received: output={name!r}; its outputs are: {listed}"
    )


@dataclass(frozen=True)
class Plan:
    """How the file's graph becomes the feature graph."""

    input: Tensor
    output: Tensor
    layout: str
    affine: tuple[np.ndarray, np.ndarray]
    pooling: str


def _front(plan: Plan) -> tuple[list, list]:
    """Nodes and initializers from ``pixels`` to the file's input."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = plan.affine
    inits = [
        numpy_helper.from_array(weight.astype(np.float32), "bottleneck_preprocess_w"),
        numpy_helper.from_array(bias.astype(np.float32), "bottleneck_preprocess_b"),
    ]
    nodes = [
        helper.make_node("MatMul", [PIXELS, inits[0].name], ["bottleneck_scaled"]),
        helper.make_node("Add", ["bottleneck_scaled", inits[1].name], ["bottleneck_nhwc"]),
    ]
    x = "bottleneck_nhwc"
    if plan.layout == "nchw":
        nodes.append(helper.make_node("Transpose", [x], ["bottleneck_nchw"], perm=[0, 3, 1, 2]))
        x = "bottleneck_nchw"
    to = plan.input.elem_type
    op = "Cast" if to not in (0, TensorProto.FLOAT) else "Identity"
    attrs = {"to": to} if op == "Cast" else {}
    nodes.append(helper.make_node(op, [x], [plan.input.name], **attrs))
    return nodes, inits


def _back(plan: Plan) -> list:
    """Nodes from the chosen output to ``features``: pooled, flattened, as float32."""
    from onnx import helper

    rank = len(plan.output.shape) if plan.output.shape is not None else None
    x, nodes = plan.output.name, []
    if rank == 4:
        if plan.layout == "nhwc":
            nodes.append(helper.make_node("Transpose", [x], ["bottleneck_map"], perm=[0, 3, 1, 2]))
            x = "bottleneck_map"
        pool = "GlobalAveragePool" if plan.pooling == "avg" else "GlobalMaxPool"
        nodes.append(helper.make_node(pool, [x], ["bottleneck_pooled"]))
        x = "bottleneck_pooled"
    if rank != 2:
        nodes.append(helper.make_node("Flatten", [x], ["bottleneck_flat"], axis=1))
        x = "bottleneck_flat"
    nodes.append(helper.make_node("Cast", [x], [FEATURES], to=1))
    return nodes


def feature_graph(model: onnx.ModelProto, plan: Plan, size: tuple[int, int]) -> onnx.ModelProto:
    """The feature graph of ``model`` (see the module's docstring)."""
    import onnx
    from onnx import TensorProto, helper

    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    front, inits = _front(plan)
    kept = [v for v in graph.input if v.name != plan.input.name]
    channels = int(plan.affine[1].shape[0])
    pixels = helper.make_tensor_value_info(PIXELS, TensorProto.FLOAT, ["N", *size, channels])
    features = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["N", None])
    nodes = [*front, *graph.node, *_back(plan)]
    built = helper.make_graph(
        nodes, f"{graph.name or 'onnx'}_features", [pixels, *kept], [features],
        initializer=[*graph.initializer, *inits], value_info=graph.value_info,
    )  # fmt: skip
    result = onnx.ModelProto()
    result.CopyFrom(model)
    result.graph.CopyFrom(built)
    return result


@dataclass(repr=False, eq=False)
class OnnxGraph:
    """An ONNX base's feature graph, where a :class:`~.common.Base` holds a Keras model.

    ``proto``: the serialized feature graph (pixels -> features); ``weights``: the file's
    initializers, in its order (what :func:`.common.weights_sha256` hashes); ``dim``: the
    feature size. It runs on ONNX Runtime only (:data:`RUNTIME`), through
    :mod:`bottleneck_transfer.features.runners.onnx`.
    """

    proto: bytes
    name: str
    dim: int
    weights: list[np.ndarray] = field(default_factory=list)
    nodes: int = 0
    trainable: bool = False
    runtime: str = RUNTIME
    output_names: tuple[str, ...] = (FEATURES,)

    @property
    def output_shape(self) -> tuple[None, int]:
        return (None, self.dim)

    @property
    def layers(self) -> range:
        """One entry per node of the file's graph (its size, as a Keras model's layers)."""
        return range(self.nodes)


def initializers(model: onnx.ModelProto) -> list[np.ndarray]:
    """The model's initializers as arrays, in its order."""
    from onnx import numpy_helper

    return [numpy_helper.to_array(init) for init in model.graph.initializer]


def feature_dim(model: onnx.ModelProto, size: tuple[int, int], channels: int, path: Path) -> int:
    """The feature size, from one run of the feature graph ``model`` on a black image; set as
    its output's last dimension.

    Raises
    ------
    BaseModelError
        ONNX Runtime cannot open or run the graph (its first line).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()  # one image: no thread tuning (runners.onnx's)
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        (out,) = session.run(None, {PIXELS: np.zeros((1, *size, channels), np.float32)})
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph/RuntimeException
        first = (str(exc).splitlines() or [""])[0][:200]
        raise BaseModelError(
            f"ONNX Runtime cannot run {path.name} on a {size[0]}x{size[1]}x{channels} image "
            f"({type(exc).__name__}: {first}); check --layout, --image-size and --output"
        ) from exc
    dim = int(out.shape[-1])
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = dim
    return dim
