"""The extraction loop: threaded decoding overlapped with batched model calls, resumable writes.

Decoding runs in a thread pool (Pillow releases the GIL) a few batches ahead of the model;
the model runs one fixed-size compiled call per batch (the last batch is padded, so there is
no retracing and no per-call leak); rows are written to ``<out>.partial`` and committed every
few batches, so a crash, Ctrl-C or SIGTERM loses at most those batches and the next run
resumes. ``os.replace`` moves the finished file into place.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import keras
import numpy as np
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from bottleneck.bases import Base, load_base
from bottleneck.cache import (
    FORMAT_VERSION,
    CacheWriter,
    FeatureCache,
    check_existing,
    partial_path,
)
from bottleneck.errors import CacheError, ImageError, StaleCacheError
from bottleneck.fingerprint import fingerprint
from bottleneck.images import DEFAULT_MAX_PIXELS
from bottleneck.sources import Item, Source, open_source

#: Commit (flush) the partial file every this many batches.
COMMIT_EVERY = 8


@dataclass
class ExtractResult:
    """What an extraction did."""

    path: Path
    rows: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    up_to_date: bool = False
    resumed_from: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    fingerprint: str = ""


@dataclass
class _Batch:
    pixels: np.ndarray
    items: list[Item]
    failures: list[tuple[str, str]]
    end: int


def software_versions() -> dict[str, str]:
    """Versions of everything that can change the features."""
    from bottleneck import __version__

    versions = {
        "bottleneck": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "h5py": h5py.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    backend_module = sys.modules.get(
        {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(versions["backend"], "")
    )
    if backend_module is not None:
        versions[versions["backend"]] = getattr(backend_module, "__version__", "?")
    return versions


def cache_identity(base: Base, source: Source, manifest: dict | None) -> dict:
    """Everything that determines a cache's features; its fingerprint is the hash of this."""
    return {
        "format_version": FORMAT_VERSION,
        "base": base.description,
        "source": source.identity(manifest),
    }


def _decode_batch(
    source: Source, items: list[Item], end: int, base: Base, max_pixels: int, strict: bool
) -> _Batch:
    pixels = np.zeros((len(items), *base.image_size, base.channels), np.uint8)
    good: list[Item] = []
    failures: list[tuple[str, str]] = []
    for item in items:
        try:
            pixels[len(good)] = source.load(item, base.image_size, base.channels, max_pixels)
            good.append(item)
        except ImageError as exc:
            if strict:
                raise ImageError(
                    f"{item.id}: {exc} (--strict stops at the first bad image)"
                ) from exc
            failures.append((item.id, str(exc)))
    return _Batch(pixels[: len(good)], good, failures, end)


def _prefetch(
    pool: ThreadPoolExecutor, source: Source, start: int, batch_size: int, depth: int, decode
) -> Iterator[_Batch]:
    """Yield decoded batches in order, keeping ``depth`` batches in flight."""
    pending: collections.deque[Future] = collections.deque()
    starts = iter(range(start, len(source), batch_size))
    try:
        for begin in starts:
            end = min(begin + batch_size, len(source))
            pending.append(pool.submit(decode, source.items[begin:end], end))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


