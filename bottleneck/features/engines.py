"""Run an extraction as shards on a Dask cluster (a local one, or a scheduler's).

The source's ordered items are cut into deterministic shards (:func:`plan_shards`). One
function, :func:`extract_shard`, extracts one shard with the normal extraction path
(:func:`features.extract.extract_pass` on the shard's slice of the source) into its own
crash-safe, resumable shard cache named by the whole cache's fingerprint and the shard
number (one per layer when the pass computes several). The local engine is the case of a
single shard written at the final path; the Dask engine submits one task per missing shard
and joins the shard caches, in source order, into one version-1 cache (per layer) equal to a
local run's.

On a worker the base (or the joint model of several layers) is built once per process and
reused by all its tasks, and the source is reopened once from the provenance (so workers must
see the images at the same path: a shared filesystem). A task lost with its worker is run
again elsewhere (and resumes that shard's partial files); a job whose client died resumes by
running only the shards that are missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BaseModelError, BottleneckError, CacheError, SourceError
from bottleneck_transfer.features.cache.partial import discard_partial, partial_path
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.choices import DASK_TIMEOUT, ENGINES
from bottleneck_transfer.features.sources import Source, reopen_source
from bottleneck_transfer.fingerprint import diff_keys, fingerprint
from tqdm.auto import tqdm

#: How often the client asks the scheduler whether a worker runs its shards.
POLL_SECONDS = 2.0
#: Images per shard by default: a few minutes of work for a heavy base on one CPU host,
#: seconds on an accelerator; rounded to whole batches so shards batch like a local run.
DEFAULT_SHARD_IMAGES = 4096
TASK_RETRIES = 2
MISSING_DASK = (
    "--engine dask needs Dask's distributed scheduler, which is not installed; "
    "pip install 'bottleneck-transfer[dask]'"
)

#: Per worker process: bases built (by recipe fingerprint) and sources reopened.
_BASES: dict[str, Any] = {}
_SOURCES: dict[str, Source] = {}
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
    """The folder beside ``out`` that holds its shard caches while a Dask job runs."""
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


def _worker_pass(recipe: dict) -> Any:
    """The pass of ``recipe`` (:func:`features.extract.load_pass`), built once in this process."""
    global BASE_BUILDS
    key = fingerprint(recipe)
    if key not in _BASES:
        from bottleneck_transfer.features.passes import load_pass

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


def _worker_source(described: dict, expected: str) -> Source:
    """The source reopened from its provenance, checked to be the client's."""
    if expected not in _SOURCES:
        source = reopen_source(described)
        seen = fingerprint(source.identity())
        if seen != expected:
            raise SourceError(
                f"the worker on {platform.node()} sees other images under {described.get('root')} "
                "than the client (a different file list, sizes or times); workers must read "
                "the source from a path they all share"
            )
        _SOURCES[expected] = source
    return _SOURCES[expected]


def base_builds() -> int:
    """How many bases this process built (run on workers with ``client.run``)."""
    return BASE_BUILDS


def extract_shard(
    recipe: dict,
    bases: list[dict],
    described: dict,
    source_fp: str,
    shard: Shard,
    paths: list[str],
    settings: dict,
) -> dict[str, Any]:
    """Extract one shard into its own caches at ``paths`` (one per cache of the pass, several
    layers included); what a Dask task runs.

    ``bases`` are the client's base descriptions (:func:`check_same_bases`); ``settings``
    the extraction options (batch size, decode threads, strict, max_pixels, views). Resumes
    the shard's partial files if an earlier attempt died.
    """
    from bottleneck_transfer.features.extract import extract_pass

    job = _worker_pass(recipe)
    check_same_bases(job, bases)
    source = shard_source(_worker_source(described, source_fp), shard)
    extract_pass(source, job, paths, progress=False, **settings)
    return {"shard": shard.index, "items": shard.stop - shard.start, "host": platform.node()}


@contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Keep Dask's own log lines (a lost scheduler logs tracebacks while the client retries)
    off the terminal: every failure reaches the user as one line of ours."""
    loggers = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] == "distributed"
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_timeout(timeout: float | None) -> float:
    """``timeout`` in seconds (``None``: :data:`DASK_TIMEOUT`), refused unless positive."""
    if timeout is None:
        return DASK_TIMEOUT
    if not timeout > 0:
        raise BottleneckError(
            f"--timeout must be a positive number of seconds. Received: timeout={timeout!r}"
        )
    return float(timeout)


def _connect(scheduler: str, timeout: float) -> Any:
    """A client of the scheduler at ``scheduler`` that has at least one worker."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=f"{timeout}s")
    except ValueError as exc:
        raise BottleneckError(
            f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); give "
            "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise BottleneckError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s ({exc}); "
            "start one with `dask scheduler` and check --scheduler, or raise --timeout"
        ) from exc
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise BottleneckError(
            f"the Dask scheduler at {scheduler} has no workers (none joined in {timeout:g} s); "
            f"start some with `dask worker {scheduler}`, or raise --timeout"
        ) from exc
    return client


