"""``--head best``: the head a comparison chose by its declared metric, read back or computed.

A comparison written with ``compare -o DIR`` keeps its choice in ``DIR/report.json``;
:func:`best_head` reads it back when it was made on the same cache and by the same metric,
and otherwise runs the comparison (the registry's default heads, 5-fold CV).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache

#: The file of a report folder that holds the comparison (``compare -o DIR``).
REPORT_JSON = "report.json"


def best_head(
    cache: str | Path,
    *,
    metric: str | None = None,
    heads: Sequence[str] | None = None,
    report: str | Path | None = None,
    random_state: int = 0,
) -> tuple[str, str]:
    """The spec of the head chosen on ``cache`` by ``metric``, and where the choice came from.

    Parameters
    ----------
    cache : str or Path
        The training cache the head will be fitted on.
    metric : str, optional
        The declared metric that decides (default: the comparison's own default).
    heads : sequence of str, optional
        Head specs to compare (default: the registry's default heads).
    report : str or Path, optional
        A ``compare -o`` folder (or its ``report.json``): its choice is used, with no
        comparison run, when it compared ``cache`` by ``metric``.
    random_state : int, default=0
        Seeds the comparison when one is run.

    Returns
    -------
    spec, origin : str
        The chosen head spec and a sentence saying how it was chosen.

    Raises
    ------
    HeadError
        When ``report`` is missing, unreadable, of another cache or decided by another metric.
    """
    if report is not None:
        return _from_report(Path(report), cache, metric)
    with FeatureCache.open(cache) as opened:
        kind = opened.target.kind
    if kind != "class":
        return _best_for_target(cache, metric, heads, random_state)
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.registry import default_heads

    comparison = compare_heads(
        cache,
        heads=list(heads or default_heads()),
        metric=metric,
        random_state=random_state,
    )
    chosen = comparison.best
    return chosen.spec, (
        f"chosen by validation {comparison.metric} on training rows of a {comparison.n_folds}-fold "
        f"comparison of {', '.join(r.name for r in comparison.rows)}"
    )


def _best_for_target(
    cache: str | Path, metric: str | None, heads: Sequence[str] | None, random_state: int
) -> tuple[str, str]:
    """The winner of a 5-fold comparison of a binary, multi-label or regression cache."""
    from bottleneck_transfer.heads.target_compare import compare_targets

    result = compare_targets(
        cache, heads=heads, cv=5, metric=metric, n_bootstrap=100, random_state=random_state
    )
    names = ", ".join(row.name for row in result.rows)
    return result.winner, (
        f"chosen by validation {result.metric.name} on training rows of a 5-fold comparison "
        f"of {names}"
    )


def _from_report(report: Path, cache: str | Path, metric: str | None) -> tuple[str, str]:
    """The chosen spec of a ``report.json``, refusing one about other data or another metric."""
    from bottleneck_transfer.heads.declared import metric_named

    path = report / REPORT_JSON if report.is_dir() else report
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        chosen, decided = data["selection"]["chosen"], data["metric"]
        spec = next(row["spec"] for row in data["rows"] if row["name"] == chosen)
        fingerprint = data["caches"]["train"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise HeadError(
            f"--from-report {report}: not a comparison's report ({exc}); give the folder "
            "`bottleneck compare -o DIR` wrote"
        ) from exc
    with FeatureCache.open(cache) as opened:
        if fingerprint != opened.fingerprint:
            raise HeadError(
                f"--from-report {report} compared another cache than {cache}: compare this "
                "one, or drop --from-report to compare here"
            )
    if metric is not None and metric_named(metric).name != metric_named(decided).name:
        raise HeadError(
            f"--from-report {report} chose by {decided}, not --metric {metric}: drop one of "
            "them, or compare again with --metric"
        )
    return spec, f"chosen by validation {decided} in {path}"
