"""The runtime registry's parts: a run's context, the runner protocols, lookup by name."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bottleneck_transfer.features.choices import RUNTIMES, runtime_choices
from bottleneck_transfer.features.store import RUNTIMES_FOLDER

if TYPE_CHECKING:
    import numpy as np
    from bottleneck_transfer.features.runtimes import Pass


@dataclass(frozen=True)
class RunContext:
    """Where and how a runner runs.

    ``threads``: the model's intra-op threads; ``store``: the folder keeping converted graphs
    and probe results (:data:`RUNTIMES_FOLDER` of the cache store); ``trusted``:
    ``--trust-graph`` (skip the op check of a graph); ``accelerator``: the Keras backend sees
    a GPU/TPU.
    """

    threads: int
    store: Path
    trusted: bool = False
    accelerator: bool = False


class Runner(Protocol):
    """A model run on batches of pixels (uint8 or float) -> float32 outputs."""

    name: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray | list[np.ndarray]: ...

    @property
    def provenance(self) -> dict: ...


class Runtime(Protocol):
    """A runtime module: opens a runner of a pass."""

    def open(self, job: Pass, batch_size: int, context: RunContext) -> Runner: ...


def get_runtime(name: str) -> Runtime:
    """The runtime module registered as ``name`` (not ``auto``: see :func:`open_runner`).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones.
    """
    if name not in RUNTIMES:
        raise ValueError(
            f"runtime must be one of {', '.join(runtime_choices())}. Received: runtime={name!r}"
        )
    return importlib.import_module(f"{__package__}.{RUNTIMES[name]}")  # type: ignore[return-value]


def make_context(*, trusted: bool = False, threads: int | None = None) -> RunContext:
    """The context of a run in this process: the store's runtimes folder, the model's
    ``threads`` (default :func:`model_threads`) and whether an accelerator is there."""
    from bottleneck_transfer.features.runtimes import accelerator_devices
    from bottleneck_transfer.features.store import default_cache_dir

    return RunContext(
        threads=threads or model_threads(),
        store=default_cache_dir() / RUNTIMES_FOLDER,
        trusted=trusted,
        accelerator=bool(accelerator_devices()),
    )


def model_threads() -> int:
    """The model's intra-op threads: every core of this process's CPU set.

    Decoding runs in threads a few batches ahead and sleeps once its queue is full, so the
    cores it leaves idle are the model's; ONNX Runtime's threads do not spin while waiting
    (:func:`.onnx.session_options`), so they yield the cores decoding needs.
    ``python -m bottleneck_transfer.bench.runtimes`` measures the alternative (one core
    fewer).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
