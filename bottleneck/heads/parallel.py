"""Fits on every core: a comparison's folds and heads over worker processes (joblib).

Each fit is seeded and runs with BLAS and OpenMP on one thread, so fits spread over worker
processes give the very results they give one after another; what changes is the wall time.
Workers pay a start-up (imports, the data sent once as memory maps), so small data stays in
the calling process (:data:`PARALLEL_MIN_VALUES`).

TensorFlow (the dense head) keeps its default thread count in the workers, as in the calling
process: its sums depend on it (a dense head on 4,800 x 1,280 features fitted with one
intra-op thread differs from the two-thread fit by 1e-6, relative), and the same results
matter more than the few dense folds that share a core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bottleneck_transfer.quiet import Raised, replay, run_recording, working_place
from joblib import Parallel, delayed, effective_n_jobs

#: Fits go to worker processes (one fit per core) only when the training features hold at
#: least this many values: below it, starting workers and sending them the data costs more
#: than the fits save.
PARALLEL_MIN_VALUES = 2**21


def use_workers(n_calls: int, n_jobs: int | None, n_values: int) -> bool:
    """Whether ``n_calls`` fits on data of ``n_values`` values go to worker processes."""
    return n_calls > 1 and effective_n_jobs(n_jobs) > 1 and n_values >= PARALLEL_MIN_VALUES


def run_calls(
    function: Callable[..., Any],
    calls: Iterable[tuple],
    *,
    n_jobs: int | None,
    workers: bool,
) -> Iterator[Any]:
    """``function(*call)`` for each call, in order: over ``n_jobs`` worker processes when
    ``workers``, else here; results are yielded as they arrive in call order.

    A worker's warnings come back with its result and are raised again here, under the
    place they were raised in (:func:`~bottleneck_transfer.quiet.replay`).
    """
    if not workers:
        return (function(*call) for call in calls)
    place = working_place()
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(run_recording)(place, function, *call) for call in calls
    )
    return _replayed(results)


def _replayed(results: Iterable[tuple[Any, list[Raised]]]) -> Iterator[Any]:
    for result, raised in results:
        replay(raised)
        yield result
