"""Candidate bases: a base as ``extract --base`` takes it, with its own settings.

A candidate is written ``BASE`` or ``BASE key=value ...`` (one per line of a ``--bases-file``,
``#`` comments allowed), the keys being :func:`~bottleneck_transfer.features.bases.load_base`'s
settings; settings a candidate does not give come from the command's shared options.

Examples
--------
>>> parse_candidate("mobilenet_v2 weights=none image_size=96")
Candidate(base='mobilenet_v2', settings={'weights': 'none', 'image_size': 96})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottleneck_transfer.errors import BaseModelError

#: The settings a candidate may give, and how each is read from text.
SETTINGS: dict[str, type] = {
    "weights": str,
    "image_size": int,
    "pooling": str,
    "layer": str,
    "preprocess": str,
    "trust_graph": bool,
}


@dataclass(frozen=True)
class Candidate:
    """A base to rank: ``base`` as ``extract --base`` takes it, and its own ``settings``."""

    base: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How reports name it: the base and its own settings."""
        extra = " ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.base} {extra}".strip()

    def build(self, shared: Mapping[str, Any], seed: int = 0):
        """The :class:`~bottleneck_transfer.features.bases.Base`, its settings over ``shared``."""
        from bottleneck_transfer.features.bases import load_base

        given = {k: v for k, v in {**shared, **self.settings}.items() if v is not None}
        return load_base(self.base, seed=seed, **given)


def _value(key: str, text: str, line: str) -> Any:
    kind = SETTINGS[key]
    if kind is int:
        if not text.isdigit():
            raise BaseModelError(f"candidate {line!r}: {key} must be a whole number")
        return int(text)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise BaseModelError(f"candidate {line!r}: {key} must be true or false")
        return text.lower() == "true"
    return text


def parse_candidate(line: str | Mapping[str, Any]) -> Candidate:
    """A candidate from ``"BASE key=value ..."`` (or a spec's ``{name = BASE, key = value}``).

    Raises
    ------
    BaseModelError
        For an unknown setting or a malformed value, naming the candidate.
    """
    if isinstance(line, Mapping):
        given = dict(line)
        base = given.pop("name", None)
        wrong = [k for k, v in given.items() if k not in SETTINGS or type(v) is not SETTINGS[k]]
        if not isinstance(base, str) or wrong:
            raise BaseModelError(
                f"candidate {dict(line)!r}: a candidate table is name = BASE and settings of "
                f"{', '.join(f'{k} ({t.__name__})' for k, t in SETTINGS.items())}"
            )
        return Candidate(base, given)
    base, *pairs = line.split()
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in SETTINGS:
            raise BaseModelError(
                f"candidate {line!r}: {pair!r} is not a setting; write BASE key=value ... "
                f"with keys {', '.join(SETTINGS)}"
            )
        settings[key] = _value(key, text, line)
    return Candidate(base, settings)


def read_candidates(
    bases: str | None = None, bases_file: str | Path | None = None
) -> list[Candidate]:
    """The candidates of ``--bases A,B,C`` and the lines of ``--bases-file``, in order.

    Raises
    ------
    BaseModelError
        When none is given, one is listed twice, or the file cannot be read.
    """
    lines: list[str] = [b.strip() for b in (bases or "").split(",") if b.strip()]
    if bases_file is not None:
        try:
            text = Path(bases_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BaseModelError(f"cannot read --bases-file {bases_file}: {exc}") from exc
        lines += [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return unique_candidates(parse_candidate(line) for line in lines if line)


def unique_candidates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """``candidates`` as a list, refusing none and duplicates."""
    listed = list(candidates)
    if len(listed) < 1:
        raise BaseModelError(
            "no candidate base: give --bases A,B,C or --bases-file FILE (one BASE per line)"
        )
    labels = [c.label for c in listed]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise BaseModelError(f"candidate {twice[0]!r} is listed twice; list each base once")
    return listed
