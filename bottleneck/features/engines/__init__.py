"""Engines: where one pass over the images runs. The protocol and the registry.

An engine takes a :class:`features.loop.Plan` (the source, the pass, the caches it writes and
the :class:`features.options.ExtractOptions`) and writes every cache of the plan, returning
the first cache's :class:`features.loop.ExtractResult`. ``local`` runs the loop in this
process; ``dask`` and ``ray`` cut the source into shards (:mod:`.shards`), run the missing
ones as tasks with the base built once per worker, retry lost ones, report progress, and
join the shard caches into one cache equal to a local run's.

Adding an engine is one module with ``run(plan)`` and ``joblib_backend(...)`` (where head
searches run) and one entry in the registry,
:data:`features.choices.ENGINES` (a light module: the CLI and the options read the names
without importing any engine); each engine's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from bottleneck_transfer.features.choices import ENGINES

if TYPE_CHECKING:
    from bottleneck_transfer.features.loop import ExtractResult, Plan

__all__ = ["ENGINES", "Engine", "get_engine", "joblib_engine"]


class Engine(Protocol):
    """What an engine module provides."""

    def run(self, plan: Plan) -> ExtractResult:
        """Write every cache of ``plan`` (resuming what earlier runs kept); the first
        cache's result."""

    def joblib_backend(
        self, scheduler: str | None, n_workers: int | None, timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """A context under which joblib's parallel work (head tuning fits) runs on it."""


def joblib_engine(
    engine: str, scheduler: str | None, n_workers: int | None, timeout: float | None = None
) -> AbstractContextManager[None]:
    """Send joblib's parallel work (head searches) to the engine ``engine``: scikit-learn and
    the head tuner fit through joblib, so their trials run there; results equal a local
    run's."""
    return get_engine(engine).joblib_backend(scheduler, n_workers, timeout)


def get_engine(name: str) -> Engine:
    """The engine module registered as ``name``.

    Raises
    ------
    ValueError
        An unknown name, listing the registered ones.
    """
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}. Received: engine={name!r}")
    return importlib.import_module(f"{__name__}.{ENGINES[name]}")  # type: ignore[return-value]
