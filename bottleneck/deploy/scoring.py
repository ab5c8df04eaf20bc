"""Scoring a source's images with an export, batch by batch: the loop ``predict`` runs for
class exports (:mod:`.predict`) and binary, multi-label or regression ones
(:mod:`.target_predict`), each writing its own rows. A text export's batches are raw
strings (:func:`features.text_batches.iter_string_batches`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from bottleneck_transfer.deploy.exported import Exported
from bottleneck_transfer.errors import ExportError, ImageError
from bottleneck_transfer.features.batches import Batch, iter_batches
from bottleneck_transfer.features.sources import Source
from bottleneck_transfer.features.text_batches import iter_string_batches
from tqdm.auto import tqdm


def scored_batches(
    exported: Exported,
    source: Source,
    batch_size: int,
    *,
    workers: int | None,
    strict: bool,
    max_pixels: int,
    progress: bool | None,
    start: int = 0,
) -> Iterator[tuple[Batch, np.ndarray]]:
    """Each decoded batch of ``source`` (from item ``start``) with the export's scores
    ``(N, K)`` of its images, under a progress bar; bad images are in each batch's
    ``failures`` (``strict``: the first one raises :class:`ImageError`).

    Raises
    ------
    ExportError
        The export cannot take these images (its runtime's error in one line).
    """
    score = exported.scorer(batch_size)
    failed = 0
    unit = f"{exported.modality}s"
    bar = tqdm(
        total=len(source),
        initial=start,
        unit="img" if unit == "images" else "text",
        desc=f"predict {exported.path.name}",
        disable=(None if progress is None else not progress),
        dynamic_ncols=True,
    )
    try:
        batches = _batches(exported, source, batch_size, start, workers, strict, max_pixels)
        with contextlib.closing(batches):
            for batch in batches:
                scores = np.asarray(score(batch.pixels), np.float64) if len(batch.items) else None
                yield batch, scores
                bar.update(len(batch.items) + len(batch.failures))
                failed += len(batch.failures)
                if batch.failures:
                    bar.set_postfix(failed=failed)
    except ImageError:
        raise
    except (ValueError, TypeError) as exc:
        raise ExportError(
            f"{exported.path} cannot take these {unit} ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        bar.close()


def _batches(
    exported: Exported,
    source: Source,
    batch_size: int,
    start: int,
    workers: int | None,
    strict: bool,
    max_pixels: int,
) -> Iterator[Batch]:
    """The source's batches from ``start``: images decoded at the export's size, or raw
    strings for a text export."""
    if exported.modality == "text":
        return iter_string_batches(source, batch_size, start=start, strict=strict)
    return iter_batches(
        source,
        exported.image_size,
        exported.channels,
        batch_size,
        start=start,
        workers=workers,
        strict=strict,
        max_pixels=max_pixels,
    )
