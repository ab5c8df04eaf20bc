"""``bottleneck run`` on a binary, multi-label or regression target (``[data] target``).

After extraction (as for classes: the caches record the target), the run compares the heads
on the training cache (:func:`~bottleneck_transfer.heads.target_compare.compare_targets`:
scored on the test cache, or ``heads.cv`` folds, against the mean or prevalence predictor),
writes the report, exports the chosen head as one ``.keras`` model (a winner without an
exact Keras form, e.g. ``knn`` or ``kernel-ridge``: nothing, saying which heads export)
(:func:`~bottleneck_transfer.deploy.target_export.export_target`: fitted on every training
row exactly as the comparison fitted it, the same tuning, seed and thresholds chosen on
training rows) and predicts the test images with it. Its fits are not memoized: a second
run refits its heads (the extraction is reused).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.deploy.target_export import exact_heads, export_target
from bottleneck_transfer.heads.registry import head_kind
from bottleneck_transfer.heads.target_compare import (
    TargetComparison,
    check_in_memory,
    compare_targets,
)
from bottleneck_transfer.heads.target_report import format_target_table, write_target_report

#: The export's file name in the run folder.
MODEL = "model.keras"


def run_targets(
    spec: dict,
    caches: dict[tuple[str, str], Path],
    run_dir: Path,
    record: dict,
    timings: dict[str, float],
    echo: Callable[[str], Any],
) -> list[str]:
    """Compare, report, export and predict (into ``record`` and ``run_dir``); the run's
    summary lines."""
    heads = spec["heads"]
    train = caches[("main", "train")]
    test = caches.get(("main", "test")) if heads["cv"] is None else None
    check_in_memory(train, None)  # what would stream is refused, as `compare` refuses it
    t0 = time.perf_counter()
    result = compare_targets(
        train, test, heads=heads["use"], cv=heads["cv"], tune=heads["tune"], metric=heads["metric"]
    )
    timings["compare"] = round(time.perf_counter() - t0, 3)
    echo(format_target_table(result))
    write_target_report(result, run_dir / "report")
    record["compare"] = result.to_dict()
    chosen = chosen_head(spec["export"]["head"], result)
    if head_kind(chosen).export_form != "keras":
        record["export"] = {
            "skipped": f"{chosen} has no exact Keras form for a {result.target.kind} target; "
            f"set export.head to one of {', '.join(exact_heads(result.target.kind))}"
        }
        return summary(result, record)
    t0 = time.perf_counter()
    made = export_target(
        train,
        run_dir / MODEL,
        head=chosen,
        tune=heads["tune"],
        metric=result.metric.name,
    )
    timings["export"] = round(time.perf_counter() - t0, 3)
    record["export"] = {
        "path": str(made.path),
        "head": made.head,
        "kind": made.kind,
        "spec": chosen,
        "params": made.metadata["head_params"],
        "thresholds": made.metadata["thresholds"],
        "parity": None if made.parity is None else made.parity.to_dict(),
    }
    if spec["export"]["predict"] and spec["data"]["test"]:
        t0 = time.perf_counter()
        out = run_dir / "predictions.csv"
        predicted = predict(
            made.path,
            spec["data"]["test"],
            out=out,
            limit=spec["export"]["predict"],
            progress=False,
        )
        timings["predict"] = round(time.perf_counter() - t0, 3)
        record["predict"] = {"path": str(out), "images": len(predicted)}
    return summary(result, record)


def chosen_head(choice: str, result: TargetComparison) -> str:
    """The head spec to export: the comparison's winner (``best``), else the compared head
    of that spec or kind."""
    if choice == "best":
        return result.winner
    return next(r.name for r in result.rows if choice in (r.name, head_kind(r.name).name))


def summary(result: TargetComparison, record: dict) -> list[str]:
    """The run's summary: the winner and its score, the verdict, the export, predictions."""
    metric = result.metric
    winner = result.row(result.winner)
    low_high = winner.intervals.get(metric.key)
    shown = "" if low_high is None else f" [{low_high[0]:.3f}, {low_high[1]:.3f}]"
    lines = [
        f"Winner: {winner.name}  {metric.name} {winner.scores[metric.key]:.3f}{shown} "
        f"({result.target.describe()}; {result.mode}; chosen by validation {metric.name} on "
        f"training rows; {result.baseline.name} "
        f"{result.baseline.scores[metric.key]:.3f})",
        result.verdict,
    ]
    exported = record["export"]
    if "skipped" in exported:
        return [*lines, f"Exported: nothing ({exported['skipped']})"]
    parity = exported["parity"]
    checked = f", parity checked on {parity['n']} images" if parity is not None else ""
    lines.append(f"Exported: {exported['path']}{checked}")
    if "predict" in record:
        p = record["predict"]
        lines.append(f"Predictions: {p['path']} ({p['images']} images)")
    return lines
