"""Fits on every core: a comparison's folds and heads over worker processes (joblib).

Each fit is single-threaded and seeded, so fits spread over worker processes give the very
results they give one after another; what changes is the wall time. Workers pay a start-up
(imports, the data sent once as memory maps), so small data stays in the calling process
(:data:`PARALLEL_MIN_VALUES`). In a worker, joblib limits BLAS and OpenMP to its share of
the cores (``cpu_count // n_jobs``); :func:`share_threads` gives TensorFlow (the dense head)
the same share, so two workers on two cores run two threads, not four.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from joblib import Parallel, delayed, effective_n_jobs

#: Fits go to worker processes (one fit per core) only when the training features hold at
#: least this many values: below it, starting workers and sending them the data costs more
#: than the fits save.
PARALLEL_MIN_VALUES = 2**21
#: The thread-count variables joblib sets in its workers, and TensorFlow's.
JOBLIB_THREADS = "OMP_NUM_THREADS"
TENSORFLOW_THREADS = "TF_NUM_INTRAOP_THREADS"


def use_workers(n_calls: int, n_jobs: int | None, n_values: int) -> bool:
    """Whether ``n_calls`` fits on data of ``n_values`` values go to worker processes."""
    return n_calls > 1 and effective_n_jobs(n_jobs) > 1 and n_values >= PARALLEL_MIN_VALUES


def share_threads() -> None:
    """In a worker process, before TensorFlow starts: its intra-op threads = the worker's
    BLAS/OpenMP share (unless the user set them)."""
    threads = os.environ.get(JOBLIB_THREADS)
    if threads:
        os.environ.setdefault(TENSORFLOW_THREADS, threads)


def run_calls(
    function: Callable[..., Any],
    calls: Iterable[tuple],
    *,
    n_jobs: int | None,
    workers: bool,
) -> Iterator[Any]:
    """``function(*call)`` for each call, in order: over ``n_jobs`` worker processes when
    ``workers``, else here; results are yielded as they arrive in call order."""
    if workers:
        return Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(function)(*call) for call in calls
        )
    return (function(*call) for call in calls)
