"""The report of a binary, multi-label or regression comparison
(:class:`~bottleneck_transfer.heads.target_compare.TargetComparison`): a Markdown table with
intervals and the verdict, ``report.json``, and the winner's figure: predicted vs true values
(regression) or precision-recall curves (binary: the positive; multi-label: each tag).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text, make_folder
from bottleneck_transfer.heads.figures import new_figure
from bottleneck_transfer.heads.target_compare import TargetComparison

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _cell(value: float | None, low_high: tuple[float, float] | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    if low_high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}]"


def format_target_table(result: TargetComparison) -> str:
    """The comparison as a Markdown table (one row per head, the baseline last) and verdict."""
    keys = list(result.baseline.scores)
    header = ["head", *keys, f"validation {result.metric.name}", "beats baseline", "fit s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in [*result.rows, result.baseline]:
        beats = (row.versus_baseline or {}).get("beats")
        cells = [
            f"**{row.name}**" if row.name == result.winner else row.name,
            *(_cell(row.scores[k], row.intervals.get(k)) for k in keys),
            _cell(row.validation, None),
            "" if beats is None else ("yes" if beats else "no"),
            f"{sum(f.seconds for f in row.folds):.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    title = f"Target: {result.target.describe()}; {result.mode}; 95% bootstrap intervals."
    return "\n".join([title, "", *lines, "", result.verdict])


def target_figure(result: TargetComparison) -> Figure:
    """The winner's predicted vs true values (regression) or precision-recall curves."""
    from sklearn.metrics import precision_recall_curve

    winner = result.row(result.winner)
    figure = new_figure(4.5, 4)
    ax = figure.add_subplot()
    y, score = result.y, winner.predictions
    if result.target.kind == "regression":
        ax.scatter(y, score, s=8, alpha=0.6, color="#4878a8")
        low, high = float(min(y.min(), score.min())), float(max(y.max(), score.max()))
        ax.plot([low, high], [low, high], color="grey", lw=1)
        unit = f" ({result.target.unit})" if result.target.unit else ""
        ax.set_xlabel(f"true {result.target.value_name}{unit}")
        ax.set_ylabel(f"predicted ({result.winner})")
    else:
        columns = (
            [(result.target.names[1], y, score)]
            if result.target.kind == "binary"
            else [(name, y[:, k], score[:, k]) for k, name in enumerate(result.target.names)]
        )
        for name, truth, scored in columns:
            precision, recall, _ = precision_recall_curve(truth, scored)
            ax.plot(recall, precision, label=name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.legend(fontsize=7)
    ax.set_title(f"{result.winner} on held-out rows", fontsize=9)
    return figure


def write_target_report(result: TargetComparison, directory: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the figure; returns each file's path."""
    directory = make_folder(directory)
    figure = "scatter.png" if result.target.kind == "regression" else "pr_curves.png"
    paths = {name: directory / name for name in ("report.md", "report.json", figure)}
    with atomic_path(paths[figure]) as tmp:
        target_figure(result).savefig(tmp, dpi=120)
    atomic_write_text(paths["report.md"], format_target_table(result) + f"\n\n![]({figure})\n")
    payload = {**result.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    atomic_write_text(paths["report.json"], json.dumps(payload, indent=2))
    return paths
