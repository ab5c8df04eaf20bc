"""Text batches: texts read, tokenized by the base's encoder, and grouped by length.

The text side of :mod:`features.batches`: :func:`iter_text_batches` yields one
:class:`~features.batches.Batch` per window of items (its ``end`` the source position after
the window, as an image batch's), its ``pixels`` a :class:`TokenWindow`: the window's texts
tokenized at the base's ``max_length`` and planned into model calls. With ``bucketing``
(the default) the calls group texts of one length bucket (:func:`padded_lengths`) under a
token budget (``batch_size`` rows of ``max_length`` tokens, the work of one fixed-length
call), each padded only to its bucket's length; without it, every call is ``batch_size`` texts
padded to ``max_length``. The runner (:mod:`features.runners.text`) puts every row back in
source order, so the cache is the same either way (up to float rounding).

A text that is not UTF-8 or is empty is left out and reported as a failure, with one line
saying why; a text longer than ``max_length`` tokens is truncated and counted
(:attr:`TokenWindow.truncated`, summed into the cache's provenance).
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import ImageError, TruncatedTextWarning
from bottleneck_transfer.features.batches import Batch
from bottleneck_transfer.features.sources import Item, Source

#: Padded lengths are multiples of this (fewer distinct shapes to compile).
ROUND = 8
#: Most texts in one call, however short they are.
MAX_ROWS = 1024
#: Items tokenized and bucketed together (the larger, the closer the lengths in a call).
WINDOW = 2048
#: Texts per call at ``max_length`` tokens when not given: CPU, accelerator.
CPU_TEXTS, ACCELERATOR_TEXTS = 32, 128


@dataclass
class TokenWindow:
    """A window of tokenized texts and the model calls that cover it.

    ``calls``: each call's rows (indices into the window's texts) and its int inputs
    ``(rows, padded length)``; ``tokens``: the texts' tokens; ``computed``: the tokens the
    calls compute, padding included; ``truncated``: texts cut at ``max_length``.
    """

    calls: list[tuple[np.ndarray, dict[str, np.ndarray]]]
    n: int
    tokens: int
    computed: int
    truncated: int

    def __len__(self) -> int:
        return self.n


def read_text(source: Source, item: Item) -> str:
    """The item's text; ImageError (one line: why, and what to do) when it is not UTF-8 or
    is empty."""
    content = source.content(item)
    if isinstance(content, Path):
        try:
            content = content.read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {content}: {exc.strerror or exc}") from exc
    data = bytes(content) if not isinstance(content, str) else content.encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImageError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "re-encode it as UTF-8"
        ) from exc
    if not text.strip():
        raise ImageError("empty text: nothing to encode")
    return text


def padded_lengths(lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Each length rounded up to its bucket: a multiple of :data:`ROUND` up to 64 tokens,
    then of an eighth of the next power of two (16 up to 128, 32 up to 256, ...), so padding
    stays under a quarter of a long text; at most ``max_length``."""
    lengths = np.maximum(np.asarray(lengths, np.int64), 1)
    power = 2 ** np.ceil(np.log2(lengths)).astype(np.int64)
    step = np.maximum(ROUND, power // 8)
    return np.minimum(-(-lengths // step) * step, max_length)


def plan_calls(
    lengths: np.ndarray, batch_size: int, max_length: int, bucketing: bool = True
) -> list[tuple[np.ndarray, int]]:
    """The model calls covering texts of ``lengths`` tokens: each one's rows and padded
    length. Bucketing: texts of one bucket (:func:`padded_lengths`) together, as many a call
    as a budget of ``batch_size * max_length`` tokens holds (at most :data:`MAX_ROWS`);
    else ``batch_size`` texts a call in order, padded to ``max_length``."""
    n = len(lengths)
    if not bucketing:
        return [
            (np.arange(lo, min(lo + batch_size, n)), max_length) for lo in range(0, n, batch_size)
        ]
    padded = padded_lengths(lengths, max_length)
    calls = []
    for length in np.unique(padded):
        rows = np.flatnonzero(padded == length)
        step = int(min(MAX_ROWS, max(1, batch_size * max_length // length)))
        calls += [(rows[lo : lo + step], int(length)) for lo in range(0, len(rows), step)]
    return calls


def read_texts(
    source: Source, items: list[Item], strict: bool
) -> tuple[list[str], list[Item], list[tuple[str, str]]]:
    """The texts of ``items`` that read (:func:`read_text`), their items, and ``(id, why)``
    of the others (``strict``: ImageError at the first)."""
    texts, good, failures = [], [], []
    for item in items:
        try:
            texts.append(read_text(source, item))
            good.append(item)
        except ImageError as exc:
            if strict:
                raise ImageError(
                    f"{item.id}: {exc} (--strict stops at the first bad text)"
                ) from exc
            failures.append((item.id, str(exc)))
    return texts, good, failures


def iter_string_batches(
    source: Source, batch_size: int, *, start: int = 0, strict: bool = False
) -> Iterator[Batch]:
    """Batches of ``batch_size`` items from ``start`` as raw strings (what a text export
    takes): each batch's ``pixels`` is an object array of its texts, failures as in
    extraction (:func:`read_texts`)."""
    for lo in range(start, len(source), batch_size):
        items = source.items[lo : lo + batch_size]
        texts, good, failures = read_texts(source, items, strict)
        strings = np.empty(len(texts), dtype=object)
        strings[:] = texts
        yield Batch(strings, good, failures, lo + len(items))


def _window(
    source: Source, items: list[Item], encoder: Any, batch_size: int, bucketing: bool, strict: bool
) -> tuple[TokenWindow, list[Item], list[tuple[str, str]]]:
    """Read and tokenize ``items``; plan their calls."""
    texts, good, failures = read_texts(source, items, strict)
    if not texts:
        return TokenWindow([], 0, 0, 0, 0), good, failures
    inputs, lengths, truncated = encoder.encode(texts)
    planned = plan_calls(lengths, batch_size, encoder.max_length, bucketing)
    calls = [
        (rows, {key: value[rows, :length] for key, value in inputs.items()})
        for rows, length in planned
    ]
    computed = sum(len(rows) * length for rows, length in planned)
    window = TokenWindow(calls, len(texts), int(lengths.sum()), computed, int(truncated.sum()))
    return window, good, failures


def iter_text_batches(
    source: Source,
    encoder: Any,
    batch_size: int,
    *,
    start: int = 0,
    stop: int | None = None,
    strict: bool = False,
    bucketing: bool = True,
    window: int = WINDOW,
) -> Iterator[Batch]:
    """Yield the texts ``source.items[start:stop]``, a window of ``window`` items a batch,
    tokenized by ``encoder`` (a text base's) and planned into calls (see the module); the
    next windows are read and tokenized in a thread while the caller runs the model."""
    stop = len(source) if stop is None else min(stop, len(source))
    window = max(window, batch_size)
    starts = iter(range(start, stop, window))
    pending: collections.deque[tuple[int, Future]] = collections.deque()
    with ThreadPoolExecutor(1, "tokenize") as pool:

        def submit() -> None:
            lo = next(starts, None)
            if lo is not None:
                items = source.items[lo : min(lo + window, stop)]
                args = (source, items, encoder, batch_size, bucketing, strict)
                pending.append((min(lo + window, stop), pool.submit(_window, *args)))

        submit()
        try:
            while pending:
                end, future = pending.popleft()
                submit()
                tokens, items, failures = future.result()
                yield Batch(tokens, items, failures, end)  # type: ignore[arg-type]
        finally:
            for _, waiting in pending:
                waiting.cancel()


def tally(counts: dict[str, int], window: TokenWindow) -> None:
    """Add a window's texts, tokens, computed tokens and truncated texts to ``counts``."""
    for key, value in (
        ("texts", window.n),
        ("tokens", window.tokens),
        ("computed", window.computed),
        ("truncated", window.truncated),
    ):
        counts[key] = counts.get(key, 0) + value


def text_provenance(counts: dict[str, int], max_length: int) -> dict:
    """What the extraction records of its texts: how many were truncated at ``max_length``
    and the share of computed tokens that were padding; warns once (one line) when texts
    were truncated."""
    truncated = counts.get("truncated", 0)
    if truncated:
        warnings.warn(
            f"{truncated} of {counts['texts']} texts were longer than {max_length} tokens and "
            "were truncated (counted in the cache's provenance: extraction.texts_truncated); "
            "raise --max-length to keep more of them",
            TruncatedTextWarning,
            stacklevel=2,
        )
    computed = counts.get("computed", 0)
    share = 1 - counts.get("tokens", 0) / computed if computed else 0.0
    return {
        "texts_truncated": truncated,
        "max_length": max_length,
        "padding_share": round(share, 4),
    }


def default_text_batch(accelerator: bool, n_items: int | None = None) -> int:
    """Texts per call at ``max_length`` (the token budget's rows): 32 on a CPU, 128 on an
    accelerator; fewer for a smaller source."""
    size = ACCELERATOR_TEXTS if accelerator else CPU_TEXTS
    return min(size, n_items) if n_items else size
