"""Rendering comparisons: terminal and Markdown tables, and the report folder.

:func:`write_report` writes ``report.json``, ``report.md``, ``accuracy.png`` (accuracy per
head with its interval), ``confusion.png`` (the winner's confusion matrix) and
``misclassified.csv`` (``id,true,predicted`` of the winner's errors, with the cache ids).
Figures use Matplotlib's object-oriented API with the Agg canvas, so no display is needed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text
from bottleneck_transfer.heads.compare import Comparison, Row
from bottleneck_transfer.heads.training import Evaluation
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

METRIC_TITLES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "bal. accuracy",
    "macro_f1": "macro-F1",
    "log_loss": "log-loss",
}
NOT_DEFINED = "n/a"
REPORT_FILES = ("report.json", "report.md", "accuracy.png", "confusion.png", "misclassified.csv")


def _cell(row: Row, metric: str) -> str:
    value = row.metrics[metric]
    if value is None:
        return NOT_DEFINED
    bounds = row.intervals.get(metric)
    if bounds is not None:
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"
    spread = row.spread.get(metric)
    return f"{value:.3f} ± {spread:.3f}" if spread is not None else f"{value:.3f}"


def _row_cells(comparison: Comparison, row: Row, marks: dict[str, str]) -> list[str]:
    name = row.name + (" *" if row.name == comparison.winner else "") + marks.get(row.name, "")
    test = row.test
    p = "best" if test is None else f"{test['p_holm']:.2g}"
    return [
        str(row.rank),
        name,
        *(_cell(row, metric) for metric in METRIC_TITLES),
        p,
        f"{row.fit_seconds:.2f}",
        f"{row.predict_ms_per_1k:.1f}",
    ]


def _footnotes(comparison: Comparison) -> tuple[dict[str, str], list[str]]:
    marks: dict[str, str] = {}
    notes: list[str] = []
    for row in comparison.rows:
        for note in row.notes:
            if note not in notes:
                notes.append(note)
            marks[row.name] = marks.get(row.name, "") + f" [{notes.index(note) + 1}]"
    return marks, [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]


def _legend(comparison: Comparison) -> str:
    spread = (
        "[95% bootstrap interval]"
        if comparison.mode == "holdout"
        else f"mean ± std over {comparison.n_folds} folds"
    )
    return (
        f"Metrics: {spread}. * winner. p: McNemar test vs the winner, Holm-adjusted. "
        f"{NOT_DEFINED}: no predict_proba, log-loss not defined. fit s per fit; "
        "predict ms per 1,000 rows."
    )


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and footnotes of the comparison table."""
    marks, footnotes = _footnotes(comparison)
    header = ["#", "head", *METRIC_TITLES.values(), "p vs best", "fit s", "predict ms/1k"]
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
        return (
            f"Holdout: fitted on {comparison.caches['train']['rows']} rows of "
            f"{comparison.caches['train']['path']}, scored on {test['rows']} rows of "
            f"{test['path']}"
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
    right = {0, len(header) - 2, len(header) - 1}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [_scope(comparison), "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    out += ["", *footnotes, _legend(comparison), "", *_summary_lines(comparison)]
    return "\n".join(out)


def format_markdown(comparison: Comparison, figures: bool = True) -> str:
    """The comparison as a Markdown report."""
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
    tuned = [row for row in comparison.rows if row.tuning]
    if tuned:
        out += ["", "## Tuning (validation split of the training rows only)", ""]
        for row in tuned:
            chosen = "; ".join(
                ", ".join(f"{k}={v:g}" for k, v in t.best_params.items()) for t in row.tuning
            )
            out.append(f"- {row.name}: {chosen} ({row.tune_seconds:.1f} s)")
    out += ["", "## Caches", ""]
    for role, summary in comparison.caches.items():
        out.append(f"- {role}: `{json.dumps(summary, sort_keys=True)}`")
    if figures:
        out += [
            "",
            "## Figures",
            "",
            "![accuracy](accuracy.png)",
            "",
            f"![confusion matrix of {comparison.winner}](confusion.png)",
            "",
            "Misclassified rows of the winner: [misclassified.csv](misclassified.csv)",
        ]
    return "\n".join(out) + "\n"


def _error_bars(comparison: Comparison) -> np.ndarray:
    bars = []
    for row in comparison.rows:
        value = row.metrics["accuracy"]
        bounds = row.intervals.get("accuracy")
        if bounds is not None:
            bars.append((value - bounds[0], bounds[1] - value))
        else:
            spread = row.spread.get("accuracy") or 0.0
            bars.append((spread, spread))
    return np.asarray(bars).T


def plot_accuracy(comparison: Comparison, path: Path) -> Path:
    """Horizontal bars of accuracy per row with intervals; the winner highlighted."""
    rows = comparison.rows
    figure = Figure(figsize=(7, 1.2 + 0.45 * len(rows)), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    colours = [
        "tab:orange" if r.name == comparison.winner else ("0.7" if r.is_baseline else "tab:blue")
        for r in rows
    ]
    values = np.asarray([r.metrics["accuracy"] for r in rows])
    errors = _error_bars(comparison)
    axes.barh(positions, values, xerr=errors, color=colours, capsize=4)
    axes.set_yticks(positions, [r.name for r in rows])
    kind = "95% bootstrap interval" if comparison.mode == "holdout" else "± std over folds"
    axes.set_xlabel(f"accuracy ({kind})")
    lowest = float(np.min(values - errors[0]))
    axes.set_xlim(max(0.0, np.floor(lowest * 20 - 1) / 20), 1.0)
    axes.set_title("Heads compared on the same rows")
    _save_figure(figure, path)
    return path


def plot_confusion(comparison: Comparison, path: Path) -> Path:
    """The winner's confusion matrix, row-normalised, with counts when it is small."""
    names = comparison.class_names
    labels = np.arange(len(names))
    matrix = confusion_matrix(comparison.eval_labels, comparison.best.predictions, labels=labels)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = min(12.0, 2.5 + 0.5 * len(names))
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(labels, names, rotation=45, ha="right")
    axes.set_yticks(labels, names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{comparison.winner}: confusion matrix (row share)")
    if len(names) <= 20:
        for i in labels:
            for j in labels:
                colour = "white" if share[i, j] > 0.5 else "black"
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, shrink=0.8)
    _save_figure(figure, path)
    return path


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


def write_report(comparison: Comparison, directory: str | Path) -> dict[str, Path]:
    """Write the report folder; returns the path of each file by name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in REPORT_FILES}
    plot_accuracy(comparison, paths["accuracy.png"])
    plot_confusion(comparison, paths["confusion.png"])
    write_misclassified(comparison, paths["misclassified.csv"])
    atomic_write_text(paths["report.md"], format_markdown(comparison))
    payload = {**comparison.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    atomic_write_text(paths["report.json"], json.dumps(payload, indent=2))
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
            else f"{value:.4f}  [95% bootstrap {bounds[0]:.4f}, {bounds[1]:.4f}]"
        )
        lines.append(f"  {title:<14} {text}")
    lines.append(f"  {'predict':<14} {evaluation.predict_ms_per_1k:.1f} ms per 1,000 rows")
    return "\n".join(lines)
