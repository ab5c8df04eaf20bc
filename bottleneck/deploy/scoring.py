"""Scoring a source's images with an export, batch by batch: the loop ``predict`` runs for
class exports (:mod:`.predict`) and binary, multi-label or regression ones
(:mod:`.target_predict`), each writing its own rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from bottleneck_transfer.deploy.exported import Exported
from bottleneck_transfer.errors import ExportError, ImageError
from bottleneck_transfer.features.batches import Batch, iter_batches
from bottleneck_transfer.features.sources import Source
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
    bar = tqdm(
        total=len(source),
        initial=start,
        unit="img",
        desc=f"predict {exported.path.name}",
        disable=(None if progress is None else not progress),
        dynamic_ncols=True,
    )
    try:
        batches = iter_batches(
            source,
            exported.image_size,
            exported.channels,
            batch_size,
            start=start,
            workers=workers,
            strict=strict,
            max_pixels=max_pixels,
        )
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
            f"{exported.path} cannot take these images ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        bar.close()
