"""Shards: the cluster engines' common part (:mod:`.dask`, :mod:`.ray`).

The source's ordered items are cut into deterministic shards (:func:`plan_shards`). One
function, :func:`extract_shard`, extracts one shard with the normal extraction path
(:func:`features.loop.extract_here` on the shard's slice of the source) into its own
crash-safe, resumable shard cache named by the whole cache's fingerprint and the shard
number (one per layer when the pass computes several). :func:`run_sharded` runs the shards
that are missing (an engine's ``run_tasks`` submits them, retries lost ones and reports
progress) and joins the shard caches, in source order, into one version-1 cache (per layer)
equal to a local run's; a job whose client died resumes by running only the missing shards.

On a worker the base (or the joint model of several layers) is built once per process and
reused by all its tasks, and the source is reopened once from the provenance (so workers must
see the images at the same path: a shared filesystem).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BaseModelError, BottleneckError, CacheError, SourceError
from bottleneck_transfer.features.cache.partial import discard_partial, partial_path
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.choices import DASK_TIMEOUT
from bottleneck_transfer.features.loop import ExtractResult, Plan, extract_here, finished
from bottleneck_transfer.features.options import ExtractOptions
from bottleneck_transfer.features.runtimes import load_pass
from bottleneck_transfer.features.sources import Source, reopen_source
from bottleneck_transfer.fingerprint import diff_keys, fingerprint
from tqdm.auto import tqdm

#: Images per shard by default: a few minutes of work for a heavy base on one CPU host,
#: seconds on an accelerator; rounded to whole batches so shards batch like a local run.
DEFAULT_SHARD_IMAGES = 4096


#: Per worker process: bases built (by recipe fingerprint), and sources reopened with the
#: manifest their check read (by the source's fingerprint).
_BASES: dict[str, Any] = {}
_SOURCES: dict[str, tuple[Source, dict | None]] = {}


#: How many times this process built a base (the tests count it: once per worker).
BASE_BUILDS = 0


@dataclasses.dataclass(frozen=True)
class Shard:
    """Items ``[start, stop)`` of the source, the ``index``-th shard."""

    index: int
    start: int
    stop: int


def plan_shards(n_items: int, shard_images: int, batch_size: int) -> list[Shard]:
    """Cut ``n_items`` into consecutive shards of whole batches (the last one shorter)."""
    if shard_images < 1:
        raise ValueError(f"shard_images must be >= 1. Received: shard_images={shard_images}")
    size = max(batch_size, shard_images // batch_size * batch_size)
    starts = range(0, n_items, size)
    return [Shard(i, start, min(start + size, n_items)) for i, start in enumerate(starts)]


def shard_folder(out: str | Path) -> Path:
    """The folder beside ``out`` that holds its shard caches while a cluster job runs."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def shard_path(out: str | Path, print_fp: str, shard: Shard) -> Path:
    """The shard cache of ``shard``, named by the whole cache's fingerprint and the number."""
    return shard_folder(out) / f"{print_fp.split(':')[-1][:16]}-{shard.index:05d}.h5"


def shard_source(source: Source, shard: Shard) -> Source:
    """The source restricted to the shard's items (same root, classes and arrays)."""
    options = {**source.options, "shard": [shard.start, shard.stop]}
    return dataclasses.replace(
        source, items=source.items[shard.start : shard.stop], options=options
    )


def shard_manifest(manifest: dict | None, shard: Shard) -> dict | None:
    """The shard's rows of a source's manifest (each of its per-item lists sliced)."""
    if manifest is None:
        return None
    return {key: values[shard.start : shard.stop] for key, values in manifest.items()}


def _worker_pass(recipe: dict) -> Any:
    """The pass of ``recipe`` (:func:`features.runtimes.load_pass`), built once in this process."""
    global BASE_BUILDS
    key = fingerprint(recipe)
    if key not in _BASES:
        _BASES[key] = load_pass(**recipe)
        BASE_BUILDS += 1
    return _BASES[key]


def check_same_bases(job: Any, described: list[dict]) -> None:
    """Refuse a pass built on a worker whose bases are not the client's (``described``: the
    client's base descriptions, weights' sha256 included), so a shard never holds features of
    other weights under the client's fingerprint."""
    for base, expected in zip(job.bases, described, strict=True):
        differ = diff_keys(expected, base.description)
        if differ:
            raise BaseModelError(
                f"the worker on {platform.node()} built another base than the client "
                f"({', '.join(differ)} differ); every worker needs the same base file, "
                "weights and versions of Keras and the application as the client"
            )


