"""The Dask engine: shards (:mod:`.shards`) as tasks on a Dask cluster (a local one of
``workers`` processes on 127.0.0.1, or the scheduler at ``--scheduler``).

One task per missing shard, each building the base once per worker process; a task lost with
its worker is run again elsewhere (and resumes that shard's partial files); the run stops
with one line when no worker runs a shard for ``--timeout`` seconds or the scheduler is lost,
keeping the finished shards. Also :func:`joblib_backend`: head searches through joblib's Dask
backend.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.engines.shards import (
    ShardJob,
    check_timeout,
    extract_shard,
    run_sharded,
)
from bottleneck_transfer.features.loop import ExtractResult, Plan

#: How often the client asks the scheduler whether a worker runs its shards.
POLL_SECONDS = 2.0
TASK_RETRIES = 2
MISSING_DASK = (
    "--engine dask needs Dask's distributed scheduler, which is not installed; "
    "pip install 'bottleneck-transfer[dask]'"
)


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


def _connected(scheduler: str) -> Any:
    """This process's current client (``Client.current``) if it is running and connected to
    ``scheduler``, else None."""
    from distributed import Client

    try:
        client = Client.current(allow_global=True)
    except ValueError:  # no client in this process
        return None
    if client.status != "running" or client.scheduler.address != scheduler:
        return None
    return client


@contextmanager
def dask_client(
    scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[Any]:
    """A client of ``scheduler`` with at least one worker (this process's own client of it
    where there is one, as in a notebook: kept open), or of a local cluster of
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
            existing = _connected(scheduler)
            if existing is not None:  # this process's client of it: no new connection
                yield existing
                return
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
def joblib_backend(
    scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[None]:
    """Send joblib's parallel work (head tuning fits) to a Dask cluster: under this context
    scikit-learn's and the head tuner's trials run as tasks through joblib's Dask backend;
    results equal a local run's."""
    import joblib

    with dask_client(scheduler, n_workers, timeout), joblib.parallel_config(backend="dask"):
        yield


def run(plan: Plan) -> ExtractResult:
    """Extract ``plan`` as shards on a Dask cluster and join them into its caches
    (:func:`features.engines.shards.run_sharded`); the first cache's result."""
    return run_sharded(plan, "dask", _run_on_dask)


def _run_on_dask(job: ShardJob) -> dict[str, Any]:
    """Run the job's missing shards on the cluster of the plan's options."""
    options = job.plan.options
    with dask_client(options.scheduler, options.workers, job.timeout) as client:
        return run_shards(client, job)


def run_shards(client: Any, job: ShardJob) -> dict[str, Any]:
    """Submit every shard whose caches (one per cache of the pass) are not all there; wait
    for all with a progress bar, and stop (:func:`_wait_shards`) when no worker runs them
    for ``job.timeout`` seconds or the scheduler is lost. Finished shards stay for a rerun."""
    todo = job.start()
    futures = [
        client.submit(
            extract_shard,
            job.task,
            shard,
            job.targets(shard),
            key=job.task_key(shard),
            retries=TASK_RETRIES,
            pure=False,
        )
        for shard in todo
    ]
    started = time.perf_counter()
    bar = job.progress_bar(todo)
    hosts: set[str] = set()

    def done(result: dict[str, Any]) -> None:
        hosts.add(result["host"])
        bar.update(result["items"])

    try:
        _wait_shards(client, futures, job, done)
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
        "shards": len(job.shards),
        "shards_run": len(todo),
        "hosts": sorted(hosts),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _wait_shards(
    client: Any, futures: list[Any], job: ShardJob, done: Callable[[dict[str, Any]], None]
) -> None:
    """Call ``done`` with each shard task's result as it finishes.

    Raises
    ------
    BottleneckError
        One line when for ``timeout`` seconds no shard finishes and no worker runs one (no
        worker left; a stuck worker once the scheduler drops it), the scheduler is lost, or
        a shard kills its workers; it says how many of the job's shards are done and kept
        for the rerun that resumes (:meth:`ShardJob.stopped`).
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker, wait

    pending = set(futures)
    keys = {future.key for future in futures}
    address = client.scheduler.address
    timeout, stop = job.timeout, job.stopped

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
                result = future.result()
            except (CancelledError, OSError) as exc:  # OSError: the gather's connection closed
                raise stop(f"lost the Dask scheduler at {address}") from exc
            except KilledWorker as exc:
                raise stop(
                    f"a shard task killed {TASK_RETRIES + 1} workers of the Dask cluster at "
                    f"{address} (out of memory? see the workers' logs)"
                ) from exc
            done(result)
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
