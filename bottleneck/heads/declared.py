"""The metrics a comparison may be decided by, in one light module (no NumPy or sklearn).

:data:`DECLARED` is the one list of metric names (``--metric``, the spec's
``heads.metric``), each with its direction (higher or lower is better), whether it needs
predicted probabilities and how many classes it needs; :data:`METRICS` are their keys in
scores. The CLI builds ``--metric`` from here at start-up;
:mod:`~bottleneck_transfer.heads.metrics` computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: k of the top-k accuracy: a row counts as right when its class is among the head's k most
#: probable classes.
TOP_K = 3


@dataclass(frozen=True)
class Metric:
    """A metric that may decide a comparison: its option name, its key in scores, its
    direction, and whether it needs the head's probabilities."""

    name: str
    key: str
    higher_is_better: bool
    needs_proba: bool = False
    min_classes: int = 2

    def scorer(self) -> str | Callable[..., float]:
        """The scikit-learn scorer of this metric (greater is better), for tuning."""
        from sklearn.metrics import make_scorer, top_k_accuracy_score  # on use: heavy

        if self.key == "top_k":
            return make_scorer(top_k_accuracy_score, response_method="predict_proba", k=TOP_K)
        names = {"macro_f1": "f1_macro", "log_loss": "neg_log_loss"}
        return names.get(self.key, self.key)

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b`` in this metric's direction."""
        return a > b if self.higher_is_better else a < b

    def sort_key(self, value: float | None) -> float:
        """A key sorting best first (None last)."""
        if value is None:
            return float("inf")
        return -value if self.higher_is_better else value


#: The metrics a comparison may be decided by (``--metric``), best known first.
DECLARED = (
    Metric("accuracy", "accuracy", True),
    Metric("balanced-accuracy", "balanced_accuracy", True),
    Metric("macro-f1", "macro_f1", True),
    Metric("log-loss", "log_loss", False, needs_proba=True),
    Metric("top-k", "top_k", True, needs_proba=True, min_classes=TOP_K + 1),
)
METRICS = tuple(metric.key for metric in DECLARED)
METRIC_NAMES = tuple(metric.name for metric in DECLARED)


def metric_named(name: str) -> Metric:
    """The declared metric called ``name`` (option name or key).

    Raises
    ------
    ValueError
        For any other name, listing the declared ones.
    """
    for metric in DECLARED:
        if name in (metric.name, metric.key):
            return metric
    raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")


#: The metrics of binary, multi-label and regression targets (``--metric``), the default
#: first (:mod:`~bottleneck_transfer.heads.target_metrics` computes them). F1 is at the
#: threshold chosen on training rows.
TARGET_DECLARED = {
    "binary": (
        Metric("roc-auc", "roc_auc", True, needs_proba=True),
        Metric("pr-auc", "pr_auc", True, needs_proba=True),
        Metric("f1", "f1", True),
        Metric("accuracy", "accuracy", True),
    ),
    "multilabel": (
        Metric("map", "map", True, needs_proba=True),
        Metric("micro-f1", "micro_f1", True),
        Metric("macro-f1", "macro_f1", True),
    ),
    "regression": (
        Metric("r2", "r2", True),
        Metric("mae", "mae", False),
        Metric("rmse", "rmse", False),
    ),
}
#: Every ``--metric`` name, of any target kind.
ALL_METRIC_NAMES = tuple(
    dict.fromkeys([*METRIC_NAMES, *(m.name for ms in TARGET_DECLARED.values() for m in ms)])
)


def target_metric(kind: str, name: str | None) -> Metric:
    """The metric ``name`` of a target kind's (None: its default).

    Raises
    ------
    ValueError
        For a name that is not the kind's, listing its metrics.
    """
    metrics = TARGET_DECLARED[kind]
    if name is None:
        return metrics[0]
    for metric in metrics:
        if name in (metric.name, metric.key):
            return metric
    raise ValueError(
        f"--metric {name!r} is not a metric of {kind} targets; valid: "
        f"{', '.join(m.name for m in metrics)}"
    )
