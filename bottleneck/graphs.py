"""A graph is a program: the ops of a SavedModel, TFLite or ONNX model, checked before it runs.

A SavedModel, a TFLite flatbuffer and an ONNX model are programs, not data: a graph can write
and read files (``WriteFile``, ``SaveV2``, ``ReadFile``), run Python (``PyFunc``) or, through
a custom op, anything. Before this tool loads one (a SavedModel base, an export given to
``predict``) it reads the ops from the file, without loading it, and refuses anything else
than the following with one line naming the op and :data:`TRUST_OPTION`:

- **SavedModel** (:func:`check_saved_model`): the ops of :data:`ALLOWED_OPS_FILE`, those this
  tool's own bases and exports produce plus ordinary inference ops (``data/make_graph_ops.py``
  regenerates it). Every node of the main graph and every function of the library is checked,
  whatever calls it (nested calls, control flow, a primitive op named as a function): against
  the ``inference`` ops, except the parts only the checkpoint saver reaches (``saver_def``):
  its restore side may also restore variables (``RestoreV2``), its save side, which loading
  never runs, may also write a checkpoint (``SaveV2``).
- **TFLite** (:func:`check_tflite`): builtin operators only; custom operators (among them the
  Flex ones, TensorFlow ops run through the Select TF delegate) are refused.
- **ONNX** (:func:`check_onnx`): operators of the standard domains (:data:`ONNX_DOMAINS`) only,
  in the main graph, every subgraph and every model-local function.

``trusted=True`` (``--trust-graph``) skips the check; the caller records it in provenance.

Examples
--------
>>> check_saved_model("exported/sm")  # returns, or raises GraphError naming the op
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import GraphError

#: The option that runs a graph holding ops outside the allow-list.
TRUST_OPTION = "--trust-graph"
#: The allow-list of SavedModel ops, by side (``inference``, ``restore``, ``save``).
ALLOWED_OPS_FILE = Path(__file__).with_name("graph_ops.json")
#: The ONNX operator domains of the standard (``""`` is ``ai.onnx``).
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
#: Ops that read or write files, run Python, print, or read memory-mapped files: never on the
#: allow-list, on any side (``data/make_graph_ops.py`` refuses to write a list holding one).
NEVER_ALLOWED = frozenset(
    {
        "DebugIdentity",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "EagerPyFunc",
        "FixedLengthRecordReaderV2",
        "IdentityReaderV2",
        "ImmutableConst",
        "LMDBReader",
        "MatchingFiles",
        "MatchingFilesDataset",
        "Print",
        "PrintV2",
        "PyFunc",
        "PyFuncStateless",
        "ReadFile",
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TFRecordReaderV2",
        "TextLineDataset",
        "TextLineReaderV2",
        "WholeFileReaderV2",
        "WriteAudioSummary",
        "WriteFile",
        "WriteGraphSummary",
        "WriteHistogramSummary",
        "WriteImageSummary",
        "WriteRawProtoSummary",
        "WriteScalarSummary",
        "WriteSummary",
    }
)
#: Checkpoint ops allowed only on their saver side (``restore`` or ``save``), never at inference.
CHECKPOINT_OPS = {
    "restore": frozenset({"Restore", "RestoreSlice", "RestoreV2"}),
    "save": frozenset({"MergeV2Checkpoints", "Save", "SaveSlices", "SaveV2"}),
}
_SIDES = ("inference", "restore", "save")


def _refusal(path: Path, op: str, where: str, what: str) -> GraphError:
    return GraphError(
        f"{path} runs the {what} {op!r} ({where}), which bottleneck does not run from a model "
        f"file: a graph is a program and this op can reach beyond the model (files, network, "
        f"Python). Pass {TRUST_OPTION} only if you trust where the model comes from"
    )


# ----------------------------------------------------------------------------- SavedModel


@functools.cache
def allowed_ops() -> dict[str, frozenset[str]]:
    """The ops each side of a SavedModel may run: ``inference``, ``restore`` and ``save``
    (the last two include the inference ops)."""
    listed = json.loads(ALLOWED_OPS_FILE.read_text(encoding="utf-8"))
    inference = frozenset(listed["inference"])
    return {
        "inference": inference,
        "restore": inference | frozenset(listed["restore"]),
        "save": inference | frozenset(listed["save"]),
    }


def read_saved_model(folder: str | Path) -> Any:
    """The ``SavedModel`` protobuf of ``folder`` (``saved_model.pb`` or ``.pbtxt``), parsed
    without loading or running anything.

    Raises
    ------
    GraphError
        If neither file is there or it is not a SavedModel protobuf.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    folder = Path(folder)
    proto = saved_model_pb2.SavedModel()
    binary, text = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        elif text.is_file():
            text_format.Parse(text.read_text(encoding="utf-8"), proto)
        else:
            raise GraphError(f"{folder} holds no saved_model.pb: not a SavedModel folder")
    except (OSError, UnicodeDecodeError, message.DecodeError, text_format.ParseError) as exc:
        raise GraphError(
            f"cannot read {folder} as a SavedModel ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:200]}); give a folder model.export() wrote"
        ) from exc
    return proto


