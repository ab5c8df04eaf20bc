"""The extraction loop: threaded decoding overlapped with batched model calls, resumable writes.

Decoding runs in a thread pool (Pillow releases the GIL) a few batches ahead of the model;
the model runs one fixed-size compiled call per batch (the last batch is padded, so there is
no retracing and no per-call leak); rows are written to ``<out>.partial`` and committed once
``COMMIT_SECONDS`` of work or ``COMMIT_BYTES`` of rows are uncommitted (and whenever the loop
stops on an error, Ctrl-C or SIGTERM), so even a ``kill -9`` loses at most those seconds and
the next run resumes. ``os.replace`` moves the finished file into place.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import platform
import signal
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from bottleneck_transfer.errors import CacheError, ImageError, StaleCacheError
from bottleneck_transfer.features.bases import Base, load_base
from bottleneck_transfer.features.cache import (
    FORMAT_VERSION,
    CacheWriter,
    FeatureCache,
    check_existing,
    partial_path,
)
from bottleneck_transfer.features.images import DEFAULT_MAX_PIXELS
from bottleneck_transfer.features.sources import Item, Source, open_source
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.versions import software_versions
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

#: Commit (fsync a chunk of) the partial cache once this many seconds of work are uncommitted:
#: the most a ``kill -9`` can lose, whatever the base's speed. Each commit costs ~16 ms for
#: 8k x 128 rows, so a fast base no longer commits several times a second. The environment
#: variable ``BOTTLENECK_COMMIT_SECONDS`` overrides it.
COMMIT_SECONDS = 5.0
COMMIT_SECONDS_ENV = "BOTTLENECK_COMMIT_SECONDS"
#: ... or once this many bytes of rows wait in memory, so a fast base's memory stays flat.
COMMIT_BYTES = 8 * 2**20
#: Batches decoded ahead while the model runs (each batch is split over all workers).
PREFETCH = 2
#: Images per model call on a CPU at 224 x 224 (other sizes scale by pixel count).
CPU_BATCH = 64
#: Images per model call on an accelerator at 224 x 224 (other sizes scale by pixel count).
ACCELERATOR_BATCH = 256
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


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


def accelerator_devices() -> list[str]:
    """The accelerators (``gpu:0``, ``tpu:0``, ...) the Keras backend sees; empty on a CPU."""
    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without device listing: assume a CPU
        return []
    return [d for d in devices if not str(d).lower().startswith("cpu")]


def commit_seconds() -> float:
    """Seconds of uncommitted work before a commit: ``$BOTTLENECK_COMMIT_SECONDS`` or 5.

    Raises
    ------
    CacheError
        If the environment variable is not a number >= 0.
    """
    text = os.environ.get(COMMIT_SECONDS_ENV)
    if text is None:
        return COMMIT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise CacheError(
            f"{COMMIT_SECONDS_ENV} must be a number of seconds >= 0 (0 commits after every "
            f"batch). Received: {COMMIT_SECONDS_ENV}={text!r}"
        )
    return value


def default_batch_size(
    base: Base, n_items: int | None = None, accelerator: bool | None = None
) -> int:
    """Images per model call: 64 on a CPU, 256 on an accelerator, for 224 x 224 inputs.

    Other input sizes scale by pixel count (a power of two between 16 and 1024), so small
    inputs get bigger batches (less per-call overhead) and big ones smaller (memory); a
    source of fewer than that many images runs as one batch of exactly its size, since the
    last batch is padded to the batch size and padding is wasted compute (27 images in a
    64-batch ran at 0.44 x the limit).
    """
    if accelerator is None:
        accelerator = bool(accelerator_devices())
    at_224 = ACCELERATOR_BATCH if accelerator else CPU_BATCH
    scale = (224 * 224) / (base.image_size[0] * base.image_size[1])
    size = int(min(1024, max(16, 2 ** round(np.log2(max(1.0, at_224 * scale))))))
    if n_items:
        size = min(size, n_items)
    return size


def _retyped_config(config, policy: str):
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
            config.get("config"), dict
        ):
            return {**config, "config": {**config["config"], "name": policy}}
        return {key: _retyped_config(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_retyped_config(value, policy) for value in config]
    return config


def with_compute_dtype(base: Base, compute_dtype: str | None) -> Base:
    """The base computing in ``bfloat16`` or ``float16`` (Keras mixed precision).

    Weights stay float32 and features are still stored as float32; the dtype enters the
    base's description (so the cache fingerprint), since the features differ slightly.
    ``None`` or ``"float32"`` returns ``base`` unchanged. Meant for accelerators, but
    bfloat16 also pays on CPUs with AVX512-BF16 or AMX: measured on a 2-core AMD EPYC,
    ResNet50 runs 1.15-1.5x faster with features 0.35 % (median relative error) from float32,
    while MobileNetV2 (depthwise convolutions) gains nothing. float16 can overflow on bases
    without normalisation.
    """
    if compute_dtype in (None, "float32"):
        return base
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"unknown compute dtype. Received: compute_dtype={compute_dtype!r}; "
            f"valid: {', '.join(COMPUTE_DTYPES)}"
        )
    if base.description.get("compute_dtype", "float32") == compute_dtype:
        return base
    config = _retyped_config(base.model.get_config(), f"mixed_{compute_dtype}")
    model = base.model.__class__.from_config(config)
    model.set_weights(base.model.get_weights())
    model.trainable = False
    description = {**base.description, "compute_dtype": compute_dtype}
    return Base(model, base.name, base.image_size, base.channels, description)


def cache_identity(base: Base, source: Source, manifest: dict | None) -> dict:
    """Everything that determines a cache's features; its fingerprint is the hash of this."""
    return {
        "format_version": FORMAT_VERSION,
        "base": base.description,
        "source": source.identity(manifest),
    }


