"""Run an export (``.keras``, folder or converted) over an image collection: top-k classes.

A text export (raw strings in) runs over texts instead: a ``.txt`` file (one text a line,
ids ``NAME:LINE``), a CSV / JSON-lines / Parquet table's text column (``text_column``,
default ``text``) or a folder of ``.txt`` files, read as extraction reads texts (a text that
is not UTF-8 or is empty is reported and skipped), in batches of raw strings.

Images are read like extraction reads them: any source :func:`features.sources.open_source`
understands (class-folder tree, flat folder, CSV manifest, IDX/NPZ arrays,
``fashion-mnist:test``) or a list of image files; decoded and batched by extraction's own
pipeline (:mod:`features.batches`: a thread pool a few batches ahead of the model, one
fixed-size compiled call per batch, uint8 cast to float inside the graph) through the model
minus its resize layer, which is the identity at the base size (:attr:`Exported.sized_model`);
a SavedModel, TFLite or ONNX export runs with its own runtime (:meth:`Exported.scorer`).
Bad images are reported and skipped (``strict=True`` stops at the first one).

Output (CSV, Parquet, or JSON with ``fmt="json"``), one row per decoded image in source
order::

    id,label,class_1,probability_1,...,class_k,probability_k

``id`` is the path relative to the source root (or ``array:<index>``), ``label`` the true
class name when the source is labelled (empty otherwise), then the ``k`` most probable classes,
best first. The values are probabilities only where the export's head has them (a
probabilistic or calibrated head: metadata ``outputs="probabilities"``); an uncalibrated
margin head (``linear-svm:calibrate=false``) outputs a softmax of its decision values, which
are named scores: ``class_1,score_1,...`` (JSON: ``"score"``), never ``probability``.

A ``.csv`` or ``.parquet`` output is written as the images go (:mod:`.prediction_files`):
memory holds a chunk of rows, never all results, and a rerun after a killed run goes on
where it stopped. The :class:`PredictResult` then holds the counts only.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.deploy.exported import Exported, load_exported
from bottleneck_transfer.deploy.prediction_files import PredictionWriter, streamed_format
from bottleneck_transfer.deploy.scoring import scored_batches
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS
from bottleneck_transfer.features.runtimes import default_batch_size
from bottleneck_transfer.features.sources import Item, Source, open_source
from bottleneck_transfer.features.sources.memory import open_text_lines
from bottleneck_transfer.features.sources.text import TEXT_SUFFIX
from bottleneck_transfer.features.text_batches import default_text_batch
from bottleneck_transfer.fingerprint import fingerprint

if TYPE_CHECKING:
    from bottleneck_transfer.deploy.target_predict import TargetPredictions

FORMATS = ("csv", "json", "parquet")


@dataclass(repr=False)
class PredictResult(Display):
    """Predictions of :func:`predict`, in source order (failed images left out)."""

    ids: list[str]
    classes: list[str]
    top_indices: np.ndarray
    top_probabilities: np.ndarray
    labels: list[str | None]
    failed: list[tuple[str, str]] = field(default_factory=list)
    outputs: str = "probabilities"
    out: Path | None = None
    seconds: float = 0.0
    images_per_second: float = 0.0
    tally: dict[str, int] | None = None
    #: What the items are: ``"images"``, or ``"texts"`` (a text export's).
    unit: str = "images"

    def __len__(self) -> int:
        return len(self.ids) if self.tally is None else self.tally["images"]

    def _display_summary(self) -> dict[str, Any]:
        return {
            self.unit: len(self),
            "accuracy": self.accuracy,
            "failed": len(self.failed),
            "outputs": self.outputs,
            "out": None if self.out is None else str(self.out),
            f"{self.unit}_per_second": self.images_per_second,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per image: id, label, then ``class_i`` and its value for each of the top k."""
        value = self.value_name
        rows = []
        for record in self.records():
            row = {"id": record["id"], "label": record["label"]}
            for rank, top in enumerate(record["top_k"], start=1):
                row |= {f"class_{rank}": top["class"], f"{value}_{rank}": top[value]}
            rows.append(row)
        return rows

    def _display_plot(self, ax: Any) -> None:
        """Images per predicted class."""
        predicted = self.predicted
        names = sorted(set(predicted), key=self.classes.index)
        ax.barh(names, [predicted.count(name) for name in names], color="#4878a8")
        ax.invert_yaxis()
        ax.set_xlabel(f"{self.unit} predicted")

    @property
    def value_name(self) -> str:
        """What the values are: ``"probability"``, or ``"score"`` for an uncalibrated
        head's softmax of decision values (the export's ``outputs``)."""
        return "probability" if self.outputs == "probabilities" else "score"

    @property
    def predicted(self) -> list[str]:
        """Top-1 class name of each image."""
        return [self.classes[i] for i in self.top_indices[:, 0]]

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy on the labelled images, else None (a class the model does not
        know counts as an error). Written as it went (``tally``): of this run's images."""
        if self.tally is not None:
            labelled = self.tally["labelled"]
            return self.tally["correct"] / labelled if labelled else None
        pairs = [(p, t) for p, t in zip(self.predicted, self.labels, strict=True) if t]
        if not pairs:
            return None
        return float(np.mean([p == t for p, t in pairs]))

    def records(self) -> list[dict]:
        """One dict per image: id, label and the top-k classes with their
        :attr:`value_name` values."""
        return [
            {
                "id": item_id,
                "label": label,
                "top_k": [
                    {"class": self.classes[int(c)], self.value_name: round(float(p), 6)}
                    for c, p in zip(self.top_indices[row], self.top_probabilities[row], strict=True)
                ],
            }
            for row, (item_id, label) in enumerate(zip(self.ids, self.labels, strict=True))
        ]


