"""The one decode-and-batch pipeline: a source's items to fixed-shape batches through a model.

Everything that reads images goes through here: extraction, prediction, fine-tuning, the
export's parity check and the benchmarks.

* :func:`decode_batch` decodes items into one uint8 ``(n, H, W, C)`` array at a model's input
  size. Array sources already at that size are gathered in one copy; everything else is
  decoded item by item by :mod:`features.decode` (Pillow releases the GIL, so a thread pool
  splits a batch over the cores). Bad images are left out and reported, or raise (``strict``).
* :func:`iter_batches` yields the batches of items ``[start, stop)`` in order, ``prefetch``
  batches decoding ahead while the caller runs the model: at most ``prefetch + 1`` batches of
  pixels are in memory, plus the images the workers are decoding (bounded by
  :data:`features.decode.DECODE_BUDGET`).

The model's side (fixed-size calls, batch sizes) is :mod:`features.runtimes`'s.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from bottleneck_transfer.errors import ImageError
from bottleneck_transfer.features.decode import DEFAULT_MAX_PIXELS
from bottleneck_transfer.features.sources import Item, Source

#: Batches decoded ahead while the model runs (each batch is split over all workers).
PREFETCH = 2


@dataclass
class Batch:
    """Decoded pixels of a run of items; items that failed to decode are left out.

    Attributes
    ----------
    pixels : ndarray
        uint8 ``(n, height, width, channels)``, one row per decoded item (text: a
        :class:`features.text_batches.TokenWindow` of the items' tokens).
    items : list of Item
        The ``n`` decoded items, in order.
    failures : list of (str, str)
        ``(id, reason)`` of the items left out.
    end : int or None
        :func:`iter_batches`: the source position after this batch's last item.
    """

    pixels: np.ndarray
    items: list[Item]
    failures: list[tuple[str, str]]
    end: int | None = None


def _gatherable(source: Source, image_size: tuple[int, int], channels: int) -> bool:
    """Whether ``source``'s images are arrays already at ``image_size`` (nothing to decode).

    Only the cases where :func:`features.decode.decode_array` is the identity (or a
    grey-to-RGB copy) qualify, so gathered pixels equal the per-image decoder's.
    """
    arrays = source.arrays
    if arrays is None or arrays.dtype != np.uint8 or arrays.ndim not in (3, 4):
        return False
    if tuple(arrays.shape[1:3]) != tuple(image_size):
        return False
    colours = 1 if arrays.ndim == 3 else arrays.shape[3]
    return colours == 1 or (colours == 3 and channels == 3)


def _gather(
    source: Source, items: Sequence[Item], image_size: tuple[int, int], channels: int
) -> np.ndarray:
    """Pixels of gatherable array ``items`` copied out in one go."""
    assert source.arrays is not None
    colours = 1 if source.arrays.ndim == 3 else source.arrays.shape[3]
    pixels = source.arrays[np.asarray([item.index for item in items], np.int64)]
    pixels = pixels.reshape(len(items), *image_size, colours)
    return np.repeat(pixels, 3, axis=3) if channels == 3 and colours == 1 else pixels


def _decode_rows(
    source: Source, items: Sequence[Item], out: np.ndarray, max_pixels: int, strict: bool
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode ``items`` into the rows of ``out``: which rows are good, and the failures.

    Every item decoded one by one passes here; the source pixels held meanwhile, across all
    threads, are bounded by :data:`features.decode.DECODE_BUDGET`.
    """
    good = np.ones(len(items), bool)
    failures: list[tuple[str, str]] = []
    size, channels = out.shape[1:3], out.shape[3]
    for k, item in enumerate(items):
        try:
            out[k] = source.load(item, size, channels, max_pixels)
        except ImageError as exc:
            if strict:
                raise ImageError(
                    f"{item.id}: {exc} (--strict stops at the first bad image)"
                ) from exc
            good[k] = False
            failures.append((item.id, str(exc)))
    return good, failures


def _now(fn: Callable, *args) -> Future:
    """Run ``fn`` in this thread; its outcome as a done future (no pool: one thread)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


@dataclass
class _Pending:
    items: Sequence[Item]
    end: int | None
    pixels: np.ndarray | None  # None: gathered in one go
    parts: list[tuple[int, int, Future]]

    def cancel(self) -> None:
        for _, _, future in self.parts:
            future.cancel()


class _Decoder:
    """Starts batch decodes (split over a pool's workers, or in this thread) and collects them."""

    def __init__(
        self,
        source: Source,
        image_size: tuple[int, int],
        channels: int,
        *,
        max_pixels: int,
        strict: bool,
        gather: bool,
        pool: ThreadPoolExecutor | None = None,
        workers: int = 1,
    ) -> None:
        self.source = source
        self.shape = (int(image_size[0]), int(image_size[1]), int(channels))
        self.max_pixels = max_pixels
        self.strict = strict
        self.gather = gather and _gatherable(source, image_size, channels)
        self.pool = pool
        self.workers = workers if pool is not None else 1

    def _start(self, fn: Callable, *args) -> Future:
        return self.pool.submit(fn, *args) if self.pool is not None else _now(fn, *args)

    def submit(self, items: Sequence[Item], end: int | None = None) -> _Pending:
        """Start decoding ``items``; collect with :meth:`result`."""
        if self.gather and all(item.index is not None for item in items):
            future = self._start(_gather, self.source, items, self.shape[:2], self.shape[2])
            return _Pending(items, end, None, [(0, len(items), future)])
        pixels = np.empty((len(items), *self.shape), np.uint8)
        step = max(1, -(-len(items) // self.workers))
        parts = [
            (
                lo,
                min(lo + step, len(items)),
                self._start(
                    _decode_rows,
                    self.source,
                    items[lo : lo + step],
                    pixels[lo : lo + step],
                    self.max_pixels,
                    self.strict,
                ),
            )
            for lo in range(0, len(items), step)
        ]
        return _Pending(items, end, pixels, parts)

    def result(self, pending: _Pending) -> Batch:
        """Wait for a batch; bad images are left out and reported as failures."""
        items = list(pending.items)
        if pending.pixels is None:
            return Batch(pending.parts[0][2].result(), items, [], pending.end)
        good = np.empty(len(items), bool)
        failures: list[tuple[str, str]] = []
        for lo, hi, future in pending.parts:
            good[lo:hi], part_failures = future.result()
            failures += part_failures
        if failures:
            keep = np.flatnonzero(good)
            return Batch(pending.pixels[keep], [items[k] for k in keep], failures, pending.end)
        return Batch(pending.pixels, items, failures, pending.end)


def decode_batch(
    source: Source,
    items: Sequence[Item],
    image_size: tuple[int, int],
    channels: int,
    *,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    gather: bool = True,
) -> Batch:
    """Decode ``items`` of ``source`` in this thread into one batch at ``image_size``.

    Parameters
    ----------
    source : Source
        The collection the items belong to.
    items : sequence of Item
        Any items of ``source``, in any order.
    image_size : (int, int)
        The model's input ``(height, width)``.
    channels : {1, 3}
        The model's input channels.
    strict : bool
        Raise at the first bad image instead of leaving it out.
    max_pixels : int
        Refuse images declaring more pixels (decompression bombs).
    gather : bool
        Copy array images already at ``image_size`` out in one go (False decodes each
        through Pillow: same pixels, slower; the benchmarks compare the two).

    Raises
    ------
    ImageError
        With ``strict``, the first bad image, named.

    Examples
    --------
    >>> source = open_source("fashion-mnist:test", limit=4)  # doctest: +SKIP
    >>> decode_batch(source, source.items, (28, 28), 1).pixels.shape  # doctest: +SKIP
    (4, 28, 28, 1)
    """
    decoder = _Decoder(
        source, image_size, channels, max_pixels=max_pixels, strict=strict, gather=gather
    )
    return decoder.result(decoder.submit(items))


def iter_batches(
    source: Source,
    image_size: tuple[int, int],
    channels: int,
    batch_size: int,
    *,
    start: int = 0,
    stop: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    prefetch: int = PREFETCH,
    gather: bool = True,
) -> Iterator[Batch]:
    """Yield the items ``source.items[start:stop]`` decoded, ``batch_size`` items a batch.

    A thread pool of ``workers`` threads (default: all cores) decodes ``prefetch`` batches
    ahead of the caller, each batch split over the workers; ``prefetch=0`` decodes a batch
    only when the caller asks for it (decoding and the model take turns on the cores).
    Close the generator (``contextlib.closing``) to stop the workers early. Other
    parameters as in :func:`decode_batch`; each :class:`Batch` has ``end`` set.

    Examples
    --------
    >>> source = open_source("fashion-mnist:test", limit=100)  # doctest: +SKIP
    >>> [len(b.items) for b in iter_batches(source, (28, 28), 1, 64)]  # doctest: +SKIP
    [64, 36]
    """
    stop = len(source) if stop is None else min(stop, len(source))
    workers = workers or os.cpu_count() or 1
    pending: collections.deque[_Pending] = collections.deque()
    with ThreadPoolExecutor(workers, "decode") as pool:
        decoder = _Decoder(
            source,
            image_size,
            channels,
            max_pixels=max_pixels,
            strict=strict,
            gather=gather,
            pool=pool,
            workers=workers,
        )
        try:
            for begin in range(start, stop, batch_size):
                end = min(begin + batch_size, stop)
                pending.append(decoder.submit(source.items[begin:end], end))
                if len(pending) > prefetch:
                    yield decoder.result(pending.popleft())
            while pending:
                yield decoder.result(pending.popleft())
        finally:
            for waiting in pending:
                waiting.cancel()
