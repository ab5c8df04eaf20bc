"""Base kind ``onnx_file``: an ``.onnx`` model from PyTorch, JAX, TensorFlow or any other tool,
run by ONNX Runtime (never Keras: ``--runtime keras`` is refused).

Its operators are checked first (:func:`bottleneck_transfer.graphs.check_onnx`: standard
domains only, unless ``--trust-graph``). Then, each from the option, else the model's
``metadata_props`` (keys :data:`.onnx_graph.METADATA_KEYS`), else the default:

- **layout** (``--layout nchw|nhwc``): else read from the input's shape (the axis holding 1
  or 3 channels);
- **size** (``--image-size``): the input's own when fixed (another is refused), else 224;
- **preprocessing** (``--preprocess``): else none (pixels 0..255, as for a model file);
- **output** (``--output NAME``, the same setting as ``--layer``): else the first; a 4-D
  output is pooled (``--pooling avg|max`` over its spatial axes, in the model's layout).

The description holds the file's name and sha256 (so the cache fingerprint changes with any
byte of it), ``format: onnx``, the layout, and the sha256 of its initializers.
"""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features import choices
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases import onnx_graph as og
from bottleneck_transfer.features.bases.built import BaseRequest, Built, resolve_base_file
from bottleneck_transfer.features.bases.preprocessing import preprocess_affine
from bottleneck_transfer.fingerprint import sha256_file
from bottleneck_transfer.graphs import check_onnx

KIND = "onnx_file"
#: The input layouts it takes (``--layout``).
LAYOUTS = choices.LAYOUTS
#: The ``format`` of an ONNX base's description.
FORMAT = "onnx"
#: Input size of a model whose input's height and width are not fixed.
DEFAULT_SIZE = (224, 224)


def detect(base: str | Path) -> bool:
    """Whether ``base`` spells a path ending in ``.onnx``."""
    path = hub.spelled_path(base)
    return path is not None and path.suffix.lower() == ".onnx"


def is_onnx_base(described: dict) -> bool:
    """Whether a base's description (a cache's provenance ``base``) is an ONNX file's."""
    return described.get("format") == FORMAT


def _size(shape: tuple, layout: str, request: BaseRequest, meta: dict, path: Path) -> tuple:
    axes = (2, 3) if layout == "nchw" else (1, 2)
    own = tuple(shape[a] for a in axes)
    if None not in own:
        if request.size is not None and tuple(request.size) != own:
            raise BaseModelError(
                f"{path.name} takes {own[0]}x{own[1]} images. Received: "
                f"image_size={request.size}; leave --image-size out for this model"
            )
        return own
    if request.size is not None:
        return tuple(request.size)
    if "image_size" in meta:
        return og.parse_size(meta["image_size"], path)
    return DEFAULT_SIZE


def build(base: str | Path, request: BaseRequest) -> Built:
    """The file's feature graph (:func:`.onnx_graph.feature_graph`), described."""
    path = hub.spelled_path(base)
    og.require_onnx(f"the ONNX base {path.name}")
    if not path.is_file():
        raise BaseModelError(f"ONNX model file not found: {path}")
    if request.weights not in (None, "file"):
        raise BaseModelError(
            f"{path.name} holds its own weights. Received: weights={request.weights!r}; "
            "omit --weights for an ONNX base"
        )
    check_onnx(path, trusted=request.trust_graph)
    model = og.read_model(path)
    meta = {k: v for k, v in og.metadata(model).items() if k in og.METADATA_KEYS}
    (first, *_) = og.inputs(model) or [None]
    if first is None or first.shape is None:
        raise BaseModelError(f"{path.name} declares no input shape; give an image model")
    layout = og.detect_layout(first.shape, request.layout or meta.get("layout"), path)
    channels = first.shape[1 if layout == "nchw" else 3]
    if channels is None:
        raise BaseModelError(f"{path.name}: the channel axis of its {layout} input is not fixed")
    size = _size(first.shape, layout, request, meta, path)
    spec = request.preprocess or meta.get("preprocess") or "none"
    affine = preprocess_affine(spec, channels)
    output = og.choose_output(model, request.layer, path)
    plan = og.Plan(first, output, layout, affine, request.pooling)
    features = og.feature_graph(model, plan, size)
    dim = og.feature_dim(features, size, channels, path)
    graph = og.OnnxGraph(
        features.SerializeToString(), path.stem, dim, og.initializers(model), len(model.graph.node)
    )
    origin = {
        "file": path.name,
        "file_sha256": sha256_file(path),
        "format": FORMAT,
        "layout": layout,
        **({"trust_graph": True} if request.trust_graph else {}),
    }
    return Built(
        graph, path.name, origin, "file", size, channels, affine, output.name, request.pooling
    )


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The ONNX file a cache's provenance names (found, its sha256 checked), with its own
    weights; None when ``described`` is another kind's."""
    if not is_onnx_base(described):
        return None
    return resolve_base_file(described, base_path, cache_path), [None]