def _worker_source(described: dict, expected: str) -> tuple[Source, dict | None]:
    """The source reopened from its provenance, checked to be the client's; and its
    manifest (sizes and times), read once for the check and sliced for each shard."""
    if expected not in _SOURCES:
        source = reopen_source(described)
        manifest = source.manifest()
        seen = fingerprint(source.identity(manifest))
        if seen != expected:
            raise SourceError(
                f"the worker on {platform.node()} sees other images under {described.get('root')} "
                "than the client (a different file list, sizes or times); workers must read "
                "the source from a path they all share"
            )
        _SOURCES[expected] = (source, manifest)
    return _SOURCES[expected]


def base_builds() -> int:
    """How many bases this process built (run on workers with ``client.run``)."""
    return BASE_BUILDS


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """What every shard task of one job needs: the pass's ``recipe`` (:func:`load_pass`), the
    client's base descriptions (:func:`check_same_bases`), the source's provenance and
    fingerprint, and the extraction ``options`` a shard runs with."""

    recipe: dict
    bases: list[dict]
    described: dict
    source_fp: str
    options: ExtractOptions


def extract_shard(task: ShardTask, shard: Shard, paths: list[str]) -> dict[str, Any]:
    """Extract one shard into its own caches at ``paths`` (one per cache of the pass, several
    layers included); what a cluster task runs. Resumes the shard's partial files if an
    earlier attempt died."""
    job = _worker_pass(task.recipe)
    check_same_bases(job, task.bases)
    whole, manifest = _worker_source(task.described, task.source_fp)
    extract_here(
        shard_source(whole, shard), job, paths, task.options, shard_manifest(manifest, shard)
    )
    return {"shard": shard.index, "items": shard.stop - shard.start, "host": platform.node()}


def check_timeout(timeout: float | None) -> float:
    """``timeout`` in seconds (``None``: :data:`DASK_TIMEOUT`), refused unless positive."""
    if timeout is None:
        return DASK_TIMEOUT
    if not timeout > 0:
        raise BottleneckError(
            f"--timeout must be a positive number of seconds. Received: timeout={timeout!r}"
        )
    return float(timeout)


def _shard_done(out: Path, print_fp: str, shard: Shard) -> bool:
    path = shard_path(out, print_fp, shard)
    if not path.is_file():
        return False
    try:
        with FeatureCache.open(path):
            return True
    except BottleneckError:
        return False


def join_shards(writer: Any, out: Path, print_fp: str, shards: list[Shard]) -> None:
    """Append each shard cache, in source order, to ``writer`` (one committed chunk each)."""
    for shard in shards:
        with FeatureCache.open(shard_path(out, print_fp, shard)) as cache:
            features = cache.features
            ids = cache.ids
            writer.write_batch(
                np.asarray(features, np.float32),
                np.asarray(cache.labels, np.int32),
                ids,
                cache.failed,
                shard.stop,
            )
        writer.commit()


def remove_shards(out: Path, print_fp: str, shards: list[Shard]) -> None:
    """Delete the shard caches of this job (only those) and their folder once empty."""
    for shard in shards:
        path = shard_path(out, print_fp, shard)
        path.unlink(missing_ok=True)
        with contextlib.suppress(CacheError):  # only a partial folder the writer made
            discard_partial(partial_path(path))
    folder = shard_folder(out)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@dataclasses.dataclass
class ShardJob:
    """The shards of one plan and the task that extracts each; what an engine's
    ``run_tasks`` submits (:meth:`start`: the missing ones) and waits for."""

    plan: Plan
    task: ShardTask
    shards: list[Shard]
    timeout: float
    #: This run of the job: its task names differ from an earlier run's, whose results a
    #: client kept between jobs may still hold (the scheduler would return them unrun).
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    def targets(self, shard: Shard) -> list[str]:
        """The shard caches of ``shard``, one per cache of the pass."""
        plan = self.plan
        return [str(shard_path(o, p, shard)) for o, p in zip(plan.paths, plan.prints, strict=True)]

    def done(self, shard: Shard) -> bool:
        """Whether every cache of ``shard`` is complete (kept from an earlier run)."""
        return all(
            _shard_done(o, p, shard) for o, p in zip(self.plan.paths, self.plan.prints, strict=True)
        )

    def start(self) -> list[Shard]:
        """The shards still to run, their shard folders made (once the cluster is reached)."""
        for out in self.plan.paths:
            shard_folder(out).mkdir(parents=True, exist_ok=True)
        return [shard for shard in self.shards if not self.done(shard)]

    def kept(self) -> int:
        """How many shards are done."""
        return sum(self.done(shard) for shard in self.shards)

    def task_key(self, shard: Shard) -> str:
        """A task name unique to this run of the job and shard."""
        job = self.plan.prints[0].split(":")[-1][:16]
        return f"bottleneck-shard-{job}-{self.run_id}-{shard.index:05d}"

    def progress_bar(self, todo: list[Shard]) -> Any:
        """A progress bar over the images (texts) of ``todo``."""
        progress = self.plan.options.progress
        return tqdm(
            total=sum(s.stop - s.start for s in todo),
            unit=self.plan.source.units[1],
            desc=f"extract {self.plan.paths[0].name} ({len(todo)}/{len(self.shards)} shards)",
            disable=(None if progress is None else not progress),
            dynamic_ncols=True,
        )

    def stopped(self, why: str) -> BottleneckError:
        """The one-line error of a run that stops: how many shards are kept, and where."""
        return BottleneckError(
            f"{why}; {self.kept()} of {len(self.shards)} shards are done and kept in "
            f"{shard_folder(self.plan.paths[0])}: run the same command again to resume"
        )


