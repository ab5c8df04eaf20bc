"""A graph is a program: hostile SavedModel, TFLite and ONNX models are refused before they run.

Each hostile model writes (or would write) a file when its graph runs; the tests assert the
command exits non-zero with one line naming the op and ``--trust-graph``, and that the file
is not there. With ``--trust-graph`` the same model runs (and writes), which shows the model
is really hostile and the option really opts in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer import graphs
from bottleneck_transfer.cli import cli
from bottleneck_transfer.errors import GraphError
from bottleneck_transfer.features.cache import FeatureCache
from click.testing import CliRunner
from graph_fixtures import SIZE, save_hostile_saved_model
from hub_fixtures import save_images, save_saved_model

METADATA = {
    "format": "bottleneck-export",
    "format_version": 1,
    "classes": ["blue", "red"],
    "input_shape": [SIZE, SIZE, 3],
}


def _one_error_line(result) -> str:
    """The CLI's one error line (exit code 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return save_images(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize(("kind", "op"), [("direct", "WriteFile"), ("nested", "WriteFile"),
                                          ("print", "PrintV2")])  # fmt: skip
def test_a_hostile_savedmodel_base_is_refused_before_it_runs(tmp_path, images, kind, op):
    target = tmp_path / "written.txt"
    folder = save_hostile_saved_model(tmp_path / "hostile", target, kind)
    args = ["extract", str(images), "--base", str(folder), "--preprocess", "unit"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "c.h5")])
    line = _one_error_line(result)
    assert f"'{op}'" in line and "--trust-graph" in line and str(folder) in line
    assert not target.exists()
    assert not (tmp_path / "c.h5").exists()


def test_trust_graph_runs_it_and_is_recorded_in_provenance_and_fingerprint(tmp_path, images):
    target = tmp_path / "written.txt"
    folder = save_hostile_saved_model(tmp_path / "hostile", target)
    args = ["extract", str(images), "--base", str(folder), "--preprocess", "unit", "--quiet"]
    trusted = CliRunner().invoke(cli, [*args, "--trust-graph", "-o", str(tmp_path / "t.h5")])
    assert trusted.exit_code == 0, trusted.output
    assert target.read_text() == "written by a model"  # the graph did run: it is hostile
    with FeatureCache.open(tmp_path / "t.h5") as cache:
        assert cache.provenance["base"]["trust_graph"] is True
        trusted_print = cache.fingerprint
    benign = save_saved_model(tmp_path / "benign")
    plain = ["extract", str(images), "--base", str(benign), "--preprocess", "unit", "--quiet"]
    for name, extra in (("b.h5", []), ("bt.h5", ["--trust-graph"])):
        assert CliRunner().invoke(cli, [*plain, *extra, "-o", str(tmp_path / name)]).exit_code == 0
    with FeatureCache.open(tmp_path / "b.h5") as b, FeatureCache.open(tmp_path / "bt.h5") as bt:
        assert "trust_graph" not in b.provenance["base"]
        assert bt.provenance["base"]["trust_graph"] is True
        assert len({b.fingerprint, bt.fingerprint, trusted_print}) == 3


def test_a_hostile_savedmodel_export_is_refused_by_predict(tmp_path, images):
    target = tmp_path / "written.txt"
    folder = save_hostile_saved_model(tmp_path / "export", target, dtype="uint8")
    (folder / "bottleneck.json").write_text(json.dumps(METADATA))
    args = ["predict", str(folder), str(images)]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert "'WriteFile'" in line and "--trust-graph" in line
    assert not target.exists()
    trusted = CliRunner().invoke(cli, [*args, "--trust-graph"])
    assert trusted.exit_code == 0, trusted.output
    assert target.read_text() == "written by a model"  # trusted, it ran


def test_finetune_refuses_a_converted_form_without_reading_its_graph(tmp_path):
    target = tmp_path / "written.txt"
    folder = save_hostile_saved_model(tmp_path / "export", target, dtype="uint8")
    (folder / "bottleneck.json").write_text(json.dumps(METADATA))
    result = CliRunner().invoke(
        cli, ["finetune", str(folder), str(tmp_path), "--val-split", "0.5", "-o", "t.keras"]
    )
    assert "cannot be fine-tuned" in _one_error_line(result)
    assert not target.exists()


