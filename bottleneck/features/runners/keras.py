"""The ``keras`` runtime: the model's compiled ``predict_on_batch`` on fixed-size batches
(:class:`features.runtimes.BatchRunner`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bottleneck_transfer.features.runtimes import BatchRunner

if TYPE_CHECKING:
    from bottleneck_transfer.features.runners.base import RunContext
    from bottleneck_transfer.features.runtimes import Pass


class KerasRunner(BatchRunner):
    """:class:`BatchRunner` with the runtime's name and provenance."""

    name = "keras"

    @property
    def provenance(self) -> dict:
        import keras

        return {"name": self.name, "keras": keras.__version__, "backend": keras.backend.backend()}


def open(job: Pass, batch_size: int, context: RunContext) -> KerasRunner:
    """The Keras runner of ``job``'s model (threads: the backend's own)."""
    return KerasRunner(job.runner.model, batch_size)