def files_source(paths: list[str | Path]) -> Source:
    """A source of explicit image files (ids are the paths as given)."""
    items = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            raise SourceError(
                f"{path} is a folder: give one folder (or manifest) as the only IMAGES argument, "
                "or image files"
            )
        items.append(Item(str(text), -1, path))
    if not items:
        raise SourceError("no images given")
    root = os.path.commonpath([str(Path(p).expanduser().resolve().parent) for p in paths])
    return Source("files", root, [], items, {"spec": [str(p) for p in paths]})


def open_images(
    images: str | Path | list | Source,
    *,
    classes: str | None = None,
    limit: int | None = None,
    text_column: str | None = None,
) -> Source:
    """A source for ``images``: one folder / manifest / IDX / NPZ / spec, or image files; or
    texts: one ``.txt`` file (a text a line), text table or folder of ``.txt`` files."""
    if isinstance(images, Source):
        return images
    if isinstance(images, (str, Path)):
        images = [images]
    images = list(images)
    if len(images) > 1 and any(str(p).lower().endswith(TEXT_SUFFIX) for p in images):
        raise SourceError(
            f"{len(images)} inputs given with a .txt file: give one .txt file (one text a "
            "line), one text table or one folder of .txt files"
        )
    if len(images) == 1 and _lines_file(images[0]):
        if classes is not None:
            raise SourceError(f"--classes applies to a labelled source, not to {images[0]}")
        return open_text_lines(images[0], limit=limit)
    if len(images) == 1 and not str(images[0]).lower().endswith(IMAGE_EXTENSIONS):
        return open_source(images[0], classes=classes, limit=limit, text_column=text_column)
    if classes is not None:
        raise SourceError("--classes applies to a labelled source, not to a list of files")
    source = files_source(images)
    if limit is not None and limit < len(source.items):
        source.items = source.items[:limit]
    return source


def _lines_file(spec: str | Path) -> bool:
    """Whether ``spec`` is one local ``.txt`` file: texts, one a line."""
    path = Path(spec).expanduser()
    return path.suffix.lower() == TEXT_SUFFIX and path.is_file()