@contextmanager
def dask_client(
    scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[Any]:
    """A client of ``scheduler`` with at least one worker, or of a local cluster of
    ``n_workers`` processes; each wait (connecting, a first worker) at most ``timeout`` s.

    Raises
    ------
    BottleneckError
        One line for Dask not installed, an address that is not one, a scheduler not reached
        or without workers within ``timeout``.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BottleneckError(MISSING_DASK) from exc
    timeout = check_timeout(timeout)
    with _quiet_distributed():
        if scheduler:
            with _connect(scheduler, timeout) as client:
                yield client
            return
        n = n_workers or max(1, min(4, os.cpu_count() or 1))
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


@contextmanager
def joblib_engine(
    engine: str, scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[None]:
    """Send joblib's parallel work (head tuning fits) to a Dask cluster when ``engine="dask"``.

    scikit-learn and the head tuner fit through joblib, so under this context their trials
    run as tasks on the cluster through joblib's Dask backend; results equal a local run's.
    """
    if engine == "local":
        yield
        return
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}. Received: engine={engine!r}")
    import joblib

    with dask_client(scheduler, n_workers, timeout), joblib.parallel_config(backend="dask"):
        yield


def run_shards(
    client: Any,
    *,
    recipe: dict,
    bases: list[dict],
    source: Source,
    outs: list[Path],
    prints: list[str],
    shards: list[Shard],
    settings: dict,
    progress: bool | None,
    timeout: float = DASK_TIMEOUT,
) -> dict[str, Any]:
    """Submit every shard whose caches (one per cache of the pass) are not all there; wait
    for all with a progress bar, and stop (:func:`_wait_shards`) when no worker runs them
    for ``timeout`` seconds or the scheduler is lost. Finished shards stay for a rerun."""
    described = source.describe(None)
    source_fp = fingerprint(source.identity())
    targets = list(zip(outs, prints, strict=True))
    todo = [s for s in shards if not all(_shard_done(o, p, s) for o, p in targets)]
    for out in outs:
        shard_folder(out).mkdir(parents=True, exist_ok=True)
    out, print_fp = targets[0]
    futures = [
        client.submit(
            extract_shard,
            recipe,
            bases,
            described,
            source_fp,
            shard,
            [str(shard_path(o, p, shard)) for o, p in targets],
            settings,
            key=f"bottleneck-shard-{print_fp.split(':')[-1][:16]}-{shard.index:05d}",
            retries=TASK_RETRIES,
            pure=False,
        )
        for shard in todo
    ]
    total = sum(s.stop - s.start for s in todo)
    started = time.perf_counter()
    bar = tqdm(
        total=total,
        unit="img",
        desc=f"extract {out.name} ({len(todo)}/{len(shards)} shards)",
        disable=(None if progress is None else not progress),
        dynamic_ncols=True,
    )
    hosts: set[str] = set()

    def done(result: dict[str, Any]) -> None:
        hosts.add(result["host"])
        bar.update(result["items"])

    try:
        _wait_shards(
            client,
            futures,
            timeout,
            done,
            folder=shard_folder(out),
            kept=lambda: sum(all(_shard_done(o, p, s) for o, p in targets) for s in shards),
            of=len(shards),
        )
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    finally:
        bar.close()
    workers = client.scheduler_info().get("workers", {})
    return {
        "engine": "dask",
        "scheduler": client.scheduler.address,
        "workers": len(workers),
        "shards": len(shards),
        "shards_run": len(todo),
        "hosts": sorted(hosts),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _wait_shards(
    client: Any,
    futures: list[Any],
    timeout: float,
    done: Callable[[dict[str, Any]], None],
    *,
    folder: Path,
    kept: Callable[[], int],
    of: int,
) -> None:
    """Call ``done`` with each shard task's result as it finishes.

    Raises
    ------
    BottleneckError
        One line when for ``timeout`` seconds no shard finishes and no worker runs one (no
        worker left; a stuck worker once the scheduler drops it), the scheduler is lost, or
        a shard kills its workers; it says how many of the ``of`` shards are done
        (``kept()``) and kept in ``folder`` for the rerun that resumes.
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker, wait

    pending = set(futures)
    keys = {future.key for future in futures}
    address = client.scheduler.address

    def stop(why: str) -> BottleneckError:
        return BottleneckError(
            f"{why}; {kept()} of {of} shards are done and kept in {folder}: run the same "
            "command again to resume"
        )

    last = time.monotonic()
    while pending:
        try:
            finished, pending = wait(
                pending, timeout=min(timeout, POLL_SECONDS), return_when="FIRST_COMPLETED"
            )
        except TimeoutError:
            finished = set()
        except CancelledError as exc:  # distributed >= 2024.12: wait() raises it itself
            raise stop(f"lost the Dask scheduler at {address}") from exc
        for future in finished:
            try:
                done(future.result())
            except CancelledError as exc:
                raise stop(f"lost the Dask scheduler at {address}") from exc
            except KilledWorker as exc:
                raise stop(
                    f"a shard task killed {TASK_RETRIES + 1} workers of the Dask cluster at "
                    f"{address} (out of memory? see the workers' logs)"
                ) from exc
        try:
            if client.status != "running":
                raise OSError(f"client {client.status}")
            running = client.processing()  # worker -> the keys it runs
        except (OSError, TimeoutError) as exc:  # the connection closed under a call
            raise stop(f"lost the Dask scheduler at {address}") from exc
        if finished or any(key in keys for tasks in running.values() for key in tasks):
            last = time.monotonic()
        elif time.monotonic() - last > timeout:
            raise stop(
                f"no worker ran a shard for {timeout:g} s on the Dask cluster at {address} "
                f"({len(running)} workers); start or restart workers, or raise --timeout"
            )


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


def extract_on_dask(
    source: Source,
    job: Any,
    outs: list[Path],
    *,
    open_writer: Callable[[int], Any],
    prints: list[str],
    settings: dict,
    scheduler: str | None,
    n_workers: int | None,
    shard_images: int | None,
    progress: bool | None,
    timeout: float | None = None,
) -> Any:
    """Extract ``source`` as shards on a Dask cluster and join them into the caches ``outs``.

    Each shard task runs the whole pass ``job`` (:class:`features.extract.Pass`: one cache,
    or one per layer); ``open_writer(k)`` makes cache ``k``'s final writer (fingerprint
    ``prints[k]`` and provenance of the whole extraction); each cache's shards are joined
    into it in source order, then removed. The run stops with one line when no worker runs
    its shards for ``timeout`` seconds (:data:`DASK_TIMEOUT`) or it loses the scheduler;
    the finished shards stay, and the same call resumes. Returns the first cache's result.
    """
    from bottleneck_transfer.features.extract import finished

    if job.recipe is None:
        raise BottleneckError(
            "--engine dask builds the base on every worker: give the base by name or model "
            "path, not as a Base object"
        )
    shards = plan_shards(len(source), shard_images or DEFAULT_SHARD_IMAGES, settings["batch_size"])
    decode_threads = 1 if scheduler is None else None
    task_settings = {**settings, "workers": decode_threads}
    started = time.perf_counter()
    timeout = check_timeout(timeout)
    with dask_client(scheduler, n_workers, timeout) as client:
        ran = run_shards(
            client,
            recipe=job.recipe,
            bases=[base.description for base in job.bases],
            source=source,
            outs=outs,
            prints=prints,
            shards=shards,
            settings=task_settings,
            progress=progress,
            timeout=timeout,
        )
    joining = time.perf_counter()
    writers = [open_writer(k) for k in range(len(outs))]
    for writer, out, print_fp in zip(writers, outs, prints, strict=True):
        join_shards(writer, out, print_fp, shards)
    seconds = time.perf_counter() - started
    extraction = {
        **ran,
        "batch_size": settings["batch_size"],
        "shard_images": shards[0].stop - shards[0].start if shards else 0,
        "seconds": round(seconds, 3),
        "join_seconds": round(time.perf_counter() - joining, 3),
        "images_per_second": round(len(source) / seconds, 2) if seconds > 0 else None,
        "n_failed": writers[0].n_failed,
    }
    for writer, out, print_fp in zip(writers, outs, prints, strict=True):
        writer.finalize(out, extraction)
        remove_shards(out, print_fp, shards)
    return finished(
        outs[0], seconds=seconds, images_per_second=extraction["images_per_second"] or 0.0
    )