def _write_tflite(path: Path, custom_code: str) -> Path:
    """A TFLite flatbuffer with one custom operator and bottleneck metadata."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = custom_code.encode()
    tensor = schema.TensorT()
    tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, SIZE, SIZE, 3], 3, 0, b"x"
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [0]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = [tensor], [0], [0]
    subgraph.operators = [operator]
    meta = schema.BufferT()
    meta.data = np.frombuffer(json.dumps(METADATA).encode(), np.uint8)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"bottleneck", 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers, model.metadata = [schema.BufferT(), meta], [entry]
    flatbuffer_utils.write_model(model, str(path))
    return path


@pytest.mark.parametrize("op", ["FlexWriteFile", "SocketOpen"])
def test_tflite_custom_and_flex_ops_are_refused_in_one_line(tmp_path, images, op):
    path = _write_tflite(tmp_path / "model.tflite", op)
    line = _one_error_line(CliRunner().invoke(cli, ["predict", str(path), str(images)]))
    assert f"'{op}'" in line and "--trust-graph" in line
    kind = "Flex (TensorFlow) op" if op.startswith("Flex") else "custom op"
    assert kind in line
    assert graphs.tflite_custom_ops(path) == [op]
    graphs.check_tflite(path, trusted=True)  # --trust-graph: the runtime decides


def _write_onnx(path: Path, domain: str, nested: bool) -> Path:
    """An ONNX model running ``domain``'s ``Exfiltrate``, in an If's branch when ``nested``."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [None, SIZE, SIZE, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    custom = helper.make_node("Exfiltrate", ["x"], ["y"], domain=domain)
    if nested:
        branch = helper.make_graph([custom], "branch", [], [y])
        cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", 9, [], [1]))
        node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
        nodes = [cond, node]
    else:
        nodes = [custom]
    graph = helper.make_graph(nodes, "hostile", [x], [y])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    helper.set_model_props(model, {"bottleneck": json.dumps(METADATA)})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("nested", [False, True])
def test_onnx_operators_outside_the_standard_domains_are_refused(tmp_path, images, nested):
    path = _write_onnx(tmp_path / "model.onnx", "com.evil", nested)
    line = _one_error_line(CliRunner().invoke(cli, ["predict", str(path), str(images)]))
    assert "'Exfiltrate'" in line and "'com.evil'" in line and "--trust-graph" in line
    assert graphs.onnx_ops(path) >= {("com.evil", "Exfiltrate")}


def test_the_allow_list_holds_no_file_python_or_misplaced_checkpoint_op():
    allowed = graphs.allowed_ops()
    assert allowed["inference"] and not allowed["inference"] & graphs.NEVER_ALLOWED
    for side, ops in allowed.items():
        assert not ops & graphs.NEVER_ALLOWED
        misplaced = set().union(*(v for k, v in graphs.CHECKPOINT_OPS.items() if k != side))
        assert not ops & misplaced, side


def test_the_tools_own_savedmodel_passes_and_a_copy_with_a_primitive_call_does_not(tmp_path):
    """The tiny SavedModel the hub tests use is accepted; the same file with one call node
    re-pointed at ``WriteFile`` (a primitive op named as a function) is refused."""
    folder = save_saved_model(tmp_path / "own")
    graphs.check_saved_model(folder)
    found = graphs.saved_model_ops(folder)
    assert found["inference"] <= graphs.allowed_ops()["inference"]
    assert "RestoreV2" in found["restore"] and "SaveV2" in found["save"]
    assert "SaveV2" not in found["inference"] | found["restore"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    proto = graphs.read_saved_model(copy)
    call = next(n for f in proto.meta_graphs[0].graph_def.library.function for n in f.node_def
                if n.op == "StatefulPartitionedCall")  # fmt: skip
    call.attr["f"].func.name = "WriteFile"
    (copy / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(GraphError, match=r"'WriteFile' \(in function __inference") as raised:
        graphs.check_saved_model(copy)
    assert "\n" not in str(raised.value)


def test_an_unreadable_savedmodel_is_one_line(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(GraphError, match="cannot read") as raised:
        graphs.check_saved_model(tmp_path)
    assert "\n" not in str(raised.value)
    (tmp_path / "bad.tflite").write_bytes(b"garbage")
    with pytest.raises(GraphError, match=r"cannot read .* as a TFLite model"):
        graphs.check_tflite(tmp_path / "bad.tflite")


SPEC = """
[data]
train = "{images}"
test = "{images}"

[base]
name = "./hostile"
preprocess = "unit"
{trust}
"""


def test_a_pipeline_spec_base_is_checked_too_and_trust_graph_is_its_opt_in(tmp_path, images):
    target = tmp_path / "written.txt"
    save_hostile_saved_model(tmp_path / "hostile", target)
    spec = tmp_path / "spec.toml"
    args = ["run", str(spec), "--dry-run", "--cache-dir", str(tmp_path / "store")]
    spec.write_text(SPEC.format(images=images, trust=""))
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert "'WriteFile'" in line and "--trust-graph" in line and not target.exists()
    spec.write_text(SPEC.format(images=images, trust="trust_graph = true"))
    trusted = CliRunner().invoke(cli, args)
    assert trusted.exit_code == 0, trusted.output
