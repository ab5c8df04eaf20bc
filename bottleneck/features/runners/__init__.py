"""Runtimes: how the model of a pass runs on each batch (``--runtime``).

Each runtime is a module of this package, registered by name in
:data:`features.choices.RUNTIMES` and imported only when it runs; it has
``open(job, batch_size, context) -> Runner``:

- ``keras`` (:mod:`.keras`): the Keras model's compiled ``predict_on_batch`` (the default).
- ``onnx`` (:mod:`.onnx`): the model converted once to ONNX (cached in the store, parity
  checked), run by ONNX Runtime.

``auto`` (:mod:`.probe`) picks one of them per base and machine; a base that runs on one
runtime only (an ONNX file, :mod:`features.bases.onnx_file`, whose model says ``runtime =
"onnx"``) runs on it, any other asked for is refused. :func:`open_runner` is the
one entry the extraction loop uses. A runner takes a batch of pixels and returns the model's
float32 outputs (an array, or one per output for several layers), like
:class:`features.runtimes.BatchRunner`; its ``provenance`` says what ran (recorded in the
cache's ``extraction`` provenance). The runtime never enters a cache's fingerprint: a
runtime other than Keras runs only where its features equal Keras' (parity checked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.runners.base import (
    RUNTIMES_FOLDER,
    RunContext,
    Runner,
    Runtime,
    get_runtime,
    make_context,
    model_threads,
)

if TYPE_CHECKING:
    from bottleneck_transfer.features.runtimes import Pass

__all__ = [
    "RUNTIMES_FOLDER",
    "RunContext",
    "Runner",
    "Runtime",
    "get_runtime",
    "make_context",
    "model_threads",
    "open_runner",
]


def open_runner(job: Pass, batch_size: int, runtime: str | None, context: RunContext) -> Runner:
    """The runner of ``job``'s model on ``runtime`` (``auto``: :func:`.probe.choose`; None:
    ``keras``, or the one runtime a base runs on: ``onnx`` for an ONNX file; a text base:
    :class:`.text.TextRunner`, Keras only).

    Raises
    ------
    BaseModelError
        A runtime the base cannot run on (``keras`` for an ONNX file), in one line.
    ValueError
        ``onnx`` for a text base.
    """
    if job.runner.modality == "text":
        if runtime == "onnx":
            raise ValueError(
                "--runtime onnx does not apply to text bases (KerasHub text backbones run on "
                "Keras). Received: runtime='onnx'; use keras or auto"
            )
        from bottleneck_transfer.features.runners.text import TextRunner

        return TextRunner(job.runner.model)  # type: ignore[return-value]
    only = getattr(job.runner.model, "runtime", None)  # a graph that runs on one runtime
    if only is not None:
        if runtime not in (None, "auto", only):
            raise BaseModelError(
                f"--runtime {runtime}: the base {job.runner.name} is an ONNX graph, not a Keras "
                f"model, and runs on ONNX Runtime only; use --runtime {only} (or leave it out)"
            )
        runtime = only
    runtime = runtime or "keras"
    if runtime == "auto":
        from bottleneck_transfer.features.runners.probe import choose

        return choose(job, batch_size, context)
    return get_runtime(runtime).open(job, batch_size, context)
