"""The extraction loop: decoded batches through the base into a resumable cache.

Batches come from :mod:`features.batches` (decoded in a thread pool a few batches ahead of
the model; one fixed-size compiled call per batch, the last one padded, so there is no
retracing and no per-call leak); rows are written to ``<out>.partial`` and committed once
``COMMIT_SECONDS`` of work or ``COMMIT_BYTES`` of rows are uncommitted (and whenever the loop
stops on an error, Ctrl-C or SIGTERM), so even a ``kill -9`` loses at most those seconds and
the next run resumes. ``os.replace`` moves the finished file into place.

One pass over the images (a :class:`Pass`) feeds one cache, or one per layer of one model;
:func:`extract_pass` is the one path for both: caches up to date are left alone, ``update``
goes to :mod:`features.update`, the rest runs here or as shards on Dask
(:mod:`features.engines`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import CacheError, Interrupted, SourceError
from bottleneck_transfer.features.bases.common import Base
from bottleneck_transfer.features.batches import BatchRunner, default_batch_size, iter_batches
from bottleneck_transfer.features.cache.format import FORMAT_VERSION, check_storage
from bottleneck_transfer.features.cache.partial import (
    discard_partial,
    partial_path,
    writer_lock,
    writing,
)
from bottleneck_transfer.features.cache.reader import FeatureCache, check_existing
from bottleneck_transfer.features.cache.writer import CacheWriter
from bottleneck_transfer.features.choices import ENGINES
from bottleneck_transfer.features.images import DECODING, DEFAULT_MAX_PIXELS
from bottleneck_transfer.features.passes import FanOut, Pass, load_pass, with_compute_dtype
from bottleneck_transfer.features.sources import Source, Split, open_source, split_source
from bottleneck_transfer.features.views import Views
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.versions import software_versions
from tqdm.auto import tqdm

#: Commit (fsync a chunk of) the partial cache once this many seconds of work are uncommitted:
#: the most a ``kill -9`` can lose, whatever the base's speed. Each commit costs ~16 ms for
#: 8k x 128 rows, so a fast base no longer commits several times a second. The environment
#: variable ``BOTTLENECK_COMMIT_SECONDS`` overrides it.
COMMIT_SECONDS = 5.0
COMMIT_SECONDS_ENV = "BOTTLENECK_COMMIT_SECONDS"
#: ... or once this many bytes of rows wait in memory, so a fast base's memory stays flat.
COMMIT_BYTES = 8 * 2**20


@dataclass
class ExtractResult:
    """What an extraction did.

    Examples
    --------
    >>> result = extract("photos/", "mobilenet_v2", "c.h5", weights="none")
    >>> result.path, result.rows, len(result.failed)
    (PosixPath('c.h5'), 18, 0)
    """

    path: Path
    rows: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    up_to_date: bool = False
    resumed_from: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    fingerprint: str = ""
    #: What ``update=True`` did: images ``reused``, ``extracted`` and ``dropped`` (None when
    #: the cache was extracted whole or was up to date).
    update: dict[str, int] | None = None


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


def cache_identity(
    base: Base,
    source: Source,
    manifest: dict | None,
    store_dtype: str = "float32",
    views: dict | None = None,
) -> dict:
    """Everything that determines a cache's features; its fingerprint is the hash of this.

    A ``store_dtype`` other than float32 changes the stored values, so it is part of it
    (float32 caches keep the identity they always had); so are augmented ``views``
    (:meth:`features.views.Views.identity`; none: the plain cache's identity).
    """
    identity = {
        "format_version": FORMAT_VERSION,
        "base": base.description,
        "source": source.identity(manifest),
    }
    if store_dtype != "float32":
        identity["store_dtype"] = store_dtype
    if views is not None:
        identity["views"] = views
    return identity


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


def extract(
    source: str | Source,
    base: str | Base,
    out: str | Path,
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str | None = None,
    layer: str | None = None,
    preprocess: str | None = None,
    trust_graph: bool = False,
    classes: str | list | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    force: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    compute_dtype: str | None = None,
    progress: bool | None = None,
    wait: Callable[[str], Any] | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    shard_images: int | None = None,
    timeout: float | None = None,
    store_dtype: str = "float32",
    compression: str | None = None,
    update: bool = False,
    augment: str | list[str] | None = None,
    views: int = 0,
    seed: int = 0,
) -> ExtractResult:
    """Extract bottleneck features of every image of ``source`` into the cache ``out``.

    Parameters
    ----------
    source : str or Source
        An image collection (see :func:`features.sources.open_source`).
    base : str or Base
        A base (see :func:`features.bases.load_base`).
    out : str or Path
        The cache file. It appears only when complete; meanwhile ``<out>.partial`` grows.
    weights, image_size, pooling, layer, preprocess, trust_graph
        :func:`features.bases.load_base`'s options, for a base given by name (a
        :class:`Base` object has them already: passing any is an error).
    classes, limit
        Class subset and evenly spread sample of a source given by name (a :class:`Source`
        object has them already: passing either is an error).
    split : Split, optional
        Extract one part of a stratified, seeded train/validation split of the source
        (see :func:`extract_split` for both parts); declared groups and exact copies stay
        whole.
    groups : str, optional
        A CSV manifest's column of each image's group (patient, session), stored as the
        cache's ``/groups``: every split keeps a group on one side.
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
    wait : callable, optional
        When another process is writing ``out``, call ``wait(message)`` and wait for it to
        finish (then reuse its cache) instead of raising :class:`CacheError`.
    engine : {"local", "dask"}
        ``"dask"`` cuts the source into shards run as tasks on a Dask cluster (the one at
        ``scheduler``, or a local cluster of ``workers`` processes) and joins them into one
        cache equal to a local run's. The base must be given by name or path (each worker
        builds it once) and workers must see the images at the same path.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``), for ``engine="dask"``.
    shard_images : int, optional
        Images per shard for ``engine="dask"`` (rounded to whole batches; default 4096).
    timeout : float, optional
        For ``engine="dask"``: seconds to wait to reach the scheduler, for a worker, or
        while no worker runs a shard, before the run stops with one line, keeping the
        finished shards for a rerun (default: :data:`features.choices.DASK_TIMEOUT`, 60).
    store_dtype : {"float32", "float16"}
        How ``/features`` is stored: float16 halves the cache (part of the fingerprint;
        readers still give float32).
    compression : {"lzf", "gzip"}, optional
        Lossless HDF5 compression of ``/features`` (recorded in the provenance only).
    update : bool
        ``out`` exists for an older state of the source: extract only new or changed
        images, drop removed ones, reuse every other row (:mod:`features.update`); refused
        when the base or its settings differ.
    augment, views, seed
        ``seed`` seeds random weights (``weights="none"``: the same in every engine) and the
        views. Also store ``views`` augmented views of every image (recipe ``augment``, e.g.
        ``"flip,crop,rotate,color"``, seeded by ``seed``; :mod:`features.views`), made from
        the same decoded batch; part of the fingerprint. ``views=0`` or no ``augment`` is
        the plain cache. View ``k`` of an image depends only on the seed, its id and ``k``,
        so views compose with ``update``, ``engine="dask"``, a resume and
        :func:`extract_split` (train part only).

    Returns
    -------
    ExtractResult
        ``up_to_date`` is True when an identical cache was already there (nothing done).

    Raises
    ------
    StaleCacheError
        ``out`` (or its partial file) holds features of different inputs; use ``force``.
    CacheError
        Another process is writing ``out`` (without ``wait``); ``out`` cannot be written
        (disk full, read-only folder: one line saying what to do).
    SourceError
        No image of the source could be read (0 rows): nothing is written.
    Interrupted
        Ctrl-C or SIGTERM: says how many rows were kept; the same call resumes.
    ImageError
        With ``strict``, the first bad image, named.

    Examples
    --------
    >>> result = extract(
    ...     "fashion-mnist:train",
    ...     "data/bases/fashion_mnist_0-4.keras",
    ...     "caches/fm-train.h5",
    ...     classes="5-9",
    ...     limit=2000,
    ... )
    >>> result.rows, result.up_to_date
    (2000, False)
    >>> extract("photos/", "resnet50", "c.h5", engine="dask", workers=4)  # doctest: +SKIP
    """
    augmenting = check_options(batch_size, engine, store_dtype, compression, augment, views, seed)
    _refuse_options(
        base,
        Base,
        "base",
        "load_base(name",
        weights=weights,
        image_size=image_size,
        pooling=pooling,
        layer=layer,
        preprocess=preprocess,
        trust_graph=trust_graph or None,
    )
    source = as_source(source, classes=classes, limit=limit, split=split, groups=groups)
    if isinstance(base, Base):
        one = with_compute_dtype(base, compute_dtype)
        job = Pass(one, (one,))
    else:
        shaping = {"weights": weights, "image_size": image_size, "preprocess": preprocess}
        job = load_pass(
            base,
            layer=layer,
            pooling=pooling or "avg",
            compute_dtype=compute_dtype,
            trust_graph=trust_graph,
            seed=seed,
            **shaping,
        )
    (result,) = extract_pass(
        source,
        job,
        [Path(out)],
        views=augmenting,
        batch_size=batch_size,
        workers=workers,
        strict=strict,
        force=force,
        max_pixels=max_pixels,
        progress=progress,
        wait=wait,
        engine=engine,
        scheduler=scheduler,
        shard_images=shard_images,
        timeout=timeout,
        store_dtype=store_dtype,
        compression=compression,
        update=update,
    )
    return result


def check_options(
    batch_size: int | None,
    engine: str,
    store_dtype: str,
    compression: str | None,
    augment: str | list[str] | None,
    views: int,
    seed: int,
) -> Views | None:
    """Check the options that need neither the base nor the images; the views asked for.

    Raises
    ------
    ValueError, CacheError, AugmentError
        Naming the option and what is valid.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    check_storage(store_dtype, compression)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}. Received: engine={engine!r}")
    return Views.make(augment, views, seed)


