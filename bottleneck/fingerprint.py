"""Canonical JSON and sha256 fingerprints of everything a cache depends on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    """Return ``"sha256:<hex>"`` of a text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(obj: Any) -> str:
    """Fingerprint a JSON-able object: sha256 of its canonical JSON."""
    return sha256_text(canonical_json(obj))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Return ``"sha256:<hex>"`` of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def sha256_arrays(arrays: Iterable[np.ndarray]) -> str:
    """Return ``"sha256:<hex>"`` over the dtype, shape and bytes of each array, in order
    (read one at a time: a generator hashes without holding them all)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return "sha256:" + digest.hexdigest()


def diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """List the dotted keys whose values differ between two JSON-like objects."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        out: list[str] = []
        for key in keys:
            out += diff_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "<root>"]
