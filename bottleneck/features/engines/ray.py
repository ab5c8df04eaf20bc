"""The Ray engine: shards (:mod:`.shards`) on Ray actors, one per worker, each building the
base once and running shard after shard.

``--engine ray`` starts a local Ray runtime of ``workers`` CPUs (and stops it at the end);
``--scheduler``/``--address`` joins a running cluster (``host:6379``, or ``auto``) and leaves
it running. An actor lost with its worker is restarted and its shard run again (resuming that
shard's partial files), up to :data:`TASK_RETRIES` times; a job whose client died resumes by
running only the missing shards.

Where the Ray runtime outlives the job (the caller connected with ``ray.init``, as a notebook
or the benchmark does), the actors stay for the driver's next job, like Dask's worker
processes: each builds the base once for all of them (:func:`shard_workers`).
:func:`joblib_backend` lets them go first, so head searches get every CPU.

Ray serves on the machine's network address whatever it is told; run it where that is meant
(the tests run it in a network namespace of its own, where loopback is the only address).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.engines.shards import (
    ShardJob,
    base_builds,
    extract_shard,
    run_sharded,
)
from bottleneck_transfer.features.loop import ExtractResult, Plan

#: Restarts of a lost actor, and retries of the shard it ran.
TASK_RETRIES = 2
#: The driver's shard actors kept between its jobs, by the Ray runtime's job id.
_ACTORS: dict[str, list[Any]] = {}
MISSING_RAY = (
    "--engine ray needs Ray, which is not installed; pip install 'bottleneck-transfer[ray]'"
)


class ShardWorker:
    """A Ray actor: extracts shards in its own process (the base built on its first shard)."""

    def extract(self, job_task: Any, shard: Any, paths: list[str]) -> dict[str, Any]:
        return extract_shard(job_task, shard, paths)

    def base_builds(self) -> int:
        return base_builds()


def run(plan: Plan) -> ExtractResult:
    """Extract ``plan`` as shards on Ray actors and join them into its caches
    (:func:`features.engines.shards.run_sharded`); the first cache's result."""
    return run_sharded(plan, "ray", _run_on_ray)


@contextlib.contextmanager
def ray_runtime(address: str | None, n_workers: int) -> Iterator[Any]:
    """The ``ray`` module, connected: to the cluster at ``address``, to the runtime this
    process already started, or to a new local runtime of ``n_workers`` CPUs (stopped at
    the end).

    Raises
    ------
    BottleneckError
        One line for Ray not installed or a cluster not reached.
    """
    try:
        import ray
    except ImportError as exc:
        raise BottleneckError(MISSING_RAY) from exc
    if ray.is_initialized():
        yield ray
        return
    _ACTORS.clear()  # a new runtime: actors of an earlier one are gone
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=n_workers, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise BottleneckError(
            f"cannot start or reach {where} ({exc}); check --address, or start one with "
            "`ray start --head`"
        ) from exc
    try:
        yield ray
    finally:
        _ACTORS.clear()
        ray.shutdown()


@contextlib.contextmanager
def joblib_backend(
    scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[None]:
    """Send joblib's parallel work (head tuning fits) to Ray: its joblib backend, on the
    cluster at ``scheduler`` or a local runtime of ``n_workers`` CPUs."""
    import joblib

    with ray_runtime(scheduler, n_workers or max(1, min(4, os.cpu_count() or 1))) as ray:
        release_workers(ray)
        from ray.util.joblib import register_ray

        register_ray()
        with joblib.parallel_config(backend="ray"):
            yield


def _run_on_ray(job: ShardJob) -> dict[str, Any]:
    """Run the job's missing shards on Ray actors; what the provenance records."""
    options = job.plan.options
    n = options.workers or max(1, min(4, os.cpu_count() or 1))
    with ray_runtime(options.scheduler, n) as ray:
        todo = job.start()
        workers = shard_workers(ray, max(1, min(n, len(todo))))
        before = ray.get([worker.base_builds.remote() for worker in workers])
        started = time.perf_counter()
        try:
            hosts = _run_actors(ray, job, workers, todo)
        except BaseException:
            release_workers(ray)
            raise
        builds = ray.get([worker.base_builds.remote() for worker in workers])
        address = ray.get_runtime_context().gcs_address
    return {
        "engine": "ray",
        "scheduler": address,
        "workers": len(workers),
        "base_builds": sum(max(a - b, 0) for a, b in zip(builds, before, strict=True)),
        "shards": len(job.shards),
        "shards_run": len(todo),
        "hosts": sorted(hosts),
        "seconds": round(time.perf_counter() - started, 3),
    }


def shard_workers(ray: Any, n: int) -> list[Any]:
    """``n`` shard actors of this driver: those kept from its earlier jobs (their bases
    built), and new ones up to ``n``."""
    kept = _ACTORS.setdefault(ray.get_runtime_context().get_job_id(), [])
    actor = ray.remote(num_cpus=1, max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES)
    kept += [actor(ShardWorker).remote() for _ in range(n - len(kept))]
    return kept[:n]


def release_workers(ray: Any) -> None:
    """End this driver's kept shard actors (their CPUs go back to Ray)."""
    for worker in _ACTORS.pop(ray.get_runtime_context().get_job_id(), []):
        ray.kill(worker)


def _run_actors(ray: Any, job: ShardJob, workers: list[Any], todo: list[Any]) -> set[str]:
    """Give each idle actor the next shard until all are done; the hosts that ran them.

    Raises
    ------
    BottleneckError
        One line when a shard's actor is lost more than :data:`TASK_RETRIES` times, saying
        how many shards are kept (:meth:`ShardJob.stopped`).
    """
    from ray.exceptions import RayActorError, RayTaskError

    queue, idle, running = list(todo), list(workers), {}
    hosts: set[str] = set()
    bar = job.progress_bar(todo)
    try:
        while queue or running:
            while queue and idle:
                worker, shard = idle.pop(), queue.pop(0)
                ref = worker.extract.remote(job.task, shard, job.targets(shard))
                running[ref] = worker
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                idle.append(running.pop(ref))
                try:
                    result = ray.get(ref)
                except RayActorError as exc:
                    raise job.stopped(
                        f"a shard task lost its Ray worker {TASK_RETRIES + 1} times"
                    ) from exc
                except RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                hosts.add(result["host"])
                bar.update(result["items"])
    finally:
        bar.close()
    return hosts