def _check_modality(exported: Exported, source: Source, given: Any) -> None:
    """One line when the export takes texts and the source holds images, or the reverse."""
    if not source.items or source.modality == exported.modality:
        return
    if exported.modality == "text":
        raise SourceError(
            f"{exported.path} takes raw strings (a text base), and {given} holds images: give "
            "a .txt file (one text a line), a text table (--text-column) or a folder of .txt files"
        )
    raise SourceError(
        f"{exported.path} takes images, and {given} holds texts: predict them with a text "
        "base's export"
    )


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def predict(
    model: str | Path | Exported,
    images: str | Path | list | Source,
    *,
    out: str | Path | None = None,
    top_k: int = 3,
    fmt: str | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    classes: str | None = None,
    limit: int | None = None,
    progress: bool | None = None,
    trust_graph: bool = False,
    text_column: str | None = None,
) -> PredictResult:
    """Predict the top-k classes of every image (a text export: every text) with an export.

    Parameters
    ----------
    model : str, Path or Exported
        An export (:func:`deploy.export.export`): a ``.keras``, ``.tflite`` or ``.onnx``
        file, an export folder or a SavedModel export folder.
    images : str, Path, list or Source
        A folder, CSV manifest, IDX/NPZ file or ``fashion-mnist:test``; or image files. For a
        text export: a ``.txt`` file (one text a line), a text table or a folder of ``.txt``.
    out : str or Path, optional
        Write the predictions here: CSV, Parquet (``.parquet``) or JSON (``fmt="json"`` or
        ``.json``), complete or not at all; CSV and Parquet as the images go (see the module).
    top_k : int
        Classes per image (capped at the number of classes).
    batch_size, workers
        Images per model call (default as in ``extract``: by device and input size);
        decoding threads (default: all cores).
    strict : bool
        Stop at the first bad image instead of skipping it.
    classes, limit, text_column
        Class subset and evenly spread sample of a labelled source (as in ``extract``); a
        text table's column of texts (default ``text``).
    progress, trust_graph : bool
        Show a progress bar (default: only on a terminal); run a converted export whose
        graph holds ops off the allow-list (:func:`deploy.exported.load_exported`).

    Raises
    ------
    GraphError, MissingDependencyError
        A converted export with an op off the allow-list (without ``trust_graph``), or
        whose runtime is not installed.
    ExportError, SourceError, ImageError
        The model is not a bottleneck export, the images cannot be read (naming them), or
        (``strict``) the first bad image.

    Examples
    --------
    >>> result = predict("model.keras", "new_images/", top_k=3)
    >>> list(zip(result.ids, result.predicted))[:1]
    [('a.jpg', 'Sandal')]
    >>> predict("model.keras", "new_images/", out="predictions.csv")  # doctest: +SKIP
    """
    _check_counts(top_k, batch_size)
    out, fmt = _output(out, fmt)
    source = open_images(images, classes=classes, limit=limit, text_column=text_column)
    exported = (  # after the source: a bad path fails before loading
        model if isinstance(model, Exported) else load_exported(model, trust_graph=trust_graph)
    )
    _check_modality(exported, source, images)
    scoring = _Scoring(
        exported=exported,
        source=source,
        batch_size=_batch_size(batch_size, exported, source),
        workers=workers,
        strict=strict,
        max_pixels=max_pixels,
        progress=progress,
    )
    if exported.metadata.get("target"):  # a binary, multi-label or regression export
        return _predict_targets(scoring, out, fmt)  # type: ignore[return-value]
    return _predict_classes(scoring, min(top_k, len(exported.class_names)), out, fmt)


@dataclass(frozen=True)
class _Scoring:
    """What one :func:`predict` run scores (an export on a source) and how it reads it."""

    exported: Exported
    source: Source
    batch_size: int
    workers: int | None
    strict: bool
    max_pixels: int
    progress: bool | None


def _check_counts(top_k: int, batch_size: int | None) -> None:
    """Refuse a ``top_k`` or given ``batch_size`` under 1."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1. Received: top_k={top_k}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")


def _output(out: str | Path | None, fmt: str | None) -> tuple[Path | None, str]:
    """Where the predictions go (None: printed) and their format: ``fmt``, else the one
    ``out``'s suffix names, else CSV."""
    out = Path(out) if out is not None else None
    suffix = "" if out is None else out.suffix.lower()
    fmt = fmt or {".json": "json", ".parquet": "parquet"}.get(suffix, "csv")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}. Received: fmt={fmt!r}")
    if fmt == "parquet" and suffix != ".parquet":
        raise ValueError(f"Parquet predictions go to a .parquet file. Received: out={out}")
    return out, fmt


def _batch_size(given: int | None, exported: Exported, source: Source) -> int:
    """Items per model call: ``given``, else as extraction sizes them (texts: by the token
    budget; images: by device and input size)."""
    if exported.modality == "text":
        given = given or default_text_batch(False, len(source))
    return given or default_batch_size(exported.image_size, len(source))


def _predict_targets(scoring: _Scoring, out: Path | None, fmt: str) -> TargetPredictions:
    """A binary, multi-label or regression export's predictions (:mod:`.target_predict`)."""
    from bottleneck_transfer.deploy.target_predict import predict_targets

    return predict_targets(
        scoring.exported,
        scoring.source,
        out=out,
        fmt=fmt,
        batch_size=scoring.batch_size,
        workers=scoring.workers,
        strict=scoring.strict,
        max_pixels=scoring.max_pixels,
        progress=scoring.progress,
    )


def _predict_classes(scoring: _Scoring, k: int, out: Path | None, fmt: str) -> PredictResult:
    """The top ``k`` classes of every item, written to ``out`` as they go (a CSV or Parquet
    file: resumed after a killed run) or once all are scored."""
    writer = _writer(scoring, k, out, fmt)
    result = _run(scoring, k, writer)
    if writer is not None:
        writer.finish(len(scoring.source))
    elif out is not None:
        write_predictions(result, out, fmt)
    result.out = out
    return result


def _writer(scoring: _Scoring, k: int, out: Path | None, fmt: str) -> PredictionWriter | None:
    """The file the predictions stream into as they come, or None (printed, or JSON)."""
    if out is None or streamed_format(out) != fmt:
        return None
    exported, source = scoring.exported, scoring.source
    value = "probability" if _outputs(exported) == "probabilities" else "score"
    key = {  # what a resumed run must share with the killed one
        "model": str(Path(exported.path).resolve()),
        "export": fingerprint(exported.metadata),
        "images": source.root,
        "items": len(source),
        "first": source.items[0].id if source.items else None,
        "top_k": k,
    }
    return PredictionWriter(out, prediction_header(value, k), key)


