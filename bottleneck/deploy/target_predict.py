"""Predictions of a binary, multi-label or regression export (:mod:`.target_export`).

The columns, after ``id``:

* binary: ``prob_<positive>`` and ``predicted`` (the positive or negative value, at the
  export's threshold);
* multi-label: ``prob_<tag>`` for each tag and ``predicted`` (the tags at or above their
  thresholds, ``|``-joined);
* regression: the value, named as in the cache (``brightness``).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.deploy.exported import Exported
from bottleneck_transfer.deploy.scoring import scored_batches
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import ExportError
from bottleneck_transfer.features.sources import Source
from bottleneck_transfer.features.targets import TAG_SEPARATOR, Target


@dataclass(repr=False)
class TargetPredictions(Display):
    """Each image's outputs (N, K) and decisions, in source order (failed images left out)."""

    ids: list[str]
    target: Target
    columns: list[str]
    values: np.ndarray
    predicted: list[str] | None
    failed: list[tuple[str, str]] = field(default_factory=list)
    out: Path | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def accuracy(self) -> None:
        """None: a target export's predictions have no class accuracy."""
        return None

    @property
    def images_per_second(self) -> float:
        """Images scored per second."""
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0

    def _display_summary(self) -> dict[str, Any]:
        return {
            "images": len(self),
            "target": self.target.describe(),
            "failed": len(self.failed),
            "out": None if self.out is None else str(self.out),
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        return self.records()

    def records(self) -> list[dict[str, Any]]:
        """One dict per image: ``id``, each column's value, ``predicted``."""
        rows = []
        for row, item_id in enumerate(self.ids):
            record: dict[str, Any] = {"id": item_id}
            record |= {
                c: round(float(v), 6) for c, v in zip(self.columns, self.values[row], strict=True)
            }
            if self.predicted is not None:
                record["predicted"] = self.predicted[row]
            rows.append(record)
        return rows


def _columns(target: Target) -> list[str]:
    if target.kind == "regression":
        return [target.value_name or "value"]
    return [f"prob_{name}" for name in target.outputs]


def _decisions(values: np.ndarray, target: Target, thresholds: dict | None) -> list[str] | None:
    """Each image's decided value (binary) or tags (multi-label) at the export's thresholds."""
    if target.kind == "regression":
        return None
    cut = np.asarray([(thresholds or {}).get(name, 0.5) for name in target.outputs])
    above = values >= cut[None, :]
    if target.kind == "binary":
        return [target.names[1] if a else target.names[0] for a in above[:, 0]]
    names = target.outputs
    return [TAG_SEPARATOR.join(n for n, a in zip(names, row, strict=True) if a) for row in above]


def predict_targets(
    exported: Exported,
    source: Source,
    *,
    out: Path | None,
    fmt: str,
    batch_size: int,
    workers: int | None,
    strict: bool,
    max_pixels: int,
    progress: bool | None = None,
) -> TargetPredictions:
    """Run a target export on every image of ``source`` (the class predictions' loop,
    :func:`~.scoring.scored_batches`); write CSV or JSON to ``out``."""
    if fmt not in ("csv", "json"):
        raise ExportError(f"{exported.path} predicts CSV or JSON files. Received: fmt={fmt!r}")
    target = Target.from_dict(exported.metadata["target"])
    started = time.perf_counter()
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    scored = scored_batches(
        exported,
        source,
        batch_size,
        workers=workers,
        strict=strict,
        max_pixels=max_pixels,
        progress=progress,
    )
    for batch, scores in scored:
        if len(batch.items):
            blocks.append(scores)
            ids += [item.id for item in batch.items]
        failed += batch.failures
    values = np.concatenate(blocks) if blocks else np.zeros((0, len(target.outputs)))
    result = TargetPredictions(
        ids,
        target,
        _columns(target),
        values,
        _decisions(values, target, exported.metadata.get("thresholds")),
        failed,
        out,
        time.perf_counter() - started,
    )
    if out is not None:
        _write(result, out, fmt)
    return result


def _write(result: TargetPredictions, out: Path, fmt: str) -> None:
    """The predictions as CSV or JSON in ``out``; the file appears whole."""
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        dump_target_predictions(result, handle, fmt)


def dump_target_predictions(result: TargetPredictions, handle: TextIO, fmt: str) -> None:
    """The predictions as CSV (one row per image) or JSON, to an open text handle."""
    if fmt == "json":
        payload = {
            "target": result.target.to_dict(),
            "predictions": result.records(),
            "failed": [{"id": i, "reason": r} for i, r in result.failed],
        }
        json.dump(payload, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
        return
    writer = csv.writer(handle, lineterminator="\n")
    decided = result.predicted is not None
    writer.writerow(["id", *result.columns, *(["predicted"] if decided else [])])
    for row, record in enumerate(result.ids):
        cells = [f"{float(v):.6f}" for v in result.values[row]]
        writer.writerow([record, *cells, *([result.predicted[row]] if decided else [])])
