"""Rendering comparisons: terminal and Markdown tables, and the report folder.

:func:`write_report` writes ``report.json``, ``report.md`` (tables: heads, the winner's
per-class precision/recall/F1, caches), ``accuracy.png`` (accuracy per head with its
interval, values on the bars, on a full 0-1 axis), ``confusion.png`` (the winner's confusion
matrix: colour and percentage are the share of the true class, with counts),
``reliability.png`` (each head's reliability diagram: accuracy against top-class confidence in
the equal-width bins of :mod:`~bottleneck_transfer.heads.calibration`),
``per_class.png`` (the winner's accuracy on each class, with intervals), ``map.png`` (a 2-D
map of the scored rows, :mod:`~bottleneck_transfer.heads.cache_map`, when the scored cache
reopens), ``misclassified.csv`` (``id,true,predicted`` of the winner's errors, with the cache
ids), ``misclassified.png`` (thumbnails of those images, reopened from the cache's source,
when it can be reopened) and ``report.html``: all of it on one self-contained page
(:mod:`~bottleneck_transfer.heads.htmlpage`) with the settings and provenance, and the
learning curve when one is given. Figures use Matplotlib's object-oriented API with the Agg
canvas, so no display is needed.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text, make_folder
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.batches import decode_batch
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.sources import reopen_source
from bottleneck_transfer.heads import cache_map, htmlpage
from bottleneck_transfer.heads.calibration import N_BINS
from bottleneck_transfer.heads.compare import Comparison, Row
from bottleneck_transfer.heads.figures import new_figure
from bottleneck_transfer.heads.learning_curve import LearningCurve, curve_rows, write_curve_report
from bottleneck_transfer.heads.metrics import per_class_scores
from bottleneck_transfer.heads.stats import (
    CV_INTERVALS,
    CV_TEST,
    HOLDOUT_INTERVALS,
    HOLDOUT_TEST,
    clopper_pearson,
)
from bottleneck_transfer.heads.training import NOT_CONVERGED, Evaluation
from sklearn.metrics import confusion_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRIC_TITLES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "bal. accuracy",
    "macro_f1": "macro-F1",
    "log_loss": "log-loss",
}
NOT_DEFINED = "n/a"
#: The mark of a row whose fits and predictions came from the fit store.
REUSED = "reused"
#: The mark of a row with a fit whose solver stopped at its iteration bound.
NOT_CONVERGED_MARK = "†"
REPORT_FILES = (
    "report.json",
    "report.md",
    "accuracy.png",
    "confusion.png",
    "reliability.png",
    "per_class.png",
    "misclassified.csv",
    "report.html",
)
#: The calibration columns of the table: the keys of ``Row.calibration``.
CALIBRATION_TITLES = {"brier": "Brier", "ece": "ECE"}
#: The gallery of the winner's errors, written when the evaluated cache's source reopens.
GALLERY = "misclassified.png"
#: At most this many thumbnails in the gallery (spread over the errors, in row order).
GALLERY_SIZE = 24
#: The 2-D map of the scored rows (:mod:`~bottleneck_transfer.heads.cache_map`), written
#: when the scored cache can be reopened.
MAP = "map.png"
#: Bar colours of the accuracy chart and what each means.
BAR_COLOURS = {
    "winner": ("tab:orange", "winner"),
    "head": ("tab:blue", "other heads"),
    "baseline": ("0.65", "baselines (other features)"),
}
PER_CLASS_HEADER = ["class", "precision", "recall", "F1", "rows"]
CACHE_HEADER = ["role", "file", "rows", "features", "base", "fingerprint"]


def _cell(row: Row, metric: str) -> str:
    value = row.metrics[metric]
    if value is None:
        return NOT_DEFINED
    low, high = row.intervals[metric]
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _calibration_cell(row: Row, key: str) -> str:
    value = (row.calibration or {}).get(key)
    return NOT_DEFINED if value is None else f"{value:.3f}"


def _any_reused(comparison: Comparison) -> bool:
    return any(row.reused for row in comparison.rows)


def _row_cells(comparison: Comparison, row: Row, marks: dict[str, str]) -> list[str]:
    name = row.name + (" *" if row.name == comparison.winner else "") + marks.get(row.name, "")
    test = row.test
    p = "best" if test is None else f"{test['p_holm']:.2g}"
    reused = [REUSED if row.reused else "new"] if _any_reused(comparison) else []
    return [
        str(row.rank),
        name,
        *(_cell(row, metric) for metric in METRIC_TITLES),
        *(_calibration_cell(row, key) for key in CALIBRATION_TITLES),
        p,
        f"{row.fit_seconds:.2f}",
        f"{row.predict_ms_per_1k:.1f}",
        *reused,
    ]


def _not_converged(row: Row) -> bool:
    return any(note.startswith(NOT_CONVERGED) for note in row.notes)


def _footnotes(comparison: Comparison) -> tuple[dict[str, str], list[str]]:
    marks: dict[str, str] = {}
    notes: list[str] = []
    for row in comparison.rows:
        marks[row.name] = f" {NOT_CONVERGED_MARK}" if _not_converged(row) else ""
        for note in row.notes:
            if note not in notes:
                notes.append(note)
            marks[row.name] += f" [{notes.index(note) + 1}]"
    return marks, [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]


def _legend(comparison: Comparison) -> str:
    if comparison.mode == "holdout":
        spread, test = f"value [{HOLDOUT_INTERVALS}]", HOLDOUT_TEST
    else:
        spread = f"mean over {comparison.n_folds} folds [{CV_INTERVALS}]"
        test = CV_TEST
    reused = (
        f" fit: {REUSED} = fitted and scored in an earlier run, taken from the store (its times"
        " are that run's); new = fitted now."
        if _any_reused(comparison)
        else ""
    )
    bounded = (
        f" {NOT_CONVERGED_MARK} not converged: a solver stopped at its iteration bound (see its"
        " footnote); the scores are those of the bounded fit."
        if any(_not_converged(row) for row in comparison.rows)
        else ""
    )
    chosen = (
        f" * winner: chosen on a validation split of the training rows by {comparison.metric}"
        " (rows ranked by that validation score; no test score chose anything)."
        f" Majority-class rate on the scored rows: {comparison.majority_rate:.3f} (the accuracy"
        " of always guessing the largest class)."
    )
    return (
        f"Metrics: {spread}.{chosen}{bounded} p vs best: {test} against the winner, "
        "Holm-adjusted within one family: the other heads, or (a family of its own) the "
        "baseline rows, so adding a baseline never changes a head's p; the interval printed "
        "with a gap is at its Holm step's level. "
        f"Brier: multiclass Brier score (0-2); ECE: expected calibration error, "
        f"{N_BINS} equal-width bins of top-class confidence (both on the pooled scored rows). "
        f"{NOT_DEFINED}: the head outputs scores, not probabilities (calibration turned off). "
        "fit s per fit (a calibrated head's includes its calibration folds); "
        f"predict ms per 1,000 rows.{reused}"
    )


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and footnotes of the comparison table."""
    marks, footnotes = _footnotes(comparison)
    header = [
        "#",
        "head",
        *METRIC_TITLES.values(),
        *CALIBRATION_TITLES.values(),
        "p vs best",
        "fit s",
        "predict ms/1k",
    ]
    if _any_reused(comparison):
        header.append("fit")
    return header, [_row_cells(comparison, row, marks) for row in comparison.rows], footnotes


