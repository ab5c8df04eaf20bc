"""Target kinds: what a cache's rows are labelled with, read from a manifest's column.

``class`` (one class per image, the default; labels index ``class_names``), ``binary`` (a
class target of two values, negative then positive), ``multilabel`` (a ``|``-separated tag
list per image) and ``regression`` (one number per image). The option ``--target`` is a spec
``KIND[:KEY=VALUE,...]``; its keys:

``column``
    The manifest column holding the target (default ``label``).
``positive``
    ``binary``: the positive value (default: the second in sorted order, e.g. ``1``, ``yes``).
``unit``
    ``regression``: the value's unit (e.g. ``years``), shown with it.
``empty``
    ``multilabel``: ``true`` lets an image have no tags (default: an empty list is refused).

A cache records its target in its identity (``identity["target"]``) and the root attribute
``target`` (JSON); multi-label and regression caches hold the values in ``/targets`` (float32
``(N, K)`` tag indicators, ``(N, 1)`` values). A cache without it (format version 1 as it
was) is a class target.

Examples
--------
>>> kind, rows = read_target([(2, "a|b"), (3, "b")], parse_target_spec("multilabel"), "m.csv")
>>> kind.names, rows
(('a', 'b'), ['a|b', 'b'])
>>> target_values(rows, kind).tolist()
[[1.0, 1.0], [0.0, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bottleneck_transfer.errors import SourceError

TARGET_KINDS = ("class", "binary", "multilabel", "regression")
#: Kinds whose values live in ``/targets`` rather than ``/labels``.
VALUE_KINDS = ("multilabel", "regression")
#: The one class name of a multi-label or regression cache's ``/labels`` (every row 0).
TARGET_CLASS_NAME = {"multilabel": "tagged", "regression": "valued"}
TAG_SEPARATOR = "|"
DEFAULT_COLUMN = "label"
_KEYS = ("column", "positive", "unit", "empty")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed ``--target`` spec (kind None: inferred from the column's values)."""

    kind: str | None = None
    column: str = DEFAULT_COLUMN
    positive: str | None = None
    unit: str | None = None
    empty: bool = False


