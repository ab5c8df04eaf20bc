"""The extraction loop: decoded batches through the base into a resumable cache.

Batches come from :mod:`features.batches` (decoded in a thread pool a few batches ahead of
the model; one fixed-size compiled call per batch, the last one padded, so there is no
retracing and no per-call leak); rows are written to ``<out>.partial`` and committed once
``COMMIT_SECONDS`` of work or ``COMMIT_BYTES`` of rows are uncommitted (and whenever the loop
stops on an error, Ctrl-C or SIGTERM), so even a ``kill -9`` loses at most those seconds and
the next run resumes. ``os.replace`` moves the finished file into place.

One pass over the images (a :class:`features.runtimes.Pass`) feeds one cache, or one per
layer of one model; a :class:`Plan` says which caches and how (the
:class:`features.options.ExtractOptions`). :func:`run_missing` leaves caches that are up to
date alone and hands the rest to an engine; :func:`run_local` is the pass in this process
(the ``local`` engine, and every shard of the cluster engines through :func:`extract_here`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import CacheError, Interrupted, SourceError
from bottleneck_transfer.features.bases.common import Base, items_word
from bottleneck_transfer.features.batches import iter_batches
from bottleneck_transfer.features.cache.format import FORMAT_VERSION
from bottleneck_transfer.features.cache.partial import (
    discard_partial,
    partial_path,
    writer_lock,
    writing,
)
from bottleneck_transfer.features.cache.reader import FeatureCache, check_existing
from bottleneck_transfer.features.cache.writer import CacheWriter
from bottleneck_transfer.features.decode import DECODING
from bottleneck_transfer.features.options import ExtractOptions
from bottleneck_transfer.features.runners import make_context, open_runner
from bottleneck_transfer.features.runtimes import Pass, default_batch_size
from bottleneck_transfer.features.sources import Source
from bottleneck_transfer.features.text_batches import (
    default_text_batch,
    iter_text_batches,
    tally,
    text_provenance,
)
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.versions import software_versions
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from bottleneck_transfer.features.views import Views

#: Commit (fsync a chunk of) the partial cache once this many seconds of work are uncommitted:
#: the most a ``kill -9`` can lose, whatever the base's speed. Each commit costs ~16 ms for
#: 8k x 128 rows, so a fast base no longer commits several times a second. The environment
#: variable ``BOTTLENECK_COMMIT_SECONDS`` overrides it.
COMMIT_SECONDS = 5.0
COMMIT_SECONDS_ENV = "BOTTLENECK_COMMIT_SECONDS"
#: ... or once this many bytes of rows wait in memory, so a fast base's memory stays flat.
COMMIT_BYTES = 8 * 2**20


@dataclass(repr=False)
class ExtractResult(Display):
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
    #: What the rows are in messages: ``"images"`` or ``"texts"``.
    unit: str = "images"

    def _display_summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "up_to_date": self.up_to_date,
            "failed": len(self.failed),
            "seconds": self.seconds,
            f"{self.unit}_per_second": self.images_per_second,
            "resumed_from": self.resumed_from or None,
            "update": self.update,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """The images that were skipped, and why (open the cache for its rows)."""
        return [{"id": item_id, "reason": reason} for item_id, reason in self.failed]


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


@dataclass
class Plan:
    """One pass's work: ``source`` through ``job`` into the caches ``paths``, as ``options``
    say (``batch_size`` resolved), with each cache's identity and fingerprint.

    Build with :meth:`make`; an engine writes it (:mod:`features.engines`).
    """

    source: Source
    job: Pass
    paths: list[Path]
    options: ExtractOptions
    manifest: dict | None
    identities: list[dict]
    prints: list[str]
    #: Seconds of uncommitted work before a commit (:func:`commit_seconds`).
    every: float = COMMIT_SECONDS

    @classmethod
    def make(
        cls,
        source: Source,
        job: Pass,
        paths: Sequence[str | Path],
        options: ExtractOptions,
        manifest: dict | None = None,
    ) -> Plan:
        """The plan of ``job`` over ``source`` into ``paths`` (``manifest``: the source's,
        when the caller has just read it; else read here)."""
        check_modality(source, job.runner)
        manifest = source.manifest() if manifest is None else manifest
        batch_size = options.batch_size or _default_batch(job.runner, len(source))
        options = options.replace(batch_size=batch_size)
        views = options.made_views()
        if views and job.runner.modality == "text":
            raise SourceError("--augment and --views make views of images; a text base takes none")
        made = views.identity() if views else None
        identities = [
            cache_identity(b, source, manifest, options.store_dtype, made) for b in job.bases
        ]
        prints = [fingerprint(identity) for identity in identities]
        paths = [Path(p) for p in paths]
        return cls(source, job, paths, options, manifest, identities, prints, commit_seconds())

    @property
    def views(self) -> Views | None:
        return self.options.made_views()

    def select(self, keep: Sequence[int]) -> Plan:
        """The same plan writing only the caches ``keep`` (indices into :attr:`paths`)."""
        return dataclasses.replace(
            self,
            job=self.job.select(keep),
            paths=[self.paths[k] for k in keep],
            identities=[self.identities[k] for k in keep],
            prints=[self.prints[k] for k in keep],
        )

    def open_writer(self, k: int, replace: bool) -> CacheWriter:
        """Cache ``k``'s writer: its partial file resumed unless ``replace``, else a new one."""
        return _open_writer(
            self.paths[k],
            self.prints[k],
            self.identities[k],
            self.job.bases[k],
            self.source,
            self.manifest,
            replace,
            {"store_dtype": self.options.store_dtype, "compression": self.options.compression},
        )