def _summary_lines(comparison: Comparison) -> list[str]:
    lines = [comparison.verdict]
    if comparison.transfer is not None:
        lines.append(comparison.transfer["sentence"])
    lines += [f"Warning: {message}" for message in comparison.warnings]
    return lines


def _scope(comparison: Comparison) -> str:
    if comparison.mode == "holdout":
        test = comparison.caches["test"]
        split = test.get("split")
        held = (
            f" (a stratified {split['val_split']:g} hold-out of it, seed {split['seed']})"
            if split
            else ""
        )
        return (
            f"Holdout: fitted on {comparison.caches['train']['rows']} rows of "
            f"{comparison.caches['train']['path']}, scored on {test['rows']} rows of "
            f"{test['path']}{held}"
            + (", tuned on a validation split of the training rows" if comparison.tuned else "")
        )
    return (
        f"{comparison.n_folds}-fold stratified cross-validation on "
        f"{comparison.caches['train']['rows']} rows of {comparison.caches['train']['path']}"
        + (", tuned inside each fold" if comparison.tuned else "")
    )


def format_table(comparison: Comparison) -> str:
    """The comparison as a plain-text table with the verdict below it."""
    header, cells, footnotes = table_rows(comparison)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    right = {0, header.index("fit s"), header.index("predict ms/1k")}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [_scope(comparison), "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    out += ["", *footnotes, _legend(comparison), "", *_summary_lines(comparison)]
    return "\n".join(out)


def choice_lines(comparison: Comparison) -> list[str]:
    """One line per split and choice: what was chosen, why, and every validation score."""
    lines = []
    kinds = [("head", comparison.choices), ("baseline", comparison.baseline_choices)]
    for kind, choices in kinds:
        for k, choice in enumerate(choices, start=1):
            where = f"fold {k}" if len(choices) > 1 else "holdout"
            scores = ", ".join(
                f"{name} {'n/a' if value is None else f'{value:.3f}'}"
                for name, value in choice.scores.items()
            )
            lines.append(
                f"{where}, {kind}: {choice.chosen} ({choice.reason}); validation "
                f"{choice.metric}: {scores}"
            )
    return lines


def _per_class_cells(scores: list[dict]) -> list[list[str]]:
    return [
        [
            s["class"],
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            str(s["rows"]),
        ]
        for s in scores
    ]


def _winner_confusion(comparison: Comparison) -> np.ndarray:
    labels = np.arange(len(comparison.class_names))
    return confusion_matrix(comparison.eval_labels, comparison.best.predictions, labels=labels)


def _markdown_table(header: list[str], cells: list[list[str]], right: set[int]) -> list[str]:
    rule = "|".join("---:" if i in right else "---" for i in range(len(header)))
    return [
        "| " + " | ".join(header) + " |",
        f"|{rule}|",
        *("| " + " | ".join(row) + " |" for row in cells),
    ]


def _base_cell(base: dict) -> str:
    name = base.get("application") or base.get("file") or base.get("name") or "?"
    shape = base.get("input_shape")
    size = f" {shape[0]}x{shape[1]}" if shape else ""
    cut = "/".join(str(base[k]) for k in ("layer", "pooling") if base.get(k))
    weights = base.get("weights")
    return (
        f"{name}{size}" + (f", {cut}" if cut else "") + (f", weights {weights}" if weights else "")
    )


def cache_cells(comparison: Comparison) -> list[list[str]]:
    """One row per cache: role, file, rows, features, base, fingerprint (shortened)."""
    flat: list[tuple[str, dict]] = []
    for role, summary in comparison.caches.items():
        if role.startswith("baseline:"):  # {"train": summary, "test": summary or None}
            flat += [(f"{role} {part}", s) for part, s in summary.items() if s is not None]
        else:
            flat.append((role, summary))
    return [
        [
            role,
            str(summary["path"]),
            str(summary["rows"]),
            str(summary["dim"]),
            _base_cell(summary.get("base") or {}),
            str(summary.get("fingerprint") or "-")[:19],
        ]
        for role, summary in flat
    ]


def format_markdown(
    comparison: Comparison,
    figures: bool = True,
    gallery: str | None = None,
    map_note: str | None = None,
) -> str:
    """The comparison as a Markdown report.

    ``gallery`` and ``map_note`` are the figure's file name, or a sentence saying why there
    is none.
    """
    header, cells, footnotes = table_rows(comparison)
    out = [
        "# Head comparison",
        "",
        _scope(comparison) + ".",
        "",
        "| " + " | ".join(header) + " |",
        "|"
        + "|".join(
            "---:" if i in (0, len(header) - 2, len(header) - 1) else "---"
            for i in range(len(header))
        )
        + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    out += ["", *[f"{note}  " for note in footnotes], _legend(comparison), "", "## Verdict", ""]
    out += [f"- {line}" for line in _summary_lines(comparison)]
    out += ["", "## Choices (validation splits of the training rows only)", ""]
    out += [f"- {line}" for line in choice_lines(comparison)]
    tuned = [row for row in comparison.rows if row.tuning]
    if tuned:
        out += ["", "## Tuning (validation split of the training rows only)", ""]
        for row in tuned:
            chosen = "; ".join(
                ", ".join(f"{k}={v:g}" for k, v in t.best_params.items()) for t in row.tuning
            )
            out.append(f"- {row.name}: {chosen} ({row.tune_seconds:.1f} s)")
    out += ["", f"## Per class: {comparison.winner}", ""]
    scores = per_class_scores(_winner_confusion(comparison), comparison.class_names)
    out += _markdown_table(PER_CLASS_HEADER, _per_class_cells(scores), {1, 2, 3, 4})
    out += ["", "## Caches", ""]
    caches = [[r, f"`{p}`", n, d, b, f"`{f}`"] for r, p, n, d, b, f in cache_cells(comparison)]
    out += _markdown_table(CACHE_HEADER, caches, {2, 3})
    if figures:
        out += [
            "",
            "## Figures",
            "",
            "![accuracy](accuracy.png)",
            "",
            f"![confusion matrix of {comparison.winner}](confusion.png)",
            "",
            "![reliability diagrams](reliability.png)",
            "",
            f"![accuracy per class of {comparison.winner}](per_class.png)",
            "",
            "Misclassified rows of the winner: [misclassified.csv](misclassified.csv)",
        ]
        if gallery == GALLERY:
            out += ["", f"![misclassified images of {comparison.winner}]({GALLERY})"]
        elif gallery:
            out += ["", f"No gallery of misclassified images: {gallery}"]
        if map_note == MAP:
            out += ["", f"![map of the scored rows]({MAP})"]
        elif map_note:
            out += ["", f"No map of the scored rows: {map_note}"]
    return "\n".join(out) + "\n"


def _error_bars(comparison: Comparison) -> np.ndarray:
    bars = []
    for row in comparison.rows:
        value = row.metrics["accuracy"]
        low, high = row.intervals["accuracy"]
        bars.append((value - low, high - value))
    return np.asarray(bars).T


def _bar_role(comparison: Comparison, row: Row) -> str:
    if row.name == comparison.winner:
        return "winner"
    return "baseline" if row.is_baseline else "head"


def plot_accuracy(comparison: Comparison, path: Path) -> Path:
    """Write :func:`accuracy_figure` to ``path``."""
    _save_figure(accuracy_figure(comparison), path)
    return path


def accuracy_figure(comparison: Comparison) -> Figure:
    """Horizontal bars of accuracy per row on a 0-1 axis, with intervals and values."""
    rows = comparison.rows
    figure = new_figure(7.5, 1.9 + 0.45 * len(rows))
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    roles = [_bar_role(comparison, r) for r in rows]
    values = np.asarray([r.metrics["accuracy"] for r in rows])
    errors = _error_bars(comparison)
    axes.barh(
        positions,
        values,
        xerr=errors,
        color=[BAR_COLOURS[role][0] for role in roles],
        capsize=4,
        error_kw={"ecolor": "0.2", "elinewidth": 1},
    )
    for y, value, top in zip(positions, values, values + errors[1], strict=True):
        axes.text(min(top, 1.0) + 0.01, y, f"{value:.3f}", va="center", fontsize=9)
    axes.set_yticks(positions, [r.name for r in rows])
    kind = (
        "95% Clopper–Pearson interval"
        if comparison.mode == "holdout"
        else f"95% corrected t-interval over {comparison.n_folds} folds"
    )
    axes.set_xlabel(f"accuracy (whiskers: {kind})")
    axes.set_xlim(0.0, 1.1)
    axes.set_xticks(np.linspace(0, 1, 6))
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title("Heads compared on the same rows")
    from matplotlib.patches import Patch

    handles = [
        Patch(color=colour, label=label)
        for role, (colour, label) in BAR_COLOURS.items()
        if role in roles
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return figure


def plot_confusion(comparison: Comparison, path: Path) -> Path:
    """Write :func:`confusion_figure` to ``path``."""
    _save_figure(confusion_figure(comparison), path)
    return path


def confusion_figure(comparison: Comparison) -> Figure:
    """The winner's confusion matrix: colour and percentage = share of the true class."""
    names = comparison.class_names
    labels = np.arange(len(names))
    matrix = _winner_confusion(comparison)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = min(13.0, 3.0 + 0.7 * len(names))
    figure = new_figure(size + 1.2, size)
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(labels, names, rotation=45, ha="right")
    axes.set_yticks(labels, names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(
        f"{comparison.winner}: confusion matrix\n"
        "cell: % of the true class's rows (colour), and (row count)",
        fontsize=10,
    )
    if len(names) <= 20:
        for i in labels:
            for j in labels:
                colour = "white" if share[i, j] > 0.5 else ("black" if matrix[i, j] else "0.6")
                axes.text(
                    j,
                    i,
                    f"{share[i, j]:.0%}\n({matrix[i, j]})",
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=8,
                )
    bar = figure.colorbar(image, ax=axes, shrink=0.8, format=lambda x, _: f"{x:.0%}")
    bar.set_label("share of the true class")
    return figure


def per_class_figure(comparison: Comparison) -> Figure:
    """The winner's accuracy on each true class (its recall) with a 95 % Clopper–Pearson
    interval, on a 0-1 axis, beside the winner's overall accuracy."""
    matrix = _winner_confusion(comparison)
    hits, rows = np.diag(matrix), matrix.sum(axis=1)
    shown = np.flatnonzero(rows > 0)
    names = [comparison.class_names[k] for k in shown]
    share = hits[shown] / rows[shown]
    bounds = np.asarray([clopper_pearson(int(hits[k]), int(rows[k])) for k in shown])
    figure = new_figure(7.5, 1.6 + 0.3 * len(shown))
    axes = figure.add_subplot()
    positions = np.arange(len(shown))[::-1]
    axes.barh(
        positions,
        share,
        xerr=np.abs(bounds.T - share),
        color="tab:orange",
        capsize=3,
        error_kw={"ecolor": "0.2", "elinewidth": 1},
    )
    for y, value in zip(positions, share, strict=True):
        axes.text(0.01, y, f"{value:.2f}", va="center", fontsize=8)
    overall = comparison.best.metrics["accuracy"]
    axes.axvline(overall, color="0.3", linestyle="--", linewidth=1)
    axes.set_yticks(positions, names)
    axes.set_xlim(0.0, 1.05)
    axes.set_xlabel(
        f"accuracy on the class's rows (recall); whiskers: 95% Clopper–Pearson; "
        f"dashed: overall {overall:.3f}"
    )
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(f"{comparison.winner}: accuracy per class")
    return figure


def plot_reliability(comparison: Comparison, path: Path) -> Path:
    """Write :func:`reliability_figure` to ``path``."""
    _save_figure(reliability_figure(comparison), path)
    return path


def reliability_figure(comparison: Comparison) -> Figure:
    """Accuracy against top-class confidence per bin, one line per head (on the main
    features) with probabilities (marker area: the bin's rows), beside the diagonal of
    perfect calibration."""
    figure = new_figure(6.0, 5.2)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    heads = [row for row in comparison.rows if not row.is_baseline]
    drawn = [row for row in heads if (row.calibration or {}).get("bins")]
    for row in drawn:
        bins = row.calibration["bins"]
        total = sum(b["rows"] for b in bins)
        confidence = [b["confidence"] for b in bins]
        line = axes.plot(
            confidence,
            [b["accuracy"] for b in bins],
            marker=None,
            linewidth=1.5,
            label=f"{row.name} (ECE {row.calibration['ece']:.3f})",
        )[0]
        axes.scatter(
            confidence,
            [b["accuracy"] for b in bins],
            s=[8 + 200 * b["rows"] / total for b in bins],
            color=line.get_color(),
        )
    skipped = [row.name for row in heads if row not in drawn]
    if skipped:
        axes.text(
            0.02,
            0.98,
            "scores, not probabilities: " + ", ".join(skipped),
            transform=axes.transAxes,
            va="top",
            fontsize=8,
            color="0.3",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"top-class confidence ({N_BINS} equal-width bins; marker area: rows)")
    axes.set_ylabel("accuracy of the rows in the bin")
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title("Reliability: are the probabilities frequencies?")
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    return figure


def _evaluated_cache(comparison: Comparison) -> str:
    return comparison.caches["test" if comparison.mode == "holdout" else "train"]["path"]


def _thumbnails(comparison: Comparison, rows: np.ndarray) -> list[np.ndarray | str | None]:
    """The images of ``rows`` (indices into the evaluated rows), as the base saw them; a
    text cache's texts.

    Raises BottleneckError when the cache's source cannot be reopened; an image that can
    no longer be read is ``None``.
    """
    path = _evaluated_cache(comparison)
    if not Path(path).is_file():
        raise BottleneckError(f"the scored rows come from {path!r}, not a cache file")
    with FeatureCache.open(path) as cache:
        source = reopen_source(cache.provenance.get("source", {}))
        shape = cache.identity.get("base", {}).get("input_shape") or (96, 96, 3)
    items = {item.id: item for item in source.items}
    size, channels = (int(shape[0]), int(shape[1])), 1 if shape[-1] == 1 else 3
    wanted = [items[i] for i in dict.fromkeys(comparison.eval_ids[r] for r in rows) if i in items]
    if source.modality == "text":
        from bottleneck_transfer.features.text_batches import read_texts

        texts, good, _ = read_texts(source, wanted, strict=False)
        read = {item.id: text for item, text in zip(good, texts, strict=True)}
        return [read.get(comparison.eval_ids[i]) for i in rows]
    batch = decode_batch(source, wanted, size, channels)
    decoded = {item.id: pixels for item, pixels in zip(batch.items, batch.pixels, strict=True)}
    return [decoded.get(comparison.eval_ids[i]) for i in rows]


def plot_misclassified(
    comparison: Comparison, path: Path, limit: int = GALLERY_SIZE
) -> Path | None:
    """Write :func:`misclassified_figure` to ``path``; ``None`` when there are no errors."""
    figure = misclassified_figure(comparison, limit)
    if figure is None:
        return None
    _save_figure(figure, path)
    return path


def misclassified_figure(comparison: Comparison, limit: int = GALLERY_SIZE) -> Figure | None:
    """Thumbnails of the winner's errors with their true and predicted class.

    ``None`` when the winner makes no errors. Raises BottleneckError when the evaluated
    cache's source cannot be reopened.
    """
    predictions = comparison.best.predictions
    wrong = np.flatnonzero(predictions != comparison.eval_labels)
    if len(wrong) == 0:
        return None
    spread = np.linspace(0, len(wrong) - 1, min(limit, len(wrong))).round().astype(np.int64)
    shown = wrong[np.unique(spread)]
    images = _thumbnails(comparison, shown)
    names = comparison.class_names
    columns = min(6, len(shown))
    lines = (len(shown) + columns - 1) // columns
    figure = new_figure(2.0 * columns, 2.35 * lines + 0.5)
    unit = "texts" if any(isinstance(image, str) for image in images) else "images"
    figure.suptitle(
        f"{comparison.winner}: {len(shown)} of {len(wrong)} misclassified {unit} (true → predicted)"
    )
    for k, (i, image) in enumerate(zip(shown, images, strict=True)):
        axes = figure.add_subplot(lines, columns, k + 1)
        axes.set_xticks([])
        axes.set_yticks([])
        if image is None:
            axes.text(0.5, 0.5, "unreadable", ha="center", va="center", color="0.5")
        elif isinstance(image, str):
            shown_text = textwrap.fill(textwrap.shorten(image, 200, placeholder=" …"), 30)
            axes.text(0.04, 0.96, shown_text, ha="left", va="top", fontsize=6.5)
        else:
            axes.imshow(
                image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255
            )
        true, predicted = names[comparison.eval_labels[i]], names[predictions[i]]
        axes.set_title(f"{true}\n→ {predicted}", fontsize=8, color="tab:red")
        axes.set_xlabel(str(comparison.eval_ids[i])[-24:], fontsize=6)
    return figure


def _save_figure(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)


def write_misclassified(comparison: Comparison, path: Path) -> Path:
    """``id,true,predicted`` for every row the winner gets wrong (class names)."""
    names = comparison.class_names
    predictions = comparison.best.predictions
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "true", "predicted"])
        for i in np.flatnonzero(predictions != comparison.eval_labels):
            writer.writerow(
                [comparison.eval_ids[i], names[comparison.eval_labels[i]], names[predictions[i]]]
            )
    return path


def _figure_list(comparison: Comparison) -> list[tuple[str, str, str]]:
    """Each figure of the page: file, alternative text, caption."""
    kind = (
        "95% Clopper–Pearson interval"
        if comparison.mode == "holdout"
        else f"95% corrected t-interval over {comparison.n_folds} folds"
    )
    return [
        ("accuracy.png", "accuracy per head", f"Accuracy of every row ({kind})."),
        (
            "reliability.png",
            "reliability diagrams",
            f"Top-class confidence against accuracy in {N_BINS} equal-width bins, one line per "
            "head with probabilities; the dashed diagonal is perfect calibration.",
        ),
        (
            "confusion.png",
            f"confusion matrix of {comparison.winner}",
            "Rows: true class; columns: predicted class; colour and percentage: share of the "
            "true class's rows.",
        ),
        (
            "per_class.png",
            f"accuracy per class of {comparison.winner}",
            "The winner's accuracy on each true class (its recall) with a 95% Clopper–Pearson "
            "interval.",
        ),
        (
            "learning_curve.png",
            "learning curve",
            "Accuracy against labelled images per class; shaded: 95% intervals.",
        ),
        (MAP, "map of the scored rows", ""),
        (GALLERY, f"misclassified images of {comparison.winner}", ""),
    ]


def _settings(comparison: Comparison) -> list[tuple[str, str]]:
    heads = [row.spec for row in comparison.rows if not row.is_baseline]
    baselines = sorted({row.features for row in comparison.rows if row.is_baseline})
    return [
        ("evaluation", _scope(comparison)),
        ("heads", ", ".join(heads)),
        ("baselines", ", ".join(baselines) or "none"),
        ("deciding metric", comparison.metric),
        ("tuned", "yes" if comparison.tuned else "no"),
        ("seed (folds, heads, bootstrap, map sample)", str(comparison.random_state)),
        ("bootstrap resamples", str(comparison.n_bootstrap)),
        ("map", f"at most {cache_map.MAP_ROWS:,} scored rows, seeded sample"),
        ("compare seconds", f"{comparison.seconds:.1f}"),
    ]


def _report_software() -> list[tuple[str, str]]:
    """What made the report (the cache's own provenance names what made the features)."""
    import platform

    import matplotlib
    import sklearn
    from bottleneck_transfer import __version__

    made = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return [
        ("report written at", made),
        ("bottleneck", __version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("scikit-learn", sklearn.__version__),
        ("matplotlib", matplotlib.__version__),
    ]


def _provenance(comparison: Comparison) -> str:
    """The caches, how the scored cache was made (its recorded provenance), and the report's
    own software."""
    h = htmlpage
    parts = [h.table(CACHE_HEADER, cache_cells(comparison), {2, 3})]
    roles: dict[str, str] = {}  # a --val-split scores a part of the training cache
    for role in ("train", "test"):
        roles.setdefault(comparison.caches.get(role, {}).get("path", ""), role)
    for path, role in roles.items():
        if path and Path(path).is_file():
            try:
                with FeatureCache.open(path) as cache:
                    recorded = json.dumps(cache.provenance, indent=2, sort_keys=True)
            except BottleneckError as exc:
                parts.append(h.paragraph(f"{role} cache {path}: no provenance ({exc})", "note"))
                continue
            parts.append(
                f"<details><summary>{h.text(f'{role} cache {path}: recorded provenance')}"
                f"</summary><pre>{h.text(recorded)}</pre></details>"
            )
    parts.append(h.table(["report", "value"], _report_software(), set()))
    return "".join(parts)


def format_html(
    comparison: Comparison,
    figures: dict[str, Path],
    captions: dict[str, str],
    curve: LearningCurve | None = None,
) -> str:
    """The comparison as one self-contained HTML page (:mod:`.htmlpage`): verdict, table
    with intervals, the figures of ``figures`` inlined, per-class scores, choices, the
    learning curve, settings and provenance. ``captions``: a figure's caption, or for a
    figure not in ``figures``, why it is missing."""
    h = htmlpage
    header, cells, footnotes = table_rows(comparison)
    numeric = {0, header.index("fit s"), header.index("predict ms/1k")}
    verdict = [h.paragraph(comparison.verdict, "verdict")]
    if comparison.transfer is not None:
        verdict.append(h.paragraph(comparison.transfer["sentence"], "verdict"))
    if curve is not None:
        verdict.append(h.paragraph(curve.sentence, "verdict"))
    verdict.append(h.bullets(f"Warning: {message}" for message in comparison.warnings))
    shown = []
    for name, alt, caption in _figure_list(comparison):
        if name in figures:
            shown.append(h.figure(figures[name], alt, captions.get(name) or caption))
        elif captions.get(name):
            shown.append(h.paragraph(f"No {alt}: {captions[name]}", "note"))
    scores = per_class_scores(_winner_confusion(comparison), comparison.class_names)
    body = [
        h.paragraph(_scope(comparison) + "."),
        h.section("Verdict", "".join(verdict), "verdict"),
        h.section(
            "Heads",
            h.table(header, cells, numeric)
            + "".join(h.paragraph(note, "note") for note in footnotes)
            + h.paragraph(_legend(comparison), "note"),
            "heads",
        ),
        h.section("Figures", "".join(shown), "figures"),
        h.section(
            f"Per class: {comparison.winner}",
            h.table(PER_CLASS_HEADER, _per_class_cells(scores), {1, 2, 3, 4}),
            "per-class",
        ),
        h.section(
            "Choices (validation splits of the training rows only)",
            h.bullets(choice_lines(comparison)),
            "choices",
        ),
    ]
    if curve is not None:
        curve_header, curve_cells = curve_rows(curve)
        body.append(
            h.section(
                "Learning curve",
                h.table(curve_header, curve_cells, set())
                + h.bullets(curve.notes)
                + h.paragraph(curve.sentence),
                "learning-curve",
            )
        )
    body += [
        h.section(
            "Settings", h.table(["setting", "value"], _settings(comparison), set()), "settings"
        ),
        h.section("Provenance", _provenance(comparison), "provenance"),
    ]
    return h.page(f"Head comparison: {comparison.winner}", body)


def write_report(
    comparison: Comparison, directory: str | Path, curve: LearningCurve | None = None
) -> dict[str, Path]:
    """Write the report folder; returns the path of each file by name.

    With ``curve`` (a learning curve of the same data) its files are written too and its
    figure and sentence join ``report.html``.
    """
    directory = make_folder(directory)
    paths = {name: directory / name for name in REPORT_FILES}
    plot_accuracy(comparison, paths["accuracy.png"])
    plot_confusion(comparison, paths["confusion.png"])
    plot_reliability(comparison, paths["reliability.png"])
    _save_figure(per_class_figure(comparison), paths["per_class.png"])
    write_misclassified(comparison, paths["misclassified.csv"])
    try:
        gallery = plot_misclassified(comparison, directory / GALLERY) and GALLERY
    except BottleneckError as exc:
        gallery = f"the images cannot be reopened ({exc})."
    if gallery == GALLERY:
        paths[GALLERY] = directory / GALLERY
    try:
        drawn = cache_map.comparison_map(comparison)
    except BottleneckError as exc:
        drawn, map_note = None, f"{exc}."
    else:
        map_note = MAP
        paths[MAP] = directory / MAP
        figure = cache_map.map_figure(drawn, comparison.class_names, comparison.winner)
        _save_figure(figure, paths[MAP])
    if curve is not None:
        paths.update(write_curve_report(curve, directory))
    markdown = format_markdown(comparison, gallery=gallery, map_note=map_note)
    atomic_write_text(paths["report.md"], markdown)
    payload = {**comparison.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    atomic_write_text(paths["report.json"], json.dumps(payload, indent=2))
    captions = {
        GALLERY: gallery if gallery != GALLERY else "",
        MAP: drawn.caption if drawn is not None else map_note,
    }
    atomic_write_text(paths["report.html"], format_html(comparison, paths, captions, curve))
    return paths


def format_evaluation(evaluation: Evaluation) -> str:
    """One head's scores on a cache as plain text."""
    lines = [f"{evaluation.head} on {evaluation.source} ({evaluation.n_rows} rows)"]
    for metric, title in METRIC_TITLES.items():
        value = evaluation.metrics[metric]
        bounds = evaluation.intervals[metric]
        text = (
            NOT_DEFINED + " (no predict_proba)"
            if value is None
            else f"{value:.4f}  [{bounds[0]:.4f}, {bounds[1]:.4f}]"
        )
        lines.append(f"  {title:<14} {text}")
    lines.append(f"  ({HOLDOUT_INTERVALS})")
    lines.append(f"  {'predict':<14} {evaluation.predict_ms_per_1k:.1f} ms per 1,000 rows")
    cells = _per_class_cells(per_class_scores(evaluation.confusion, evaluation.class_names))
    widths = [max(len(r[i]) for r in [PER_CLASS_HEADER, *cells]) for i in range(5)]
    lines += ["", "Per class:"]
    for row in [PER_CLASS_HEADER, *cells]:
        lines.append(
            "  "
            + "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)
