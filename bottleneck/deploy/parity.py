"""The export's self-check: the saved model against the head on the cached features.

Before anything is written the export reloads the saved model (safe mode) and runs it on a
sample (default 64) of the cache's own source images, decoded exactly like extraction; its
outputs must equal the head's on the cached features (arg-max equal, probabilities within
``atol``), else :class:`ExportError` names the first sample that differs.

Resizing: the ``resize`` layer makes the model take any image size, but Keras' bilinear
resize and Pillow's (used by ``bottleneck extract`` and ``predict``) are not bit-identical.
Measured on the scikit-image photos (uint8, 300-640 px) resized to 224/96/32 px: with
``antialias=True`` (used here) the two differ by at most 1 grey level (mean 0.05-0.14);
without antialiasing by a mean of 2-11 levels (up to 193 at edges). JPEGs at least twice the
target size are decoded by extraction at a reduced DCT scale (Pillow ``draft``), so against
a full decode + this layer the difference grows to a mean of 0.35 (96 px) / 0.75 (32 px)
levels, max 33. The parity check feeds Pillow-decoded images at the base size, where the
layer is the identity (bit-exact). :func:`deploy.predict.predict` also decodes with Pillow,
so its predictions are the cache pipeline's; ``model.predict`` on images of other sizes sees
the Keras resize.

A text export is run on the sampled rows' raw strings (read from the source as extraction
read them). Its tokenizer pads every text to ``max_length`` where extraction padded a length
bucket, which changes the features by float rounding only, so its scores are compared
relatively: ``max|export - head| / max|head|`` per text, within ``atol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bottleneck_transfer.deploy.exported import Exported
from bottleneck_transfer.deploy.keras_head import head_scores
from bottleneck_transfer.errors import ExportError, ImageError, SourceError
from bottleneck_transfer.features.bases import Base
from bottleneck_transfer.features.batches import decode_batch
from bottleneck_transfer.features.cache import FeatureCache

DEFAULT_SAMPLE = 64
DEFAULT_ATOL = 1e-4


@dataclass
class Parity:
    """The outcome of the export's self-check on source images."""

    n: int
    max_abs_diff: float
    argmax_agreement: float
    ids: list[str] = field(default_factory=list)
    #: ``max_abs_diff`` is relative to the head's largest score (a text export).
    relative: bool = False

    def to_dict(self) -> dict:
        """The figures as JSON-ready values (without the sample ids)."""
        return {
            "n": self.n,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            **({"relative": True} if self.relative else {}),
        }


def _sample_rows(n: int, sample: int) -> np.ndarray:
    if sample >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, sample).round().astype(int))


def _source_items(cache: FeatureCache, rows: np.ndarray) -> tuple[Any, list[int], list]:
    """The reopened source of the cache, the ``rows`` whose ids it still holds, their items."""
    from bottleneck_transfer.features.sources import reopen_source

    try:
        source = reopen_source(cache.provenance.get("source", {}))
    except SourceError as exc:
        raise ExportError(
            f"cannot reopen the source of {cache.path} to check the export ({exc}); "
            "make it reachable again, or skip the check with --sample 0"
        ) from exc
    by_id = {item.id: item for item in source.items}
    ids = cache.ids
    chosen = [int(r) for r in rows if ids[int(r)] in by_id]
    if not chosen:
        raise ExportError(
            f"none of the sampled items of {cache.path} are in its source any more; "
            "skip the check with --sample 0"
        )
    return source, chosen, [by_id[ids[row]] for row in chosen]


def _source_texts(cache: FeatureCache, rows: np.ndarray) -> tuple[list, list[str]]:
    """The source texts of cache ``rows``, read as extraction read them."""
    from bottleneck_transfer.features.text_batches import read_text

    source, chosen, items = _source_items(cache, rows)
    try:
        return chosen, [read_text(source, item) for item in items]
    except ImageError as exc:
        raise ExportError(
            f"cannot check the export on a sampled text of {cache.path}: {exc} (the source "
            "changed since extraction?); skip the check with --sample 0"
        ) from exc


def _source_pixels(cache: FeatureCache, rows: np.ndarray, base: Base) -> tuple[list, np.ndarray]:
    """Decode the source images of cache ``rows`` exactly as extraction did (a text base:
    read its texts, :func:`_source_texts`)."""
    if base.encoder is not None:
        return _source_texts(cache, rows)
    source, chosen, items = _source_items(cache, rows)
    batch = decode_batch(source, items, base.image_size, base.channels)
    if batch.failures:
        item_id, reason = batch.failures[0]
        raise ExportError(
            f"cannot check the export on sample {item_id}: {reason} (the source changed "
            "since extraction?); skip the check with --sample 0"
        )
    return chosen, batch.pixels