@dataclass(frozen=True)
class Target:
    """What a cache's rows are labelled with.

    ``names``: the class names (``class``), negative then positive (``binary``) or the tags
    (``multilabel``); ``value_name`` and ``unit``: a regression value's column and unit.
    ``inferred``: the kind was read from the values, not stated.
    """

    kind: str = "class"
    names: tuple[str, ...] = ()
    value_name: str | None = None
    unit: str | None = None
    inferred: bool = False

    @property
    def outputs(self) -> list[str]:
        """The model's output columns: a class each, the positive value, the tags, the value."""
        if self.kind == "binary":
            return [self.names[1]]
        if self.kind == "regression":
            return [self.value_name or "value"]
        return list(self.names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the cache's ``target`` attribute)."""
        return {
            "kind": self.kind,
            "names": list(self.names),
            "value_name": self.value_name,
            "unit": self.unit,
            "inferred": self.inferred,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, class_names: Sequence[str] = ()) -> Target:
        """The target a cache records; None (a cache from before targets): class targets."""
        if not raw:
            return cls("class", tuple(class_names))
        return cls(
            raw.get("kind", "class"),
            tuple(raw.get("names") or ()),
            raw.get("value_name"),
            raw.get("unit"),
            bool(raw.get("inferred", False)),
        )

    def describe(self) -> str:
        """``"regression: brightness (mean pixel)"``, ``"binary: footwear vs other"``."""
        how = " (inferred)" if self.inferred else ""
        if self.kind == "regression":
            unit = f" ({self.unit})" if self.unit else ""
            return f"regression{how}: {self.value_name}{unit}"
        if self.kind == "binary":
            return f"binary{how}: {self.names[1]} vs {self.names[0]}"
        what = "tags" if self.kind == "multilabel" else "classes"
        return f"{self.kind}{how}: {len(self.names)} {what}"


def parse_target_spec(text: str | None) -> TargetSpec:
    """Parse ``--target KIND[:KEY=VALUE,...]`` (None or ``auto``: infer the kind).

    Raises
    ------
    SourceError
        An unknown kind or key, naming the valid ones.
    """
    if not text:
        return TargetSpec()
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in (*TARGET_KINDS, "auto"):
        raise SourceError(
            f"--target must be one of {', '.join(TARGET_KINDS)} (or auto), optionally with "
            f"':column=NAME,...'. Received: target={text!r}"
        )
    values: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in _KEYS:
            raise SourceError(
                f"bad --target key {item!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(_KEYS)}. Received: target={text!r}"
            )
        values[key] = value.lower() in ("true", "1", "yes") if key == "empty" else value
    return TargetSpec(None if kind == "auto" else kind, **values)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def infer_kind(values: Sequence[str]) -> str:
    """``multilabel`` if a value holds ``|``, ``regression`` if every value is a number and
    one is not an integer, else ``class`` (two integer or word values stay a class target)."""
    given = [v for v in values if v]
    if any(TAG_SEPARATOR in v for v in given):
        return "multilabel"
    numbers = [_number(v) for v in given]
    if (
        given
        and all(n is not None for n in numbers)
        and any(not float(n).is_integer() for n in numbers)
    ):  # type: ignore[arg-type]
        return "regression"
    return "class"


def _fail(where: str, line: int, spec: TargetSpec, problem: str, todo: str) -> SourceError:
    return SourceError(f"{where}, line {line}: column {spec.column!r} {problem}; {todo}")


def read_target(
    rows: Sequence[tuple[int, str]], spec: TargetSpec, where: str
) -> tuple[Target, list[str]]:
    """The target of a manifest's rows (``(line, text)`` of the target column) and each
    row's canonical text (``""``: unlabelled, class targets only).

    Raises
    ------
    SourceError
        One line naming the manifest and line of the first bad value (a non-numeric or
        missing regression value, an empty tag list, a third binary value).
    """
    kind = spec.kind or infer_kind([t for _, t in rows])
    inferred = spec.kind is None
    if kind == "regression":
        out = []
        for line, text in rows:
            value = _number(text)
            if value is None:
                what = "is empty" if not text else f"holds {text!r}, not a finite number"
                raise _fail(where, line, spec, what, "give every image a number")
            out.append(repr(value))
        return Target(kind, (), spec.column, spec.unit, inferred), out
    if kind == "multilabel":
        return _read_tags(rows, spec, where, inferred)
    return _read_classes(rows, spec, where, kind, inferred)


def _read_tags(
    rows: Sequence[tuple[int, str]], spec: TargetSpec, where: str, inferred: bool
) -> tuple[Target, list[str]]:
    out = []
    for line, text in rows:
        tags = sorted({t.strip() for t in text.split(TAG_SEPARATOR) if t.strip()})
        if not tags and not spec.empty:
            raise _fail(
                where,
                line,
                spec,
                "holds an empty tag list",
                "give it a tag, or allow images without tags with --target multilabel:empty=true",
            )
        out.append(TAG_SEPARATOR.join(tags))
    names = sorted({t for text in out for t in text.split(TAG_SEPARATOR) if t})
    return Target("multilabel", tuple(names), inferred=inferred), out


def _read_classes(
    rows: Sequence[tuple[int, str]], spec: TargetSpec, where: str, kind: str, inferred: bool
) -> tuple[Target, list[str]]:
    out = [("" if t in ("", "-1") else t) for _, t in rows]
    values = sorted(set(out) - {""})
    if values and all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    if kind == "binary":
        seen: dict[str, None] = {}
        for (line, _), text in zip(rows, out, strict=True):
            seen |= {text: None} if text else {}
            if len(seen) > 2:
                raise _fail(
                    where,
                    line,
                    spec,
                    f"holds a third value {text!r} ({', '.join(list(seen)[:2])} seen before)",
                    "a binary target has two values",
                )
        if len(values) != 2 or (spec.positive is not None and spec.positive not in values):
            raise SourceError(
                f"{where}: a binary target needs two values in column {spec.column!r} "
                f"(positive={spec.positive!r}); found {', '.join(values) or 'none'}"
            )
        if spec.positive is not None and spec.positive == values[0]:
            values = values[::-1]
    return Target(kind, tuple(values), inferred=inferred), out


def target_values(texts: Sequence[str], target: Target) -> np.ndarray:
    """float32 ``/targets`` of canonical texts: tag indicators (N, K) or values (N, 1)."""
    if target.kind == "regression":
        return np.asarray([float(t) for t in texts], np.float32).reshape(-1, 1)
    index = {name: i for i, name in enumerate(target.names)}
    out = np.zeros((len(texts), len(target.names)), np.float32)
    for row, text in enumerate(texts):
        for tag in filter(None, text.split(TAG_SEPARATOR)):
            out[row, index[tag]] = 1.0
    return out


def target_rows(values: np.ndarray, target: Target) -> list[dict[str, Any]]:
    """``info``'s rows: each tag and its images, or the regression value's summary."""
    if target.kind == "regression":
        quantiles = np.quantile(values, [0.0, 0.5, 1.0]) if len(values) else [np.nan] * 3
        return [
            {
                "value": target.value_name,
                "rows": len(values),
                "mean": float(np.mean(values)),
                "min": float(quantiles[0]),
                "median": float(quantiles[1]),
                "max": float(quantiles[2]),
            }
        ]
    counts = values.sum(axis=0)
    return [
        {"index": i, "tag": name, "rows": int(counts[i])} for i, name in enumerate(target.names)
    ]