def _node_name(tensor: str) -> str:
    """``"^name"``, ``"name:0"`` -> ``"name"``."""
    return tensor.lstrip("^").split(":")[0]


def _ancestors(roots: Iterable[str], nodes: dict[str, Any]) -> set[str]:
    """``roots`` and every main-graph node they take an input from, transitively."""
    seen: set[str] = set()
    stack = [name for name in roots if name in nodes]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack += [_node_name(i) for i in nodes[name].input if _node_name(i) in nodes]
    return seen


def _references(node: Any, library: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The library functions ``node`` calls, and the primitive ops it names as functions
    (``StatefulPartitionedCall(f=WriteFile)`` runs ``WriteFile``)."""
    names = {node.op} if node.op in library else set()
    for value in node.attr.values():
        if value.HasField("func"):
            names.add(value.func.name)
        if value.HasField("list"):
            names.update(func.name for func in value.list.func)
    return names & library.keys(), names - library.keys()


def _reach(calls: Iterable[str], library: dict[str, Any]) -> set[str]:
    """``calls`` and every library function they call, transitively."""
    seen: set[str] = set()
    stack = list(calls)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            for node in library[name].node_def:
                stack += _references(node, library)[0]
    return seen


def _ops(nodes: Iterable[Any], library: dict[str, Any]) -> set[str]:
    """The ops ``nodes`` run themselves (a call of a library function is not one)."""
    found: set[str] = set()
    for node in nodes:
        if node.op not in library:
            found.add(node.op)
        found |= _references(node, library)[1]
    return found


def meta_graph_ops(meta_graph: Any) -> Iterator[tuple[str, str, set[str]]]:
    """``(side, where, ops)`` of every part of a MetaGraphDef: its main graph split by side,
    then each library function, on the side of the strictest part that reaches it.

    The ``restore`` and ``save`` sides are what only the ``saver_def``'s restore and save
    ops reach (TF1 loaders run the restore side); anything a signature, a collection (init
    ops) or the object graph reaches, and any function nothing reaches, is ``inference``.
    """
    graph = meta_graph.graph_def
    library = {function.signature.name: function for function in graph.library.function}
    nodes = {node.name: node for node in graph.node}
    signatures = meta_graph.signature_def.values()
    roots = {
        _node_name(tensor.name)
        for signature in signatures
        for tensor in (*signature.inputs.values(), *signature.outputs.values())
    }
    for collection in meta_graph.collection_def.values():
        roots |= {_node_name(name) for name in collection.node_list.value}
    used = _ancestors(roots, nodes)
    saver = meta_graph.saver_def
    restore = _ancestors([_node_name(saver.restore_op_name)], nodes) - used
    save = _ancestors([_node_name(saver.save_tensor_name)], nodes) - used - restore
    inference = nodes.keys() - restore - save
    sides = {"inference": inference, "restore": restore, "save": save}
    graph_calls = {
        side: set().union(*(_references(nodes[n], library)[0] for n in names))
        for side, names in sides.items()
    }
    objects = meta_graph.object_graph_def
    graph_calls["inference"] |= set(objects.concrete_functions) & library.keys()
    reached = {side: _reach(calls, library) for side, calls in graph_calls.items()}
    functions = {
        "restore": reached["restore"] - reached["inference"],
        "save": reached["save"] - reached["inference"] - reached["restore"],
    }
    functions["inference"] = library.keys() - functions["restore"] - functions["save"]
    for side in _SIDES:
        yield side, "the main graph", _ops((nodes[n] for n in sides[side]), library)
        for name in sorted(functions[side]):
            yield side, f"function {name}", _ops(library[name].node_def, library)


def saved_model_ops(folder: str | Path) -> dict[str, set[str]]:
    """Every op a SavedModel holds, by side (see :func:`meta_graph_ops`)."""
    found: dict[str, set[str]] = {side: set() for side in _SIDES}
    for meta_graph in read_saved_model(folder).meta_graphs:
        for side, _, ops in meta_graph_ops(meta_graph):
            found[side] |= ops
    return found


def check_saved_model(folder: str | Path, *, trusted: bool = False) -> None:
    """Refuse a SavedModel holding an op outside :func:`allowed_ops` (unless ``trusted``).

    Raises
    ------
    GraphError
        Naming the first such op (by name), where it is, and :data:`TRUST_OPTION`.
    """
    if trusted:
        return
    folder = Path(folder)
    allowed = allowed_ops()
    refused = []
    for meta_graph in read_saved_model(folder).meta_graphs:
        for side, where, ops in meta_graph_ops(meta_graph):
            refused += [(op, where) for op in ops - allowed[side]]
    if refused:
        op, where = min(refused)
        raise _refusal(folder, op, f"in {where}", "op")


# ----------------------------------------------------------------------------- TFLite


def tflite_custom_ops(path: str | Path) -> list[str]:
    """The custom operators of a TFLite model (Flex ops are named ``Flex<TF op>``), read from
    its flatbuffer without loading it.

    Raises
    ------
    GraphError
        If the file is not a TFLite flatbuffer.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    path = Path(path)
    try:
        buffer = path.read_bytes()
        if len(buffer) < 8 or not schema.Model.ModelBufferHasIdentifier(buffer, 0):
            raise ValueError("no TFL3 identifier")
        model = schema.Model.GetRootAs(buffer, 0)
        custom = []
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom.append((code.CustomCode() or b"").decode("utf-8", "replace"))
    except Exception as exc:  # a damaged flatbuffer fails anywhere in the generated reader
        raise GraphError(
            f"cannot read {path} as a TFLite model ({type(exc).__name__}: {exc}); give a "
            "file `bottleneck export --format tflite` wrote"
        ) from exc
    return custom


def check_tflite(path: str | Path, *, trusted: bool = False) -> None:
    """Refuse a TFLite model with custom or Flex operators (unless ``trusted``).

    Raises
    ------
    GraphError
        Naming the first such operator and :data:`TRUST_OPTION`.
    """
    if trusted:
        return
    custom = tflite_custom_ops(path)
    if custom:
        op = custom[0]
        what = "Flex (TensorFlow) op" if op.startswith("Flex") else "custom op"
        raise _refusal(Path(path), op, "not a TFLite builtin", what)


# ----------------------------------------------------------------------------- ONNX


def _onnx_graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph of its nodes' attributes (If, Loop, Scan), nested."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _onnx_graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _onnx_graphs(sub)


def onnx_ops(path: str | Path) -> set[tuple[str, str]]:
    """``(domain, op_type)`` of every node of an ONNX model: the main graph, subgraphs and
    model-local functions; read with ``onnx`` (no external data, no session), which the
    caller checked is installed.

    Raises
    ------
    GraphError
        If the file is not an ONNX model.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors
        raise GraphError(
            f"cannot read {path} as an ONNX model ({type(exc).__name__}); give a file "
            "`bottleneck export --format onnx` wrote"
        ) from exc
    found = set()
    for graph in _onnx_graphs(model.graph):
        found |= {(node.domain, node.op_type) for node in graph.node}
    for function in model.functions:
        found.add((function.domain, function.name))
        found |= {(node.domain, node.op_type) for node in function.node}
    return found


def check_onnx(path: str | Path, *, trusted: bool = False) -> None:
    """Refuse an ONNX model with operators outside :data:`ONNX_DOMAINS` (unless ``trusted``).

    Raises
    ------
    GraphError
        Naming the first such operator, its domain, and :data:`TRUST_OPTION`.
    """
    if trusted:
        return
    custom = sorted((d, op) for d, op in onnx_ops(path) if d not in ONNX_DOMAINS)
    if custom:
        domain, op = custom[0]
        raise _refusal(Path(path), op, f"domain {domain!r}, not a standard ONNX one", "operator")
