"""What a base is (``bottleneck info-base``): an ONNX file's inputs, outputs, operator domains
and metadata, read without running it; any other base as :func:`features.bases.load_base`
builds it (its input, feature size and description).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.bases import onnx_graph as og
from bottleneck_transfer.features.bases.registry import base_kind
from bottleneck_transfer.graphs import ONNX_DOMAINS, onnx_ops


def onnx_info(path: Path, layout: str | None = None) -> dict[str, Any]:
    """An ONNX file's inputs and outputs (name, shape, dtype), operator domains (version,
    ops, whether standard), metadata and the layout its input shows (or why not)."""
    og.require_onnx("info-base of an ONNX file")
    model = og.read_model(path)
    ops: dict[str, set[str]] = {}
    for domain, op in onnx_ops(path):
        ops.setdefault(domain or "ai.onnx", set()).add(op)
    versions = og.domains(model)
    domains = [
        {
            "domain": name,
            "version": versions.get(name),
            "standard": name in ONNX_DOMAINS,
            "ops": sorted(ops.get(name, ())),
        }
        for name in sorted(set(ops) | set(versions))
    ]
    meta = og.metadata(model)
    first = (og.inputs(model) or [None])[0]
    try:
        shape = first.shape if first is not None and first.shape is not None else ()
        found = og.detect_layout(shape, layout or meta.get("layout"), path)
    except BottleneckError as exc:
        found = f"? ({exc})"
    return {
        "base": path.name,
        "kind": "onnx_file",
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ir_version": int(model.ir_version),
        "inputs": [t.to_dict() for t in og.inputs(model)],
        "outputs": [t.to_dict() for t in og.outputs(model)],
        "domains": domains,
        "layout": found,
        "metadata": meta,
        "nodes": len(model.graph.node),
    }


def base_info(base: str | Path, **settings: Any) -> dict[str, Any]:
    """:func:`onnx_info` of an ONNX file (``settings``: its ``layout``), else the base
    ``load_base(base, **settings)`` builds: its kind, input, feature size and description."""
    kind = base_kind(base)
    if kind.KIND == "onnx_file":
        from bottleneck_transfer.features.bases import hub

        return onnx_info(hub.spelled_path(base), settings.get("layout"))
    built = load_base(base, **settings)
    return {
        "base": built.name,
        "kind": kind.KIND,
        "input": [*built.image_size, built.channels],
        "features": built.dim,
        "description": built.description,
    }


def info_lines(info: dict[str, Any]) -> list[str]:
    """``info`` as the lines ``bottleneck info-base`` prints."""
    if info["kind"] != "onnx_file":
        lines = [
            f"base         {info['base']} ({info['kind']})",
            f"input        {'x'.join(map(str, info['input']))}  features {info['features']}",
        ]
        return lines + [f"  {key:<22} {value}" for key, value in info["description"].items()]

    def tensor(t: dict) -> str:
        shape = "?" if t["shape"] is None else "x".join(map(str, t["shape"]))
        return f"  {t['name']:<28} {shape:<20} {t['dtype']}"

    lines = [
        f"base         {info['base']} (ONNX, {info['producer'] or 'unknown producer'}, "
        f"IR {info['ir_version']}, {info['nodes']} nodes)",
        f"layout       {info['layout']}",
        "inputs",
        *map(tensor, info["inputs"]),
        "outputs",
        *map(tensor, info["outputs"]),
        "domains",
    ]
    for d in info["domains"]:
        mark = "standard" if d["standard"] else "NOT standard: refused without --trust-graph"
        lines.append(f"  {d['domain']:<16} opset {d['version']}  {mark}: {', '.join(d['ops'])}")
    if info["metadata"]:
        lines.append("metadata")
        lines += [f"  {key:<22} {value}" for key, value in info["metadata"].items()]
    return lines
