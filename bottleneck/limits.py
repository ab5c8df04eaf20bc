"""Limits on what the loaders read, checked before anything is parsed or allocated.

Every limit is a named constant here; a refusal names the constant, its value and what was
found (:func:`over`). The guards:

- :func:`regular_file_size`: a path is a regular file no larger than a limit (a FIFO, a
  device or a folder is never opened);
- :func:`check_json` / :func:`load_json`: JSON text no deeper and no longer per list or
  object than :data:`MAX_JSON_DEPTH` and :data:`MAX_JSON_ITEMS`, measured on the text before
  :mod:`json` recurses into it;
- :func:`nesting`: the deepest bracket nesting of a text, for JSON and TOML alike.

Saved heads (skops zips), pipeline specs (TOML) and feature caches (HDF5) each check their own
sizes with these constants: :mod:`~bottleneck_transfer.heads.trust`,
:mod:`~bottleneck_transfer.pipeline.spec`, :mod:`~bottleneck_transfer.features.cache`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.regular import file_kind

#: A saved head (``.skops``) on disk. A knn head on 60,000 x 1,280 float64 features is 0.6 GB.
MAX_HEAD_BYTES = 2 * 2**30
#: The sum of a head file's members once decompressed (as its zip directory states them).
MAX_HEAD_UNCOMPRESSED_BYTES = 2 * 2**30
#: Decompressed / compressed size of any one member (skops stores members uncompressed: 1).
MAX_HEAD_COMPRESSION_RATIO = 20
#: Members of a head file (one per array; a head has tens).
MAX_HEAD_MEMBERS = 10_000
#: A head file's ``schema.json`` (a head's schema is about 25 KB; its arrays are members).
MAX_HEAD_SCHEMA_BYTES = 2**20
#: Nesting of JSON read from files (a head's schema nests about 20 deep).
MAX_JSON_DEPTH = 100
#: Values in any one JSON list or object.
MAX_JSON_ITEMS = 100_000
#: A pipeline spec (``.toml``); shipped specs are about 1 KB.
MAX_SPEC_BYTES = 2**20
#: Nesting of a pipeline spec's tables, arrays and inline tables (specs nest 3 deep).
MAX_SPEC_DEPTH = 16
#: Decompressed / stored bytes of a feature cache's compressed datasets, against the file's
#: size (lzf and gzip shrink float features well under 4 x).
MAX_CACHE_COMPRESSION_RATIO = 64
#: One string of a cache (an id is a path, a reason one line).
MAX_CACHE_STRING_BYTES = 65_536

#: A JSON string, or an unterminated one up to the end: one left-to-right pass, never a retry.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)


def over(what: str, amount: int, limit: str, unit: str = "") -> str:
    """``"<what> <amount><unit> is over bottleneck_transfer.limits.<limit> = <value><unit>"``."""
    value = globals()[limit]
    return f"{what} {amount:,}{unit} is over bottleneck_transfer.limits.{limit} = {value:,}{unit}"


def regular_file_size(
    path: str | Path, limit: str | None, error: type[BottleneckError], what: str, todo: str
) -> int:
    """The size of ``path`` if it is a regular file within ``limit``, else ``error``.

    Parameters
    ----------
    path : str or Path
        The file to check (it is not opened).
    limit : str or None
        The name of the limit in this module, e.g. ``"MAX_SPEC_BYTES"``; None for no limit.
    error : type
        The error class to raise.
    what : str
        What the file should be, e.g. ``"a pipeline spec"``.
    todo : str
        What to do about an oversized file.

    Raises
    ------
    error
        If ``path`` is missing, not a regular file (a folder, FIFO, device, socket) or larger
        than the limit.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        kind = file_kind(path, follow=True)
        raise error(f"{path} is {kind}, not a regular file; give {what} (a regular file)")
    if limit is not None and info.st_size > globals()[limit]:
        raise error(f"{path}: {over('a file of', info.st_size, limit, ' bytes')}; {todo}")
    return info.st_size


def _structure(text: bytes) -> np.ndarray:
    """The brackets and commas of JSON ``text`` outside its strings, as bytes."""
    bare = _JSON_STRING.sub(b'""', text)
    return np.frombuffer(re.sub(rb"[^\[\]{},]", b"", bare), np.uint8)


def nesting(structure: np.ndarray) -> np.ndarray:
    """The bracket depth after each byte of ``structure`` (``[``/``{`` open, ``]``/``}`` close)."""
    opens = (structure == ord("[")) | (structure == ord("{"))
    closes = (structure == ord("]")) | (structure == ord("}"))
    return np.cumsum(opens.astype(np.int64) - closes)


def _longest(structure: np.ndarray, depth: np.ndarray) -> int:
    """The most values in one list or object: each comma belongs to the last opening bracket
    before it at its depth."""
    opens = (structure == ord("[")) | (structure == ord("{"))
    keep = np.flatnonzero(opens | (structure == ord(",")))
    if not keep.size:
        return 0
    order = keep[np.argsort(depth[keep], kind="stable")]
    container = np.cumsum(opens[order])
    commas = container[~opens[order]]
    return int(np.bincount(commas).max()) + 1 if commas.size else 1


def check_json(text: str | bytes, where: str, error: type[BottleneckError], todo: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` or with a list or object of more
    than :data:`MAX_JSON_ITEMS` values, from the text alone (nothing is parsed)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    structure = _structure(raw)
    depth = nesting(structure)
    deepest = int(depth.max()) if depth.size else 0
    longest = _longest(structure, depth)
    problem = (
        over("JSON nested", deepest, "MAX_JSON_DEPTH", " deep")
        if deepest > MAX_JSON_DEPTH
        else over("a JSON list or object of", longest, "MAX_JSON_ITEMS", " values")
        if longest > MAX_JSON_ITEMS
        else None
    )
    if problem:
        raise error(f"{where}: {problem}; {todo}")


def load_json(text: str | bytes, where: str, error: type[BottleneckError], todo: str) -> Any:
    """``json.loads(text)`` after :func:`check_json`; malformed JSON is ``error`` too."""
    check_json(text, where, error, todo)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{where} is not valid JSON ({exc}); {todo}") from exc