def _decode_into(
    source: Source,
    items: Sequence[Item],
    out: np.ndarray,
    base: Base,
    max_pixels: int,
    strict: bool,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode ``items`` into the rows of ``out``; returns which rows are good, and failures."""
    good = np.ones(len(items), bool)
    failures: list[tuple[str, str]] = []
    for k, item in enumerate(items):
        try:
            out[k] = source.load(item, base.image_size, base.channels, max_pixels)
        except ImageError as exc:
            if strict:
                raise ImageError(
                    f"{item.id}: {exc} (--strict stops at the first bad image)"
                ) from exc
            good[k] = False
            failures.append((item.id, str(exc)))
    return good, failures


def _gatherable(source: Source, base: Base) -> bool:
    """Whether ``source``'s images are arrays already at the base's size (nothing to decode).

    Only the cases where :func:`features.images.decode_array` is the identity (or a
    grey-to-RGB copy) qualify, so gathered pixels equal the per-image decoder's.
    """
    arrays = source.arrays
    if arrays is None or arrays.dtype != np.uint8 or arrays.ndim not in (3, 4):
        return False
    if tuple(arrays.shape[1:3]) != tuple(base.image_size):
        return False
    colours = 1 if arrays.ndim == 3 else arrays.shape[3]
    return colours == 1 or (colours == 3 and base.channels == 3)


def _gather_arrays(source: Source, items: Sequence[Item], base: Base) -> np.ndarray | None:
    """Pixels of array ``items`` copied out in one go, or None if they need decoding."""
    indices = [item.index for item in items]
    if not _gatherable(source, base) or any(index is None for index in indices):
        return None
    assert source.arrays is not None
    colours = 1 if source.arrays.ndim == 3 else source.arrays.shape[3]
    pixels = source.arrays[np.asarray(indices, np.int64)]
    pixels = pixels.reshape(len(items), *base.image_size, colours)
    if base.channels == 3 and colours == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    return pixels


class Decoder:
    """Decodes batches on a thread pool, each batch split over the workers."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        source: Source,
        base: Base,
        workers: int,
        max_pixels: int,
        strict: bool,
    ) -> None:
        self.pool = pool
        self.source = source
        self.base = base
        self.workers = workers
        self.max_pixels = max_pixels
        self.strict = strict
        self.gather = _gatherable(source, base) and all(i.index is not None for i in source.items)

    def submit(self, begin: int, end: int) -> tuple:
        """Start decoding items ``begin:end``; returns a handle for :meth:`result`."""
        items = self.source.items[begin:end]
        if self.gather:
            gathered = self.pool.submit(_gather_arrays, self.source, items, self.base)
            return items, end, None, [(0, len(items), gathered)]
        pixels = np.empty((len(items), *self.base.image_size, self.base.channels), np.uint8)
        step = -(-len(items) // self.workers)
        parts = [
            (
                lo,
                min(lo + step, len(items)),
                self.pool.submit(
                    _decode_into,
                    self.source,
                    items[lo : lo + step],
                    pixels[lo : lo + step],
                    self.base,
                    self.max_pixels,
                    self.strict,
                ),
            )
            for lo in range(0, len(items), step)
        ]
        return items, end, pixels, parts

    def result(self, handle: tuple) -> _Batch:
        """Wait for a batch; bad images are left out and reported as failures."""
        items, end, pixels, parts = handle
        if pixels is None:
            return _Batch(parts[0][2].result(), list(items), [], end)
        good = np.empty(len(items), bool)
        failures = []
        for lo, hi, future in parts:
            good[lo:hi], part_failures = future.result()
            failures += part_failures
        if failures:
            keep = np.flatnonzero(good)
            return _Batch(pixels[keep], [items[k] for k in keep], failures, end)
        return _Batch(pixels, list(items), failures, end)


def prefetch_batches(decoder: Decoder, start: int, stop: int, batch_size: int, depth: int):
    """Yield decoded batches in order, with ``depth`` more batches decoding meanwhile.

    ``depth=0`` decodes each batch only when the model has finished the previous one
    (decoding and the model take turns on the cores).
    """
    pending: collections.deque = collections.deque()
    begins = iter(range(start, stop, batch_size))
    try:
        for begin in begins:
            pending.append(decoder.submit(begin, min(begin + batch_size, stop)))
            if len(pending) > depth:
                yield decoder.result(pending.popleft())
        while pending:
            yield decoder.result(pending.popleft())
    finally:
        for _, _, _, parts in pending:
            for _, _, future in parts:
                future.cancel()


_PIXEL_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pixel_model(model: keras.Model) -> keras.Model | None:
    """``model`` taking uint8 pixels and casting them inside its compiled graph.

    Saves a float32 copy of every batch on the host (and 4x the bytes sent to an
    accelerator). Cached per model so the compiled function is traced once per process.
    """
    if model in _PIXEL_MODELS:
        return _PIXEL_MODELS[model]
    wrapper = None
    try:
        if len(model.inputs) == 1 and "float" in str(model.inputs[0].dtype):
            inputs = keras.Input(model.input_shape[1:], dtype="uint8", name="pixels_uint8")
            outputs = model(keras.ops.cast(inputs, model.inputs[0].dtype), training=False)
            wrapper = keras.Model(inputs, outputs, name=f"{model.name}_uint8")
    except Exception:  # an unusual model: feed it float32 from the host instead
        wrapper = None
    _PIXEL_MODELS[model] = wrapper
    return wrapper


class BatchRunner:
    """Runs a model on fixed-size batches: pads the last one so the compiled call is reused.

    Takes uint8 pixels; the cast to the model's float input happens inside the graph.
    """

    def __init__(self, model: keras.Model, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self._pixel_model = _pixel_model(model)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        if n == 0:
            return np.zeros((0, int(self.model.output_shape[-1])), np.float32)
        if n < self.batch_size:
            batch = np.zeros((self.batch_size, *pixels.shape[1:]), pixels.dtype)
            batch[:n] = pixels
            pixels = batch
        if self._pixel_model is not None and pixels.dtype == np.uint8:
            out = self._pixel_model.predict_on_batch(pixels)
        else:
            out = self.model.predict_on_batch(pixels.astype(np.float32))
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
    batch_size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    force: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    compute_dtype: str | None = None,
    progress: bool | None = None,
) -> ExtractResult:
    """Extract bottleneck features of every image of ``source`` into the cache ``out``.

    Parameters
    ----------
    source : str or Source
        An image collection (see :func:`features.sources.open_source`).
    base : str or Base
        A base (see :func:`features.bases.load_base`); ``weights``, ``image_size``,
        ``pooling``, ``layer`` and ``preprocess`` apply when it is given by name.
    out : str or Path
        The cache file. It appears only when complete; meanwhile ``<out>.partial`` grows.
    classes, limit
        Class subset and evenly spread sample of the source (when given by spec).
    batch_size : int, optional
        Images per model call. Default (:func:`default_batch_size`): 64 on a CPU and 256
        on an accelerator for 224 x 224 inputs, scaled by pixel count for other sizes.
    workers : int, optional
        Decoding threads (default: all cores).
    strict : bool
        Stop at the first bad image instead of recording it in ``/failed`` and going on.
    force : bool
        Replace a cache (or discard a partial one) made from different inputs.
    max_pixels : int
        Refuse images declaring more pixels (decompression bombs).
    compute_dtype : {"float32", "bfloat16", "float16"}, optional
        Run the base in mixed precision (accelerators); features are stored as float32 and
        the dtype is part of the fingerprint.
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
    if batch_size is not None and batch_size < 1:
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
    base = with_compute_dtype(base, compute_dtype)
    every = commit_seconds()
    batch_size = batch_size or default_batch_size(base, len(source))
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
        return _run(
            writer, out, source, base, batch_size, workers, strict, max_pixels, progress, every
        )
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
    every: float,
) -> ExtractResult:
    resumed_from = writer.items_done
    workers = workers or os.cpu_count() or 1
    run_model = BatchRunner(base.model, batch_size)
    stage = {"wait_decode": 0.0, "model": 0.0, "write": 0.0}
    started = time.perf_counter()
    bar = tqdm(
        total=len(source),
        initial=resumed_from,
        unit="img",
        desc=f"extract {out.name}",
        disable=(None if progress is None else not progress),
        dynamic_ncols=True,
    )

    try:
        with _TermAsInterrupt(), ThreadPoolExecutor(workers, "decode") as pool:
            decoder = Decoder(pool, source, base, workers, max_pixels, strict)
            batches = prefetch_batches(decoder, resumed_from, len(source), batch_size, PREFETCH)
            tick = last_commit = time.perf_counter()
            for batch in batches:
                t0 = time.perf_counter()
                stage["wait_decode"] += t0 - tick
                features = run_model(batch.pixels)
                t1 = time.perf_counter()
                stage["model"] += t1 - t0
                labels = np.asarray([item.label for item in batch.items], np.int32)
                ids = [item.id for item in batch.items]
                writer.write_batch(features, labels, ids, batch.failures, batch.end)
                if (
                    time.perf_counter() - last_commit >= every
                    or writer.pending_bytes >= COMMIT_BYTES
                ):
                    writer.commit()
                    last_commit = time.perf_counter()
                tick = time.perf_counter()
                stage["write"] += tick - t1
                bar.update(len(batch.items) + len(batch.failures))
                if batch.failures:
                    bar.set_postfix(failed=writer.n_failed)
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
        "n_failed": writer.n_failed,
        "stage_seconds": {k: round(v, 4) for k, v in stage.items()},
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