class BatchRunner:
    """Runs a model on fixed-size batches: pads the last one so the compiled call is reused."""

    def __init__(self, model: keras.Model, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        if n == 0:
            return np.zeros((0, int(self.model.output_shape[-1])), np.float32)
        batch = pixels.astype(np.float32)
        if n < self.batch_size:
            pad = np.zeros((self.batch_size - n, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        out = self.model.predict_on_batch(batch)
        return np.asarray(keras.ops.convert_to_numpy(out), np.float32)[:n]


class _TermAsInterrupt:
    """Turn SIGTERM into KeyboardInterrupt while extracting (batch schedulers send SIGTERM)."""

    def __enter__(self) -> None:
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum, frame) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _lock(out: Path) -> FileLock:
    lock = FileLock(f"{out}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise CacheError(
            f"another extraction is writing {out} right now (lock {out}.lock is held); "
            "wait for it to finish or write to another file with -o"
        ) from exc
    return lock


def extract(
    source: str | Source,
    base: str | Base,
    out: str | Path,
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str = "avg",
    layer: str | None = None,
    preprocess: str | None = None,
    classes: str | list | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    strict: bool = False,
    force: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
) -> ExtractResult:
    """Extract bottleneck features of every image of ``source`` into the cache ``out``.

    Parameters
    ----------
    source : str or Source
        An image collection (see :func:`bottleneck.sources.open_source`).
    base : str or Base
        A base (see :func:`bottleneck.bases.load_base`); ``weights``, ``image_size``,
        ``pooling``, ``layer`` and ``preprocess`` apply when it is given by name.
    out : str or Path
        The cache file. It appears only when complete; meanwhile ``<out>.partial`` grows.
    classes, limit
        Class subset and evenly spread sample of the source (when given by spec).
    batch_size : int
        Images per model call.
    workers : int, optional
        Decoding threads (default: all cores).
    strict : bool
        Stop at the first bad image instead of recording it in ``/failed`` and going on.
    force : bool
        Replace a cache (or discard a partial one) made from different inputs.
    max_pixels : int
        Refuse images declaring more pixels (decompression bombs).
    progress : bool, optional
        Show a progress bar (default: only on a terminal).

    Returns
    -------
    ExtractResult
        ``up_to_date`` is True when an identical cache was already there (nothing done).

    Raises
    ------
    StaleCacheError
        ``out`` (or its partial file) holds features of different inputs; use ``force``.
    CacheError
        Another process is writing ``out``.
    ImageError
        With ``strict``, the first bad image, named.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    out = Path(out)
    if not isinstance(source, Source):
        source = open_source(source, classes=classes, limit=limit)
    if not isinstance(base, Base):
        base = load_base(
            base,
            weights=weights,
            image_size=image_size,
            pooling=pooling,
            layer=layer,
            preprocess=preprocess,
        )
    manifest = source.manifest()
    identity = cache_identity(base, source, manifest)
    print_fp = fingerprint(identity)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        if not force and check_existing(out, print_fp, identity):
            with FeatureCache.open(out) as cache:
                return ExtractResult(
                    out, len(cache), cache.failed, up_to_date=True, fingerprint=print_fp
                )
        writer = _open_writer(out, print_fp, identity, base, source, manifest, force)
        return _run(writer, out, source, base, batch_size, workers, strict, max_pixels, progress)
    finally:
        lock.release()
        Path(lock.lock_file).unlink(missing_ok=True)


def _open_writer(
    out: Path,
    print_fp: str,
    identity: dict,
    base: Base,
    source: Source,
    manifest: dict | None,
    force: bool,
) -> CacheWriter:
    partial = partial_path(out)
    if partial.exists() and not force:
        try:
            return CacheWriter.resume(partial, print_fp, identity)
        except StaleCacheError as exc:
            raise StaleCacheError(f"unfinished extraction: {exc}") from exc
    provenance = {
        "base": base.description,
        "source": source.describe(manifest),
        "software": software_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    return CacheWriter.create(
        partial,
        dim=base.dim,
        fingerprint=print_fp,
        identity=identity,
        provenance=provenance,
        class_names=source.class_names,
        manifest=manifest,
    )


def _run(
    writer: CacheWriter,
    out: Path,
    source: Source,
    base: Base,
    batch_size: int,
    workers: int | None,
    strict: bool,
    max_pixels: int,
    progress: bool | None,
) -> ExtractResult:
    resumed_from = writer.items_done
    workers = workers or os.cpu_count() or 1
    run_model = BatchRunner(base.model, batch_size)
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    bar = tqdm(
        total=len(source),
        initial=resumed_from,
        unit="img",
        desc=f"extract {out.name}",
        disable=(None if progress is None else not progress),
        dynamic_ncols=True,
    )

    def decode(items: list[Item], end: int) -> _Batch:
        return _decode_batch(source, items, end, base, max_pixels, strict)

    try:
        with _TermAsInterrupt(), ThreadPoolExecutor(workers, "decode") as pool:
            batches = _prefetch(pool, source, resumed_from, batch_size, workers + 2, decode)
            for count, batch in enumerate(batches, 1):
                features = run_model(batch.pixels)
                labels = np.asarray([item.label for item in batch.items], np.int32)
                ids = [item.id for item in batch.items]
                writer.write_batch(features, labels, ids, batch.failures, batch.end)
                failed += batch.failures
                if count % COMMIT_EVERY == 0:
                    writer.commit()
                bar.update(len(batch.items) + len(batch.failures))
                if batch.failures:
                    bar.set_postfix(failed=len(failed))
    except BaseException:
        writer.commit()
        writer.close()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    done = len(source) - resumed_from
    extraction = {
        "batch_size": batch_size,
        "workers": workers,
        "seconds": round(seconds, 3),
        "images_per_second": round(done / seconds, 2) if seconds > 0 else None,
        "resumed_from": resumed_from,
        "n_failed": len(failed),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    writer.finalize(out, extraction)
    with FeatureCache.open(out) as cache:
        return ExtractResult(
            out,
            len(cache),
            failed=cache.failed,
            resumed_from=resumed_from,
            seconds=seconds,
            images_per_second=extraction["images_per_second"] or 0.0,
            fingerprint=cache.fingerprint,
        )
