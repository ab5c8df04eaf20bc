"""The one loader of skops files: nothing outside a head kind's declared classes is loaded.

skops itself trusts many types by default (every scikit-learn estimator, including
``FunctionTransformer``, which calls any function it names). So :func:`load_trusted` reads
the file's schema first, without building anything, lists every type it names, and refuses
the file unless each is one of the exact classes the registry declares for the head's kind
(:func:`~bottleneck_transfer.heads.registry.trusted_type_names`). Functions, methods and
partials are refused whatever their name. Only then is the file loaded, trusting exactly the
types found. Saved heads (``bottleneck train``), memoized fits and the ``head.skops`` of an
export folder all load through it.

Before the schema is parsed, the file's size, its members' count and decompressed sizes (as
the zip directory states them, the bound the reader then holds to), each member's
compression ratio and the schema's size, nesting and list lengths are checked against
:mod:`~bottleneck_transfer.limits`, so a decompression bomb or a schema built to exhaust the
parser is refused in one line.
"""

from __future__ import annotations

import importlib
import io
import json
import lzma
import sys
import zipfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from bottleneck_transfer import limits
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.registry import (
    SKOPS_CONTAINER_TYPES,
    head_kind,
    head_names,
    trusted_type_names,
)
from bottleneck_transfer.limits import load_json, over, regular_file_size


def skops_io() -> ModuleType:
    """``skops.io``, imported without its list of every scikit-learn estimator.

    Importing ``skops.io`` lists every scikit-learn estimator class as the types its loaders
    trust by default, which imports every scikit-learn package (and PyTorch, Dask and pytest
    through them: seconds, more than a head's fit). This package never loads on that default
    (:func:`load_trusted` names each type it trusts), so here the list is left empty: in this
    process skops trusts only the types a load names. Every use of skops in this package
    imports it through here.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    walk = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    try:
        return importlib.import_module("skops.io")
    finally:
        sklearn.utils.all_estimators = walk


#: skops loaders that rebuild a callable rather than an object: never trusted.
CALLABLE_LOADERS = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"})


#: What reading a damaged or hostile zip raises (truncated, bit-flipped, encrypted, odd codec).
_ZIP_ERRORS = (
    OSError,
    EOFError,
    KeyError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)
#: What to do about a head file that is refused.
_TODO = "only load heads you saved yourself with `bottleneck train`"


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse too many members, too much decompressed data, or a member compressed too well."""
    total = sum(member.file_size for member in members)
    ratio, name = max(
        ((member.file_size / max(member.compress_size, 1), member.filename) for member in members),
        default=(0.0, ""),
    )
    problem = (
        over("a zip of", len(members), "MAX_HEAD_MEMBERS", " members")
        if len(members) > limits.MAX_HEAD_MEMBERS
        else over("members decompressing to", total, "MAX_HEAD_UNCOMPRESSED_BYTES", " bytes")
        if total > limits.MAX_HEAD_UNCOMPRESSED_BYTES
        else over(f"member {name!r} compressed", round(ratio), "MAX_HEAD_COMPRESSION_RATIO", ":1")
        if ratio > limits.MAX_HEAD_COMPRESSION_RATIO
        else None
    )
    if problem:
        raise HeadError(f"{path} is refused before unpacking: {problem}; {_TODO}")


def _schema(path: Path) -> dict:
    """The schema of a skops file, read within :mod:`~bottleneck_transfer.limits`."""
    regular_file_size(path, "MAX_HEAD_BYTES", HeadError, "a skops head file", _TODO)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive.infolist())
            with archive.open("schema.json") as member:
                text = member.read(limits.MAX_HEAD_SCHEMA_BYTES + 1)
    except _ZIP_ERRORS as exc:
        raise HeadError(f"{path} is not a skops head file ({exc}); save heads with skops") from exc
    if len(text) > limits.MAX_HEAD_SCHEMA_BYTES:
        size = over("a schema.json over", len(text) - 1, "MAX_HEAD_SCHEMA_BYTES", " bytes")
        raise HeadError(f"{path}: {size}; {_TODO}")
    schema = load_json(text, f"{path}: schema.json", HeadError, _TODO)
    if not isinstance(schema, dict):
        raise HeadError(
            f"{path}: schema.json holds a JSON {type(schema).__name__}, not the object of a "
            f"skops file; {_TODO}"
        )
    return schema