def _outputs(exported: Exported) -> str:
    """``"probabilities"`` or ``"scores"``: what the export's values are."""
    return exported.metadata.get("outputs", "probabilities")


def prediction_header(value_name: str, k: int) -> list[str]:
    """The columns: ``id, label, class_1, <value_name>_1, ..., class_k, <value_name>_k``."""
    return ["id", "label", *(f"{c}_{r}" for r in range(1, k + 1) for c in ("class", value_name))]


def _run(scoring: _Scoring, k: int, writer: PredictionWriter | None = None) -> PredictResult:
    """Score every image; rows go to ``writer`` as they come (only counts are kept, and
    the images it already holds are skipped) or are kept in the result."""
    exported, source = scoring.exported, scoring.source
    start = 0 if writer is None else writer.items_done
    unit = f"{exported.modality}s"
    tally = {"images": 0, "labelled": 0, "correct": 0}
    ids: list[str] = []
    labels: list[str | None] = []
    tops: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    scored = scored_batches(
        exported,
        source,
        scoring.batch_size,
        workers=scoring.workers,
        strict=scoring.strict,
        max_pixels=scoring.max_pixels,
        progress=scoring.progress,
        start=start,
    )
    for batch, scores in scored:
        if len(batch.items):
            top, top_p = _top_k(scores, k)
            names = [
                source.class_names[item.label] if item.label >= 0 else None for item in batch.items
            ]
            if writer is None:
                tops.append(top)
                probs.append(top_p)
                ids += [item.id for item in batch.items]
                labels += names
            else:
                _tally(tally, names, top[:, 0], exported.class_names)
                writer.add(_rows(batch.items, names, top, top_p, exported, writer.fmt), batch.end)
        failed += batch.failures
    seconds = time.perf_counter() - started
    return PredictResult(
        ids=ids,
        classes=exported.class_names,
        top_indices=np.concatenate(tops) if tops else np.zeros((0, k), np.int64),
        top_probabilities=np.concatenate(probs) if probs else np.zeros((0, k)),
        labels=labels,
        failed=failed,
        outputs=_outputs(exported),
        seconds=seconds,
        images_per_second=(len(source) - start) / seconds if seconds > 0 else 0.0,
        tally=None if writer is None else tally,
        unit=unit,
    )


def _tally(tally: dict[str, int], labels: list, top1: np.ndarray, classes: list[str]) -> None:
    """Count a batch's images, labelled images and right top-1 classes into ``tally``."""
    tally["images"] += len(labels)
    for label, predicted in zip(labels, top1, strict=True):
        if label:
            tally["labelled"] += 1
            tally["correct"] += label == classes[int(predicted)]


def _rows(
    items: list[Item],
    labels: list,
    top: np.ndarray,
    top_p: np.ndarray,
    exported: Exported,
    fmt: str,
) -> list[list]:
    """A batch's output rows: CSV cells as :func:`dump_predictions` writes them, Parquet
    values as they are (a missing label is null)."""
    rows = []
    for row, item in enumerate(items):
        line = [item.id, labels[row] or ("" if fmt == "csv" else None)]
        for c, p in zip(top[row], top_p[row], strict=True):
            line += [exported.class_names[int(c)], f"{float(p):.6f}" if fmt == "csv" else float(p)]
        rows.append(line)
    return rows


def dump_predictions(result: PredictResult, handle: TextIO, fmt: str = "csv") -> None:
    """Write ``result`` to an open text handle as CSV or JSON."""
    if not isinstance(result, PredictResult):  # a target export's predictions
        from bottleneck_transfer.deploy.target_predict import dump_target_predictions

        dump_target_predictions(result, handle, fmt)
        return
    if fmt == "json":
        json.dump(
            {
                "classes": result.classes,
                "predictions": result.records(),
                "failed": [{"id": i, "reason": r} for i, r in result.failed],
            },
            handle,
            indent=1,
            ensure_ascii=False,
        )
        handle.write("\n")
        return
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(prediction_header(result.value_name, result.top_indices.shape[1]))
    for row, item_id in enumerate(result.ids):
        line = [item_id, result.labels[row] or ""]
        for c, p in zip(result.top_indices[row], result.top_probabilities[row], strict=True):
            line += [result.classes[int(c)], f"{float(p):.6f}"]
        writer.writerow(line)


def write_predictions(result: PredictResult, out: str | Path, fmt: str = "csv") -> Path:
    """Write ``result`` as CSV or JSON; the file appears whole or not at all."""
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        dump_predictions(result, handle, fmt)
    return out