def shard_options(options: ExtractOptions, decode_threads: int | None) -> ExtractOptions:
    """The options a shard task runs with: the pass's batch size, strictness, pixel limit and
    views; decoding threads ``decode_threads``; no progress bar, storage float32 (the join
    stores the final dtype)."""
    return ExtractOptions(
        batch_size=options.batch_size,
        workers=decode_threads,
        strict=options.strict,
        max_pixels=options.max_pixels,
        progress=False,
        augment=options.augment,
        views=options.views,
        seed=options.seed,
    )


def run_sharded(
    plan: Plan, engine: str, run_tasks: Callable[[ShardJob], dict[str, Any]]
) -> ExtractResult:
    """Extract ``plan`` as shards on a cluster and join them into its caches.

    ``run_tasks(job)`` runs the job's missing shards with :func:`extract_shard` (each task
    builds the whole pass: one cache, or one per layer) and returns what the provenance
    records about the run (engine, workers, hosts, ...). Each cache's shards are then joined
    into it in source order, and removed. Returns the first cache's result.

    Raises
    ------
    BottleneckError
        A base given as an object (workers cannot build it); what ``run_tasks`` raises.
    """
    options = plan.options
    if plan.job.recipe is None:
        raise BottleneckError(
            f"--engine {engine} builds the base on every worker: give the base by name or "
            "model path, not as a Base object"
        )
    if plan.source.options.get("spec") is None:
        raise BottleneckError(
            f"--engine {engine} reopens the source on every worker, and arrays in memory "
            "cannot be sent there: save them with numpy.savez and extract the .npz file"
        )
    assert options.batch_size is not None
    shards = plan_shards(
        len(plan.source), options.shard_images or DEFAULT_SHARD_IMAGES, options.batch_size
    )
    decode_threads = 1 if options.scheduler is None else None
    task = ShardTask(
        plan.job.recipe,
        [base.description for base in plan.job.bases],
        plan.source.describe(plan.manifest),  # the plan's reading of the files: not again
        fingerprint(plan.source.identity(plan.manifest)),
        shard_options(options, decode_threads),
    )
    started = time.perf_counter()
    job = ShardJob(plan, task, shards, check_timeout(options.timeout))
    ran = run_tasks(job)
    return _join(plan, shards, ran, started)


def _join(plan: Plan, shards: list[Shard], ran: dict[str, Any], started: float) -> ExtractResult:
    """Join each cache's shards into it, in source order; finalize; remove the shards."""
    joining = time.perf_counter()
    writers = [plan.open_writer(k, True) for k in range(len(plan.paths))]
    for writer, out, print_fp in zip(writers, plan.paths, plan.prints, strict=True):
        join_shards(writer, out, print_fp, shards)
    seconds = time.perf_counter() - started
    extraction = {
        **ran,
        "batch_size": plan.options.batch_size,
        "shard_images": shards[0].stop - shards[0].start if shards else 0,
        "seconds": round(seconds, 3),
        "join_seconds": round(time.perf_counter() - joining, 3),
        "images_per_second": round(len(plan.source) / seconds, 2) if seconds > 0 else None,
        "n_failed": writers[0].n_failed,
    }
    for writer, out, print_fp in zip(writers, plan.paths, plan.prints, strict=True):
        writer.finalize(out, extraction)
        remove_shards(out, print_fp, shards)
    return finished(
        plan.paths[0], seconds=seconds, images_per_second=extraction["images_per_second"] or 0.0
    )