def _types(schema: dict) -> tuple[set[str], set[str]]:
    """The types and the callables named anywhere in a skops schema."""
    types: set[str] = set()
    callables: set[str] = set()
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                name = f"{node['__module__']}.{node['__class__']}"
                (callables if node.get("__loader__") in CALLABLE_LOADERS else types).add(name)
            pending += node.values()
        elif isinstance(node, list):
            pending += node
    return types, callables


def file_types(path: str | Path) -> tuple[set[str], set[str]]:
    """The types and the callables a skops file names, read from its schema (nothing runs).

    Raises
    ------
    HeadError
        If ``path`` is not a skops file.
    """
    return _types(_schema(Path(path)))


def declared_kind(path: str | Path) -> str | None:
    """The head spec in a head file's metadata (``{"head": ..., "meta": "<JSON>"}``), if any.

    Read from the schema as a JSON string, without loading anything.
    """
    schema = _schema(Path(path))
    content = schema.get("content") if schema.get("__class__") == "dict" else None
    meta = content.get("meta") if isinstance(content, dict) else None
    if not isinstance(meta, dict) or meta.get("__loader__") != "JsonNode":
        return None
    try:
        spec = load_json(json.loads(meta["content"]), f"{path}: meta", HeadError, _TODO)["head"]
    except (HeadError, ValueError, TypeError, KeyError):
        return None
    return spec if isinstance(spec, str) else None


def load_trusted(path: str | Path, kind: str | None = None) -> Any:
    """Load a skops file holding a head of ``kind``, refusing any type the kind does not declare.

    Parameters
    ----------
    path : str or Path
        A skops file.
    kind : str, optional
        The head kind (or spec); by default the one its metadata names (head files).

    Raises
    ------
    HeadError
        If the file is missing or not a skops file, names no registered kind, or holds a
        type outside the kind's allow-list or any function (naming them).
    """
    path = Path(path)
    if not path.is_file():
        raise HeadError(f"head file not found: {path}; train one with `bottleneck train`")
    types, callables = file_types(path)
    spec = kind if kind is not None else declared_kind(path)
    try:
        declared = None if spec is None else head_kind(spec)
    except HeadError as exc:
        raise HeadError(f"{path} holds a head of no registered kind: {exc}") from exc
    allowed = SKOPS_CONTAINER_TYPES if declared is None else trusted_type_names(declared)
    refused = sorted(callables) + sorted(types - allowed)
    owner = "a file that names no head kind" if declared is None else f"head kind {declared.name!r}"
    if refused:
        raise HeadError(
            f"{path} holds types outside the allow-list ({', '.join(refused)}) of {owner}; "
            "refusing to load it: only load heads you saved yourself"
        )
    if declared is None:
        raise HeadError(f"{path} names no head kind; save heads with `bottleneck train`")
    try:
        return skops_io().load(path, trusted=sorted(types))
    except Exception as exc:
        raise HeadError(f"cannot load the head {path}: {type(exc).__name__}: {exc}") from exc


def kind_of(estimator: Any) -> str | None:
    """The first registered kind whose allow-list covers every type of ``estimator``, if any.

    For heads built outside :func:`~bottleneck_transfer.heads.registry.make_head` (an
    estimator handed to ``export``): their folder export can only be loaded back as a kind.
    """
    with zipfile.ZipFile(io.BytesIO(skops_io().dumps(estimator))) as archive:
        types, callables = _types(json.loads(archive.read("schema.json")))
    if callables:
        return None
    return next(
        (name for name in head_names() if types <= trusted_type_names(head_kind(name))), None
    )