def as_source(
    source: str | Source,
    *,
    classes: str | list | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
) -> Source:
    """``source`` opened (with ``classes``/``limit``/``groups``), restricted to one ``split``
    part."""
    _refuse_options(
        source, Source, "source", "open_source(spec", classes=classes, limit=limit, groups=groups
    )
    if not isinstance(source, Source):
        return open_source(source, classes=classes, limit=limit, split=split, groups=groups)
    return source if split is None else split_source(source, split)


def extract_pass(
    source: Source,
    job: Pass,
    paths: Sequence[str | Path],
    *,
    views: Views | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    force: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
    wait: Callable[[str], Any] | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    shard_images: int | None = None,
    timeout: float | None = None,
    store_dtype: str = "float32",
    compression: str | None = None,
    update: bool = False,
) -> list[ExtractResult]:
    """Extract ``source`` in one pass of ``job`` into its caches ``paths`` (one per base).

    The one extraction path under :func:`extract` and :func:`features.layers.extract_layers`:
    caches already up to date are left alone (unless ``force``); with ``update``, existing
    caches are brought up to date (:mod:`features.update`); the others are extracted in one
    pass, locally or as shards on Dask (:mod:`features.engines`). Options are
    :func:`extract`'s; ``views`` are :meth:`features.views.Views.make`'s.

    Returns
    -------
    list of ExtractResult
        One per path, in order.
    """
    paths = [Path(path) for path in paths]
    manifest = source.manifest()
    batch_size = batch_size or default_batch_size(job.runner.image_size, len(source))
    made = views.identity() if views else None
    identities = [cache_identity(b, source, manifest, store_dtype, made) for b in job.bases]
    prints = [fingerprint(identity) for identity in identities]
    storage = {"store_dtype": store_dtype, "compression": compression}

    def open_writer(k: int, replace: bool) -> CacheWriter:
        return _open_writer(
            paths[k], prints[k], identities[k], job.bases[k], source, manifest, replace, storage
        )

    settings = {
        "batch_size": batch_size,
        "strict": strict,
        "max_pixels": max_pixels,
        "views": views,
    }
    every = commit_seconds()
    with contextlib.ExitStack() as locks:
        for path in paths:
            with writing(path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
            locks.enter_context(writer_lock(path, wait))
        if update and not force and any(path.exists() for path in paths):
            from bottleneck_transfer.features.update import update_caches

            return update_caches(
                source,
                paths,
                prints=prints,
                identities=identities,
                manifest=manifest,
                open_writer=lambda k: open_writer(k, True),
                extract_part=lambda part, keep, fresh: extract_pass(
                    part,
                    job.select(keep),
                    fresh,
                    force=True,
                    workers=workers,
                    progress=progress,
                    **settings,
                ),
            )
        results: dict[int, ExtractResult] = {}
        for k, path in enumerate(paths):
            if not force and check_existing(path, prints[k], identities[k], manifest):
                with contextlib.suppress(CacheError):  # left by a stop between rename and cleanup
                    discard_partial(partial_path(path))
                results[k] = finished(path, up_to_date=True)
        todo = [k for k in range(len(paths)) if k not in results]
        if todo:
            done = _run_pass(
                source,
                job.select(todo),
                [paths[k] for k in todo],
                lambda i, replace: open_writer(todo[i], replace),
                force=force,
                workers=workers,
                progress=progress,
                engine=engine,
                scheduler=scheduler,
                shard_images=shard_images,
                timeout=timeout,
                prints=[prints[k] for k in todo],
                settings=settings,
                every=every,
            )
            for k in todo:
                results[k] = finished(
                    paths[k],
                    resumed_from=done.resumed_from,
                    seconds=done.seconds,
                    images_per_second=done.images_per_second,
                )
    return [results[k] for k in range(len(paths))]


def finished(path: Path, **fields: Any) -> ExtractResult:
    """The result of the complete cache at ``path`` (rows, failures, fingerprint read back)."""
    with FeatureCache.open(path) as cache:
        return ExtractResult(
            path, len(cache), cache.failed, fingerprint=cache.fingerprint, **fields
        )


def _run_pass(
    source: Source,
    job: Pass,
    paths: list[Path],
    open_writer: Callable[[int, bool], CacheWriter],
    *,
    force: bool,
    workers: int | None,
    progress: bool | None,
    engine: str,
    scheduler: str | None,
    shard_images: int | None,
    timeout: float | None,
    prints: list[str],
    settings: dict,
    every: float,
) -> ExtractResult:
    """Extract every cache of ``job`` in one pass, on ``engine``: the first cache's result."""
    if engine == "dask":
        from bottleneck_transfer.features.engines import extract_on_dask

        return extract_on_dask(
            source,
            job,
            paths,
            open_writer=lambda i: open_writer(i, True),
            prints=prints,
            settings=settings,
            scheduler=scheduler,
            n_workers=workers,
            shard_images=shard_images,
            progress=progress,
            timeout=timeout,
        )
    writers = [open_writer(i, force) for i in range(len(paths))]
    if len({writer.items_done for writer in writers}) > 1:  # stopped between two caches' commits
        for writer in writers:
            writer.close()
        writers = [open_writer(i, True) for i in range(len(paths))]
    fan = FanOut(writers, job, paths)
    try:
        return _run(
            fan,
            paths[0],
            source,
            job.runner,
            settings["batch_size"],
            workers,
            settings["strict"],
            settings["max_pixels"],
            progress,
            every,
            settings["views"],
        )
    except SourceError:  # nothing could be read: no cache keeps a partial file
        for writer in writers:
            with contextlib.suppress(Exception):
                discard_partial(writer.path)
        raise


def _refuse_options(given: object, kind: type, name: str, maker: str, **options) -> None:
    """One-line error when options that shape a ``source``/``base`` come with a built one."""
    passed = {key: value for key, value in options.items() if value is not None}
    if isinstance(given, kind) and passed:
        keys = ", ".join(f"{key}=" for key in options)
        args = ", ".join(f"{key}=..." for key in options)
        received = ", ".join(f"{key}={value!r}" for key, value in passed.items())
        raise ValueError(
            f"extract(): {keys} apply to a {name} given by name; {maker}, {args}) builds a "
            f"{kind.__name__} object with them. Received: {received}"
        )


def extract_split(
    source: str | Source,
    base: str | Base,
    out: str | Path,
    val_out: str | Path,
    *,
    val_split: float,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    **options,
) -> tuple[ExtractResult, ExtractResult] | tuple[list[ExtractResult], list[ExtractResult]]:
    """Extract a stratified, seeded train/validation split of one labelled source.

    The ``val_split`` share of each class goes to the cache ``val_out``, the rest to
    ``out``; each cache's provenance records the split. ``options`` are :func:`extract`'s;
    augmented views (``augment``, ``views``, seeded by ``seed`` too) go to the train part
    only: the validation cache is the plain cache of its images. With ``layers``, each part
    is :func:`features.layers.extract_layers`'s (one pass, one cache per layer beside
    ``out`` and beside ``val_out``; a list of results per part).

    Examples
    --------
    >>> train, val = extract_split("photos/", "mobilenet_v2", "train.h5", "val.h5",
    ...                            val_split=0.2, augment="flip,crop", views=4)  # doctest: +SKIP
    """
    run: Callable[..., Any] = extract
    if layers is not None:
        from bottleneck_transfer.features.layers import extract_layers

        run = functools.partial(extract_layers, layers=layers)
    plain = {k: v for k, v in options.items() if k not in ("augment", "views")}
    return (
        run(source, base, out, split=Split(val_split, "train", seed), seed=seed, **options),
        run(source, base, val_out, split=Split(val_split, "val", seed), seed=seed, **plain),
    )


def _open_writer(
    out: Path,
    print_fp: str,
    identity: dict,
    base: Base,
    source: Source,
    manifest: dict | None,
    force: bool,
    storage: dict,
) -> CacheWriter:
    partial = partial_path(out)
    if (partial.exists() or partial.is_symlink()) and not force:
        item_ids = [item.id for item in source.items]
        writer = CacheWriter.resume(
            partial, print_fp, identity, item_ids=item_ids, manifest=manifest
        )
        if writer is not None:
            return writer
    provenance = {
        "base": base.description,
        "source": source.describe(manifest),
        "decoding": DECODING,
        "storage": storage,
        **({"views": identity["views"]} if "views" in identity else {}),
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
        **storage,
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
    views: Views | None = None,
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
        batches = iter_batches(
            source,
            base.image_size,
            base.channels,
            batch_size,
            start=resumed_from,
            workers=workers,
            strict=strict,
            max_pixels=max_pixels,
        )
        with _TermAsInterrupt(), contextlib.closing(batches):
            tick = last_commit = time.perf_counter()
            for batch in batches:
                t0 = time.perf_counter()
                stage["wait_decode"] += t0 - tick
                features = run_model(batch.pixels)
                t1 = time.perf_counter()
                stage["model"] += t1 - t0
                labels = np.asarray([item.label for item in batch.items], np.int32)
                ids = [item.id for item in batch.items]
                if views is not None and ids:
                    features, labels, ids = views.with_views(
                        batch.pixels, features, labels, ids, run_model
                    )
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
    except BaseException as exc:
        with contextlib.suppress(CacheError):  # a full disk: keep what is committed
            writer.commit()
        writer.close()
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(_kept(writer, out, len(source))) from exc
        raise
    finally:
        bar.close()
    if writer.rows == 0:
        discard_partial(writer.path)
        failed = f" ({writer.n_failed} failed)" if writer.n_failed else ""
        raise SourceError(
            f"no image of {source.root} could be read{failed}: nothing was written to {out}; "
            "fix the images (or --classes/--limit) and rerun"
        )
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
    try:
        with _TermAsInterrupt():
            writer.finalize(out, extraction)
    except KeyboardInterrupt as exc:
        writer.close()
        if out.exists():  # stopped after the rename, while removing the partial folder
            raise Interrupted(
                f"after {out} was written: the next run removes what is left of {partial_path(out)}"
            ) from exc
        raise Interrupted(f"while assembling {out}: " + _kept(writer, out, len(source))) from exc
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


def _kept(writer: CacheWriter, out: Path, n_items: int) -> str:
    """What an interrupted extraction kept, and how to go on."""
    return (
        f"{writer.rows} rows ({writer.items_done} of {n_items} images) are kept in "
        f"{partial_path(out)}; run the same command again to resume"
    )
