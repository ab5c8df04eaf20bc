"""The runner of a text base: each window's calls (:class:`features.text_batches.TokenWindow`)
through the Keras model, rows put back in source order. Keras only: a text base's graph
holds its backbone's KerasHub layers, which the ONNX conversion does not take."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    from bottleneck_transfer.features.text_batches import TokenWindow


class TextRunner:
    """Runs a text model on a window's calls; returns ``(n, D)`` float32 in window order."""

    name = "keras"

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def __call__(self, window: TokenWindow) -> np.ndarray:
        import keras

        out = np.zeros((len(window), int(self.model.output_shape[-1])), np.float32)
        for rows, inputs in window.calls:
            features = self.model.predict_on_batch(inputs)
            out[rows] = np.asarray(keras.ops.convert_to_numpy(features), np.float32)
        return out

    @property
    def provenance(self) -> dict:
        import keras

        return {"name": self.name, "keras": keras.__version__, "backend": keras.backend.backend()}
