"""The local engine: the loop in this process (:func:`features.loop.run_local`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bottleneck_transfer.features.loop import ExtractResult, Plan, run_local


def run(plan: Plan) -> ExtractResult:
    """Write every cache of ``plan`` in one pass in this process; the first cache's result."""
    return run_local(plan)


@contextlib.contextmanager
def joblib_backend(
    scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> Iterator[None]:
    """joblib's own backend: head searches run in this process."""
    yield