def check_parity(
    exported: Exported,
    head: Any,
    cache: FeatureCache,
    base: Base,
    *,
    sample: int = DEFAULT_SAMPLE,
    atol: float = DEFAULT_ATOL,
    batch_size: int = 32,
) -> Parity:
    """Run the export on source images (texts) and compare with ``head(cached features)``.

    Raises
    ------
    ExportError
        Naming the first sample whose arg-max differs (beyond a tie within ``atol``) or
        whose scores differ by more than ``atol``.
    """
    rows, pixels = _source_pixels(cache, _sample_rows(len(cache), sample), base)
    ids = cache.ids
    expected = head_scores(head, cache.features[rows])
    got = np.concatenate(
        [exported.predict(pixels[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    ).astype(np.float64)
    if got.shape != expected.shape:
        raise ExportError(
            f"the export outputs {got.shape[1:]} scores, the head {expected.shape[1:]}"
        )
    diff = np.abs(got - expected).max(axis=1)
    relative = base.encoder is not None  # a text export (see module)
    if relative:
        diff = diff / np.maximum(np.abs(expected).max(axis=1), np.finfo(np.float64).tiny)
    top = np.sort(expected, axis=1)
    gap = top[:, -1] - top[:, -2] if expected.shape[1] > 1 else np.ones(len(rows))
    argmax_bad = (got.argmax(1) != expected.argmax(1)) & (gap > atol)
    bad = np.flatnonzero((diff > atol) | argmax_bad)
    if bad.size:
        k = int(bad[0])
        raise ExportError(
            f"parity check failed on sample {ids[rows[k]]} (cache row {rows[k]}): the export "
            f"gives class {got[k].argmax()} with scores {np.round(got[k], 6).tolist()}, the "
            f"head on the cached features gives class {expected[k].argmax()} with "
            f"{np.round(expected[k], 6).tolist()} (max {'relative ' * relative}difference "
            f"{diff[k]:.2e} > atol {atol}); "
            f"{bad.size} of {len(rows)} samples differ"
        )
    return Parity(
        n=len(rows),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        argmax_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))) if len(rows) else 1.0,
        ids=[ids[r] for r in rows],
        relative=relative,
    )


#: Cached images (not used for calibration) a quantized export is measured on, at least.
QUANTIZED_SAMPLE = 1000


@dataclass
class Quantized:
    """What quantization changed: top-1 accuracy on cached images the calibration did not
    use (the head fitted on the whole cache, so both accuracies are on its training rows)."""

    quantize: str
    calibration: int
    n: int
    accuracy: float
    float_accuracy: float
    agreement: float
    max_abs_diff: float

    @property
    def change(self) -> float:
        """Accuracy of the quantized export minus the head's (float32)."""
        return self.accuracy - self.float_accuracy

    def to_dict(self) -> dict:
        """The figures as JSON-ready values."""
        return {
            "quantize": self.quantize,
            "calibration_images": self.calibration,
            "n": self.n,
            "accuracy": self.accuracy,
            "float_accuracy": self.float_accuracy,
            "accuracy_change": self.change,
            "top1_agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
        }


def calibration_pixels(cache: FeatureCache, base: Base, count: int) -> np.ndarray:
    """uint8 source images of ``count`` cache rows spread over the cache, decoded as
    extraction did: what int8 quantization calibrates on."""
    return _source_pixels(cache, _sample_rows(len(cache), count), base)[1]


def check_quantized(
    exported: Exported,
    head: Any,
    cache: FeatureCache,
    base: Base,
    *,
    quantize: str,
    calibration: int,
    sample: int = QUANTIZED_SAMPLE,
    batch_size: int = 32,
) -> Quantized:
    """Accuracy of the quantized export and of the head on labelled cache rows outside the
    ``calibration`` rows of :func:`calibration_pixels` (up to ``sample`` of them)."""
    used = set(_sample_rows(len(cache), calibration).tolist()) if calibration else set()
    labels = cache.labels
    rest = np.array([r for r in range(len(cache)) if r not in used and labels[r] >= 0], int)
    if not rest.size:
        raise ExportError(
            f"{cache.path} has no labelled rows besides the calibration images to measure the "
            "quantized export on; skip the check with --sample 0"
        )
    rows, pixels = _source_pixels(cache, rest[_sample_rows(len(rest), sample)], base)
    expected = head_scores(head, cache.features[rows])
    got = np.concatenate(
        [exported.predict(pixels[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    )
    classes = np.asarray(head.classes_)
    truth = labels[rows]
    return Quantized(
        quantize=quantize,
        calibration=calibration,
        n=len(rows),
        accuracy=float(np.mean(classes[got.argmax(1)] == truth)),
        float_accuracy=float(np.mean(classes[expected.argmax(1)] == truth)),
        agreement=float(np.mean(got.argmax(1) == expected.argmax(1))),
        max_abs_diff=float(np.abs(got - expected).max()),
    )