def check_modality(source: Source, base: Base) -> None:
    """Refuse texts through an image base, or images through a text base (one line)."""
    if source.modality != base.modality:
        what = {"image": "images", "text": "texts"}
        raise SourceError(
            f"{source.root} holds {what[source.modality]} but the base {base.name} takes "
            f"{what[base.modality]}: give a {base.modality} source, or a {source.modality} base"
        )


def _default_batch(base: Base, n_items: int) -> int:
    """Items per model call: an image base's (by input size) or a text base's (texts at
    ``max_length``: the token budget's rows)."""
    if base.modality == "text":
        from bottleneck_transfer.features.runtimes import accelerator_devices

        return default_text_batch(bool(accelerator_devices()), n_items)
    return default_batch_size(base.image_size, n_items)


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


@contextlib.contextmanager
def locked(paths: Sequence[Path], wait: Callable[[str], Any] | None) -> Iterator[None]:
    """Hold the writer lock of every cache in ``paths`` (their folders made) for the block."""
    with contextlib.ExitStack() as locks:
        for path in paths:
            with writing(path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
            locks.enter_context(writer_lock(path, wait))
        yield


def run_missing(plan: Plan, run: Callable[[Plan], ExtractResult]) -> list[ExtractResult]:
    """Leave the caches of ``plan`` already up to date alone (unless ``force``) and write the
    others with ``run`` (an engine's); one result per path, in order. Hold :func:`locked`."""
    results: dict[int, ExtractResult] = {}
    for k, path in enumerate(plan.paths):
        if not plan.options.force and check_existing(
            path, plan.prints[k], plan.identities[k], plan.manifest
        ):
            with contextlib.suppress(CacheError):  # left by a stop between rename and cleanup
                discard_partial(partial_path(path))
            results[k] = finished(path, up_to_date=True)
    todo = [k for k in range(len(plan.paths)) if k not in results]
    if todo:
        done = run(plan.select(todo))
        for k in todo:
            results[k] = finished(
                plan.paths[k],
                resumed_from=done.resumed_from,
                seconds=done.seconds,
                images_per_second=done.images_per_second,
            )
    return [results[k] for k in range(len(plan.paths))]


def extract_here(
    source: Source,
    job: Pass,
    paths: Sequence[str | Path],
    options: ExtractOptions,
    manifest: dict | None = None,
) -> list[ExtractResult]:
    """Extract ``source`` in one pass of ``job`` into ``paths`` in this process: what a shard
    task of the cluster engines runs (resuming the shard's partial files); ``manifest`` as
    in :meth:`Plan.make`."""
    plan = Plan.make(source, job, paths, options, manifest)
    with locked(plan.paths, options.wait):
        return run_missing(plan, run_local)


def finished(path: Path, **fields: Any) -> ExtractResult:
    """The result of the complete cache at ``path`` (rows, failures, fingerprint read back)."""
    with FeatureCache.open(path) as cache:
        unit = items_word(cache.provenance.get("base", {}))
        return ExtractResult(
            path, len(cache), cache.failed, fingerprint=cache.fingerprint, unit=unit, **fields
        )


class FanOut:
    """The writers of the caches of one pass, driven by the extraction loop as one writer:
    each batch's runner outputs are split among them (:meth:`Pass.split`); each finalizes its
    own path."""

    def __init__(self, writers: list[CacheWriter], job: Pass, paths: list[Path]) -> None:
        self.writers, self.job, self.paths = writers, job, paths
        self.path = writers[0].path

    def write_batch(self, features: np.ndarray | list[np.ndarray], *rest: Any) -> None:
        for writer, rows in zip(self.writers, self.job.split(features), strict=True):
            writer.write_batch(rows, *rest)

    def commit(self) -> None:
        for writer in self.writers:
            writer.commit()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def finalize(self, out: Path, extraction: dict) -> None:
        for writer, path in zip(self.writers, self.paths, strict=True):
            writer.finalize(path, extraction)

    def __getattr__(self, name: str) -> Any:  # rows, items_done, n_failed: equal for all
        return getattr(self.writers[0], name)

    @property
    def pending_bytes(self) -> int:
        return sum(writer.pending_bytes for writer in self.writers)


def run_local(plan: Plan) -> ExtractResult:
    """Extract every cache of ``plan`` in one pass in this process (the ``local`` engine):
    resume their partial files unless ``force``; the first cache's result."""
    force = plan.options.force
    writers = [plan.open_writer(i, force) for i in range(len(plan.paths))]
    if len({writer.items_done for writer in writers}) > 1:  # stopped between two caches' commits
        for writer in writers:
            writer.close()
        writers = [plan.open_writer(i, True) for i in range(len(plan.paths))]
    fan = FanOut(writers, plan.job, plan.paths)
    try:
        return _run(fan, plan.paths[0], plan)
    except SourceError:  # nothing could be read: no cache keeps a partial file
        for writer in writers:
            with contextlib.suppress(Exception):
                discard_partial(writer.path)
        raise


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
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
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


def _run(writer: CacheWriter, out: Path, plan: Plan) -> ExtractResult:
    """Run the loop from where ``writer`` stands to the end of the plan's source, then
    finalize ``out``."""
    source, options = plan.source, plan.options
    resumed_from = writer.items_done
    workers = options.workers or os.cpu_count() or 1
    stage = {"wait_decode": 0.0, "model": 0.0, "write": 0.0}
    counts: dict[str, int] = {}
    started = time.perf_counter()
    bar = tqdm(
        total=len(source),
        initial=resumed_from,
        unit=source.units[1],
        desc=f"extract {out.name}",
        disable=(None if options.progress is None else not options.progress),
        dynamic_ncols=True,
    )
    try:
        runtime = _drive(writer, plan, workers, stage, bar, counts)
    except BaseException as exc:
        with contextlib.suppress(CacheError):  # a full disk: keep what is committed
            writer.commit()
        writer.close()
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(_kept(writer, out, source)) from exc
        raise
    finally:
        bar.close()
    if writer.rows == 0:
        discard_partial(writer.path)
        failed = f" ({writer.n_failed} failed)" if writer.n_failed else ""
        raise SourceError(
            f"no {source.modality} of {source.root} could be read{failed}: nothing was written "
            f"to {out}; fix the {source.modality}s (or --classes/--limit) and rerun"
        )
    seconds = time.perf_counter() - started
    done = len(source) - resumed_from
    extraction = {
        "batch_size": options.batch_size,
        "workers": workers,
        "seconds": round(seconds, 3),
        "images_per_second": round(done / seconds, 2) if seconds > 0 else None,
        "resumed_from": resumed_from,
        "n_failed": writer.n_failed,
        "stage_seconds": {k: round(v, 4) for k, v in stage.items()},
        "runtime": runtime,
        **(_text_provenance(plan, counts) if counts else {}),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _finalize(writer, out, extraction, source)
    return finished(
        out,
        resumed_from=resumed_from,
        seconds=seconds,
        images_per_second=extraction["images_per_second"] or 0.0,
    )


def _drive(
    writer: CacheWriter,
    plan: Plan,
    workers: int,
    stage: dict[str, float],
    bar: Any,
    counts: dict[str, int],
) -> dict:
    """The batches of the plan's source from ``writer.items_done`` through the pass's model
    (on the options' runtime, :mod:`features.runners`) into ``writer``, committing every
    ``plan.every`` seconds or :data:`COMMIT_BYTES`; ``stage`` adds up the seconds spent
    waiting for decoding, in the model and writing, ``counts`` a text base's texts and
    tokens (:func:`features.text_batches.tally`). Returns the runtime's provenance."""
    options, views, every, base = plan.options, plan.views, plan.every, plan.job.runner
    assert options.batch_size is not None
    context = make_context(trusted=options.trust_graph)
    run_model = open_runner(plan.job, options.batch_size, options.runtime, context)
    if base.modality == "text":
        batches = iter_text_batches(
            plan.source,
            base.encoder,
            options.batch_size,
            start=writer.items_done,
            strict=options.strict,
        )
    else:
        batches = iter_batches(
            plan.source,
            base.image_size,
            base.channels,
            options.batch_size,
            start=writer.items_done,
            workers=workers,
            strict=options.strict,
            max_pixels=options.max_pixels,
        )
    with _TermAsInterrupt(), contextlib.closing(batches):
        tick = last_commit = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            stage["wait_decode"] += t0 - tick
            features = run_model(batch.pixels)
            t1 = time.perf_counter()
            stage["model"] += t1 - t0
            if base.modality == "text":
                tally(counts, batch.pixels)
            labels = np.asarray([item.label for item in batch.items], np.int32)
            ids = [item.id for item in batch.items]
            if views is not None and ids:
                features, labels, ids = views.with_views(
                    batch.pixels, features, labels, ids, run_model
                )
            writer.write_batch(features, labels, ids, batch.failures, batch.end)
            if time.perf_counter() - last_commit >= every or writer.pending_bytes >= COMMIT_BYTES:
                writer.commit()
                last_commit = time.perf_counter()
            tick = time.perf_counter()
            stage["write"] += tick - t1
            bar.update(len(batch.items) + len(batch.failures))
            if batch.failures:
                bar.set_postfix(failed=writer.n_failed)
    return run_model.provenance


def _text_provenance(plan: Plan, counts: dict[str, int]) -> dict:
    """The ``text`` entry of a text extraction's provenance (:func:`text_provenance`)."""
    return {"text": text_provenance(counts, plan.job.runner.encoder.max_length)}


def _finalize(writer: CacheWriter, out: Path, extraction: dict, source: Source) -> None:
    """Assemble ``out`` from the writer's chunks; a Ctrl-C or SIGTERM meanwhile is
    :class:`Interrupted`, saying what is kept."""
    try:
        with _TermAsInterrupt():
            writer.finalize(out, extraction)
    except KeyboardInterrupt as exc:
        writer.close()
        if out.exists():  # stopped after the rename, while removing the partial folder
            raise Interrupted(
                f"after {out} was written: the next run removes what is left of {partial_path(out)}"
            ) from exc
        raise Interrupted(f"while assembling {out}: " + _kept(writer, out, source)) from exc


def _kept(writer: CacheWriter, out: Path, source: Source) -> str:
    """What an interrupted extraction kept (counted in images or texts), and how to go on."""
    return (
        f"{writer.rows} rows ({writer.items_done} of {len(source)} {source.units[0]}) are kept in "
        f"{partial_path(out)}; run the same command again to resume"
    )
