"""What a converted export takes and gives: its options, input scaling and output names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bottleneck_transfer.errors import ExportError

#: The outputs of the SavedModel and ONNX forms, by name: scores, class name, column index.
OUTPUT_NAMES = ("probabilities", "label", "label_index")
#: Their one output for a binary or multi-label target (each tag's probability: the
#: thresholds in the metadata decide) and a regression target (the value).
TARGET_OUTPUT_NAMES = {
    "binary": ("probabilities",),
    "multilabel": ("probabilities",),
    "regression": ("values",),
}
#: What the uint8 input holds: no scaling outside the model (its preprocessing is inside).
PIXELS = {
    "dtype": "uint8",
    "layout": "NHWC",
    "range": [0, 255],
    "normalization": {"mean": 0.0, "std": 1.0},
    "scaling": "none: raw 0-255 pixel values; the base's own preprocessing is in the model",
}


@dataclass(frozen=True)
class ExportSettings:
    """Options of a converted form (``Converter.settings`` says which one takes which)."""

    #: The TFLite input's fixed batch size.
    batch: int = 1
    #: TFLite quantization: ``None``, ``"dynamic"``, ``"float16"`` or ``"int8"``.
    quantize: str | None = None
    #: uint8 training images ``(N, H, W, C)`` that calibrate ``quantize="int8"``.
    calibration: np.ndarray | None = None

    def given(self) -> list[str]:
        """The options set away from their defaults, as their CLI names."""
        given = {"batch": self.batch != 1, "quantize": self.quantize is not None}
        return [f"--{name}" for name, differs in given.items() if differs]


#: ``--quantize`` choices (TFLite): weights to int8, weights to float16, or weights and
#: activations to int8 calibrated on training images.
QUANTIZE = ("dynamic", "float16", "int8")


def check_settings(settings: ExportSettings, form: str, takes: tuple[str, ...] = ()) -> None:
    """Raise one line when ``settings`` is invalid or sets an option ``form`` does not take."""
    if settings.quantize is not None and settings.quantize not in QUANTIZE:
        raise ExportError(
            f"unknown --quantize {settings.quantize!r}; choose one of {', '.join(QUANTIZE)}"
        )
    if settings.batch < 1:
        raise ExportError(f"--batch must be 1 or more, not {settings.batch}")
    refused = [name for name in settings.given() if name[2:] not in takes]
    if refused:
        verb, them = ("apply", "them") if len(refused) > 1 else ("applies", "it")
        raise ExportError(
            f"{' and '.join(refused)} {verb} to --format tflite only, not {form}: leave {them} "
            "out or export a .tflite file"
        )
