"""Training and evaluating heads on cached features: data, guards, metrics, save and load.

* :class:`LabeledData` holds one cache's features, read once per run.
* Guards: :func:`check_labels` (unlabeled rows, one class, too few rows per class) raise
  :class:`~bottleneck_transfer.errors.HeadError`; :func:`warn_small_data` emits
  :class:`~bottleneck_transfer.errors.SmallDataWarning`; :func:`check_compatible` refuses features
  from another base, feature size or class list, naming the difference.
* Metrics: :func:`score` (scikit-learn's own metric functions) and :func:`bootstrap`
  (paired bootstrap replicates for intervals).
* :func:`train_head`, :func:`save_head`, :func:`load_head`, :func:`evaluate_head`, and
  :func:`fit_streaming` for caches larger than memory.

A saved head is one skops file holding ``{"head": estimator, "meta": "<JSON>"}``. Loading
trusts only the types skops reports that belong to scikit-learn, NumPy, SciPy or
:mod:`heads.registry`, and refuses the file otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.errors import HeadError, SmallDataWarning
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.fingerprint import diff_keys
from bottleneck_transfer.heads.registry import (
    has_proba,
    make_head,
    parse_spec,
    set_random_state,
    single_threaded,
)
from bottleneck_transfer.heads.tuning import tune_head
from bottleneck_transfer.versions import software_versions
from sklearn.base import BaseEstimator
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HEAD_FORMAT = "bottleneck-head"
HEAD_FORMAT_VERSION = 1
SMALL_CLASS_ROWS = 20
IMBALANCE_RATIO = 10.0
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")
TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")
TRUSTED_OWN_TYPES = (
    "bottleneck_transfer.heads.registry.DenseHead",
    "bottleneck_transfer.heads.registry.RBFSVC",
    "bottleneck_transfer.heads.linear_svm.LinearSVM",
)
STREAMING_LOSSES = {"logreg": "log_loss", "linear-svm": "hinge"}


class AccuracyBelowMinimumError(HeadError):
    """A head scored below the accuracy required by ``--assert-min-accuracy``."""


def check_min_accuracy(accuracy: float, minimum: float | None, *, what: str) -> None:
    """Raise :class:`AccuracyBelowMinimumError` when ``accuracy < minimum``."""
    if minimum is not None and accuracy < minimum:
        raise AccuracyBelowMinimumError(
            f"{what} has accuracy {accuracy:.4f}, below the required minimum {minimum:.4f}"
        )


@dataclass(frozen=True)
class FeatureSpace:
    """What features must share to be used together: base, class list and size."""

    source: str
    base: dict
    class_names: list[str]
    dim: int

    @classmethod
    def of_cache(cls, cache: FeatureCache) -> FeatureSpace:
        """The feature space of an open cache."""
        return cls(str(cache.path), cache.identity.get("base", {}), cache.class_names, cache.dim)


@dataclass
class LabeledData:
    """Features and labels of one cache (or of arrays), held in memory.

    ``y`` holds class indices into ``class_names``; -1 marks unlabeled rows.
    """

    X: np.ndarray
    y: np.ndarray
    ids: list[str]
    space: FeatureSpace
    fingerprint: str = ""

    @classmethod
    def from_cache(cls, cache: FeatureCache | str | Path) -> LabeledData:
        """Read a cache's features, labels and ids once."""
        if not isinstance(cache, FeatureCache):
            with FeatureCache.open(cache) as opened:
                return cls.from_cache(opened)
        return cls(
            X=cache.features,
            y=cache.labels.astype(np.int64),
            ids=cache.ids,
            space=FeatureSpace.of_cache(cache),
            fingerprint=cache.fingerprint,
        )

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        *,
        ids: list[str] | None = None,
        class_names: list[str] | None = None,
        base: dict | None = None,
        source: str = "arrays",
    ) -> LabeledData:
        """Wrap in-memory arrays; ids default to ``array:<i>``, class names to ``"0".."K-1"``."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if class_names is None:
            class_names = [str(i) for i in range(int(y.max()) + 1)]
        ids = ids if ids is not None else [f"array:{i}" for i in range(len(y))]
        if not len(X) == len(y) == len(ids):
            raise HeadError(f"{source}: {len(X)} feature rows, {len(y)} labels, {len(ids)} ids")
        space = FeatureSpace(source, base or {}, list(class_names), int(X.shape[1]))
        return cls(X=X, y=y, ids=list(ids), space=space)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names[i]``."""
        return self.space.class_names


def check_labels(
    labels: np.ndarray,
    class_names: list[str],
    *,
    source: str,
    min_per_class: int = 1,
    min_classes: int = 2,
) -> np.ndarray:
    """Refuse labels heads cannot learn from (or be scored on); return the rows per class.

    Raises
    ------
    HeadError
        If rows are unlabeled (-1), a label is outside ``class_names``, fewer than
        ``min_classes`` classes have rows (2 to train, 1 to score), or a class has fewer
        than ``min_per_class`` rows (e.g. the number of cross-validation folds).
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise HeadError(f"{source} has no rows to train or evaluate on")
    unlabeled = int(np.count_nonzero(labels == -1))
    if unlabeled:
        raise HeadError(
            f"{source}: {unlabeled} of {len(labels)} rows are unlabeled (label -1); heads "
            "need labels: extract from a labeled source (class folders or a manifest with labels)"
        )
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise HeadError(
            f"{source}: labels must lie in 0..{len(class_names) - 1} (its class names); "
            f"found {labels.min()}..{labels.max()}"
        )
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if len(present) < min_classes:
        only = class_names[present[0]]
        raise HeadError(
            f"{source} holds a single class ({only!r}); a classifier needs at least two"
        )
    short = [(class_names[i], int(counts[i])) for i in present if counts[i] < min_per_class]
    if short:
        listed = ", ".join(f"{name!r} ({n})" for name, n in short)
        raise HeadError(
            f"{source}: too few rows for {min_per_class}-fold cross-validation in class "
            f"{listed}; use fewer folds (--cv) or a --test cache"
        )
    return counts


def small_data_messages(labels: np.ndarray, class_names: list[str], *, source: str) -> list[str]:
    """Warnings about few rows per class or strong class imbalance (empty when fine)."""
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    present = np.flatnonzero(counts)
    messages = []
    small = [i for i in present if counts[i] < SMALL_CLASS_ROWS]
    if small:
        listed = ", ".join(f"{class_names[i]!r} ({counts[i]})" for i in small)
        messages.append(
            f"{source}: fewer than {SMALL_CLASS_ROWS} rows in class {listed}; "
            "differences between heads will be noisy"
        )
    largest, smallest = present[np.argmax(counts[present])], present[np.argmin(counts[present])]
    if counts[largest] > IMBALANCE_RATIO * counts[smallest]:
        messages.append(
            f"{source}: classes are strongly imbalanced ({class_names[largest]!r} has "
            f"{counts[largest]} rows, {class_names[smallest]!r} {counts[smallest]}); "
            "accuracy favours the majority class, read balanced accuracy"
        )
    return messages


def warn_small_data(labels: np.ndarray, class_names: list[str], *, source: str) -> list[str]:
    """Emit :class:`SmallDataWarning` for each :func:`small_data_messages`; return them."""
    messages = small_data_messages(labels, class_names, source=source)
    for message in messages:
        warnings.warn(message, SmallDataWarning, stacklevel=2)
    return messages


def check_compatible(expected: FeatureSpace, actual: FeatureSpace, *, what: str) -> None:
    """Refuse features from another base, of another size, or with other classes.

    Raises
    ------
    HeadError
        Naming which fields differ, e.g. ``base.weights_sha256``.
    """
    problems = []
    keys = diff_keys(expected.base, actual.base, "base.")
    if keys:
        problems.append(f"it comes from another base (differs in: {', '.join(keys)})")
    if expected.dim != actual.dim:
        problems.append(f"its feature size is {actual.dim}, expected {expected.dim}")
    if expected.class_names != actual.class_names:
        problems.append(
            f"its class names are {actual.class_names}, expected {expected.class_names}"
        )
    if problems:
        raise HeadError(
            f"{what} {actual.source} does not match {expected.source}: {'; '.join(problems)}"
        )


def score(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro-F1 and log-loss (None without probabilities).

    ``labels`` are the classes of the columns of ``proba`` (the head's ``classes_``).
    """
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "log_loss": None if proba is None else float(log_loss(y_true, proba, labels=labels)),
    }


def row_losses(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy, clipped as :func:`sklearn.metrics.log_loss` does."""
    column = np.searchsorted(labels, y_true)
    eps = np.finfo(proba.dtype).eps
    return -np.log(np.clip(proba[np.arange(len(y_true)), column], eps, 1 - eps))


def _resamples(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    losses: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of each metric over resampled rows.

    The same ``seed`` draws the same resamples, so replicates of two heads scored on the same
    rows are paired (their differences give intervals for the gap). Labels are class indices
    ``0..n_classes-1``; macro-F1 and balanced accuracy follow scikit-learn's definitions on
    each resample.

    Returns
    -------
    dict
        Metric name → array of ``n_boot`` values (``log_loss`` only when ``losses`` is given).
    """
    cells = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    out: dict[str, list[np.ndarray]] = {m: [] for m in METRICS if m != "log_loss"}
    if losses is not None:
        out["log_loss"] = []
    k2 = n_classes * n_classes
    for idx in _resamples(len(cells), n_boot, seed):
        offsets = np.arange(len(idx))[:, None] * k2
        flat = np.bincount((cells[idx] + offsets).ravel(), minlength=len(idx) * k2)
        cm = flat.reshape(len(idx), n_classes, n_classes).astype(np.float64)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        actual, predicted = cm.sum(axis=2), cm.sum(axis=1)
        out["accuracy"].append(tp.sum(axis=1) / cm.sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(actual > 0, tp / actual, np.nan)
            present = (actual + predicted) > 0
            f1 = np.where(present, 2 * tp / (actual + predicted), np.nan)
        out["balanced_accuracy"].append(np.nanmean(recall, axis=1))
        out["macro_f1"].append(np.nanmean(f1, axis=1))
        if losses is not None:
            out["log_loss"].append(losses[idx].mean(axis=1))
    return {name: np.concatenate(values) for name, values in out.items()}


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class TrainedHead:
    """A fitted head and its metadata (what it was trained on, how, and with what)."""

    estimator: BaseEstimator
    metadata: dict[str, Any]

    @property
    def space(self) -> FeatureSpace:
        """The feature space the head expects."""
        return FeatureSpace(
            self.metadata["cache"]["path"],
            self.metadata["base"],
            self.metadata["class_names"],
            self.metadata["dim"],
        )


def train_head(
    cache: FeatureCache | LabeledData,
    spec: str = "logreg",
    *,
    tune: bool = False,
    out_of_core: bool = False,
    random_state: int = 0,
    n_jobs: int | None = -1,
) -> TrainedHead:
    """Fit one head on a whole cache.

    Parameters
    ----------
    cache : FeatureCache or LabeledData
        Training features; ``out_of_core`` needs an open :class:`FeatureCache`.
    spec : str, default="logreg"
        Head spec, e.g. ``"logreg:C=0.1"``.
    tune : bool, default=False
        Search hyper-parameters first (:func:`heads.tuning.tune_head`).
    out_of_core : bool, default=False
        Stream row blocks from the HDF5 file (:func:`fit_streaming`); logreg/linear-svm only.
    random_state : int, default=0
        Seeds the head and the tuning split.
    n_jobs : int or None, default=-1
        Parallel tuning trials.

    Returns
    -------
    TrainedHead
        The fitted estimator and its metadata.
    """
    make_head(spec)
    start = time.perf_counter()
    tuning = None
    if out_of_core:
        if not isinstance(cache, FeatureCache):
            raise HeadError("out-of-core training streams from a cache file; pass a FeatureCache")
        if tune:
            raise HeadError("--tune needs the features in memory; drop --out-of-core or --tune")
        estimator = fit_streaming(cache, spec, random_state=random_state)
        space, fingerprint, rows = FeatureSpace.of_cache(cache), cache.fingerprint, len(cache)
        messages = small_data_messages(cache.labels, space.class_names, source=space.source)
    else:
        data = cache if isinstance(cache, LabeledData) else LabeledData.from_cache(cache)
        space, fingerprint, rows = data.space, data.fingerprint, len(data)
        check_labels(data.y, space.class_names, source=space.source, min_per_class=2 if tune else 1)
        messages = warn_small_data(data.y, space.class_names, source=space.source)
        params: dict[str, Any] = {}
        if tune:
            tuning = tune_head(spec, data.X, data.y, random_state=random_state, n_jobs=n_jobs)
            params = tuning.best_params
        estimator = set_random_state(make_head(spec, **params), random_state)
        with single_threaded():
            estimator.fit(data.X, data.y)
    meta = {
        "format": HEAD_FORMAT,
        "format_version": HEAD_FORMAT_VERSION,
        "head": spec,
        "params": _json_params(estimator),
        "tuning": None if tuning is None else tuning.to_dict(),
        "out_of_core": out_of_core,
        "cache": {"path": space.source, "fingerprint": fingerprint, "rows": rows},
        "base": space.base,
        "class_names": space.class_names,
        "dim": space.dim,
        "fit_seconds": time.perf_counter() - start,
        "warnings": messages,
        "versions": software_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return TrainedHead(estimator, meta)


def _json_params(estimator: BaseEstimator) -> dict[str, Any]:
    clf = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    return {
        key: value
        for key, value in clf.get_params(deep=False).items()
        if value is None or isinstance(value, (bool, int, float, str))
    }


def save_head(head: TrainedHead, path: str | Path) -> Path:
    """Write a head and its metadata to one skops file (atomically; no pickle)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        skops.io.dump({"head": head.estimator, "meta": json.dumps(head.metadata)}, tmp)
    return path


def _trusted(type_name: str) -> bool:
    return type_name.split(".")[0] in TRUSTED_ROOTS or type_name in TRUSTED_OWN_TYPES


def load_head(path: str | Path) -> TrainedHead:
    """Load a head saved by :func:`save_head`, trusting only allow-listed types.

    Raises
    ------
    HeadError
        If the file is missing, not a skops head file, or holds types outside the allow-list
        (scikit-learn, NumPy, SciPy, :mod:`heads.registry`).
    """
    path = Path(path)
    if not path.is_file():
        raise HeadError(f"head file not found: {path}; train one with `bottleneck train`")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise HeadError(f"{path} is not a skops head file ({exc})") from exc
    refused = sorted(t for t in untrusted if not _trusted(t))
    if refused:
        raise HeadError(
            f"{path} holds types outside the allow-list, refusing to load it: {', '.join(refused)}"
        )
    content = skops.io.load(path, trusted=untrusted)
    meta = json.loads(content.get("meta", "{}")) if isinstance(content, dict) else {}
    if meta.get("format") != HEAD_FORMAT or "head" not in content:
        raise HeadError(f"{path} is a skops file but not a bottleneck head")
    if meta.get("format_version") != HEAD_FORMAT_VERSION:
        raise HeadError(
            f"{path} has head format version {meta.get('format_version')}; this bottleneck "
            f"reads version {HEAD_FORMAT_VERSION}: retrain it with `bottleneck train`"
        )
    return TrainedHead(content["head"], meta)


@dataclass
class Evaluation:
    """Metrics of a head on a labeled cache."""

    head: str
    source: str
    n_rows: int
    metrics: dict[str, float | None]
    intervals: dict[str, tuple[float, float] | None]
    confusion: np.ndarray
    predictions: np.ndarray
    predict_ms_per_1k: float
    class_names: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "head": self.head,
            "cache": self.source,
            "rows": self.n_rows,
            "metrics": self.metrics,
            "intervals_95": {k: list(v) if v else None for k, v in self.intervals.items()},
            "class_names": self.class_names,
            "confusion": self.confusion.tolist(),
            "predict_ms_per_1k": self.predict_ms_per_1k,
        }


def evaluate_head(
    head: TrainedHead | str | Path,
    cache: FeatureCache | LabeledData | str | Path,
    *,
    n_bootstrap: int = 1000,
    random_state: int = 0,
) -> Evaluation:
    """Score a trained head on a labeled cache from the same base, size and classes.

    Raises
    ------
    HeadError
        If the cache comes from another base or feature size, has other classes, or is
        unlabeled.
    """
    head = head if isinstance(head, TrainedHead) else load_head(head)
    data = cache if isinstance(cache, LabeledData) else LabeledData.from_cache(cache)
    check_compatible(head.space, data.space, what="cache")
    check_labels(data.y, data.class_names, source=data.space.source, min_classes=1)
    with single_threaded():
        start = time.perf_counter()
        predictions = head.estimator.predict(data.X)
        seconds = time.perf_counter() - start
        proba = head.estimator.predict_proba(data.X) if has_proba(head.estimator) else None
    classes = head.estimator.classes_
    metrics = score(data.y, predictions, proba, classes)
    losses = None if proba is None else row_losses(data.y, proba, classes)
    replicates = bootstrap(
        data.y,
        predictions,
        len(data.class_names),
        losses,
        n_boot=n_bootstrap,
        seed=random_state,
    )
    intervals = {m: interval(replicates[m]) if m in replicates else None for m in METRICS}
    labels = np.arange(len(data.class_names))
    return Evaluation(
        head=head.metadata["head"],
        source=data.space.source,
        n_rows=len(data),
        metrics=metrics,
        intervals=intervals,
        confusion=confusion_matrix(data.y, predictions, labels=labels),
        predictions=predictions,
        predict_ms_per_1k=seconds / len(data) * 1e6,
        class_names=data.class_names,
    )


def _shuffled_blocks(
    cache: FeatureCache, block_rows: int, blocks_per_batch: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Row blocks read in random order, ``blocks_per_batch`` at a time, rows shuffled.

    Caches are often sorted by class (class-folder sources); mixing blocks from random
    places keeps each SGD step from seeing one class only.
    """
    labels = cache.labels
    dataset = cache.features_dataset
    starts = rng.permutation(np.arange(0, len(cache), block_rows))
    for group in range(0, len(starts), blocks_per_batch):
        chosen = np.sort(starts[group : group + blocks_per_batch])
        X = np.concatenate([dataset[s : s + block_rows] for s in chosen])
        y = np.concatenate([labels[s : s + block_rows] for s in chosen]).astype(np.int64)
        order = rng.permutation(len(y))
        yield X[order], y[order]


def fit_streaming(
    cache: FeatureCache,
    head: str = "logreg",
    *,
    epochs: int = 5,
    block_rows: int = 2048,
    blocks_per_batch: int = 8,
    random_state: int = 0,
) -> Pipeline:
    """Train ``logreg`` or ``linear-svm`` out of core, never holding all features in memory.

    One pass over :meth:`FeatureCache.iter_rows` fits the StandardScaler; then ``epochs``
    passes of averaged SGD (:class:`~sklearn.linear_model.SGDClassifier` with log or hinge
    loss, ``alpha = 1 / (C * n_rows)`` to match the in-memory heads' ``C``) read row blocks
    in random order. Memory is ``block_rows * blocks_per_batch`` rows.

    Parameters
    ----------
    cache : FeatureCache
        An open cache; only its labels are read whole.
    head : str, default="logreg"
        ``"logreg"`` or ``"linear-svm"``, optionally with ``C``, e.g. ``"logreg:C=0.5"``.
    epochs : int, default=5
        Passes over the data.
    block_rows : int, default=2048
        Rows per contiguous read.
    blocks_per_batch : int, default=8
        Blocks mixed into one SGD step.
    random_state : int, default=0
        Seeds the block order and SGD.

    Returns
    -------
    Pipeline
        Fitted ``Pipeline([("scale", StandardScaler), ("clf", SGDClassifier)])``.
    """
    name, params = parse_spec(head)
    if name not in STREAMING_LOSSES:
        raise HeadError(
            f"out-of-core training supports {', '.join(STREAMING_LOSSES)}. Received: head={name!r}"
        )
    extra = sorted(set(params) - {"C"})
    if extra:
        raise HeadError(f"out-of-core {name} takes only C; got {', '.join(extra)}")
    space = FeatureSpace.of_cache(cache)
    labels = cache.labels
    check_labels(labels, space.class_names, source=space.source)
    warn_small_data(labels, space.class_names, source=space.source)
    scaler = StandardScaler()
    for X, _ in cache.iter_rows(block_rows * blocks_per_batch):
        scaler.partial_fit(X)
    clf = SGDClassifier(
        loss=STREAMING_LOSSES[name],
        alpha=1.0 / (float(params.get("C", 1.0)) * len(labels)),
        average=True,
        random_state=random_state,
    )
    classes = np.arange(len(space.class_names))
    rng = np.random.default_rng(random_state)
    for _ in range(epochs):
        for X, y in _shuffled_blocks(cache, block_rows, blocks_per_batch, rng):
            clf.partial_fit(scaler.transform(X), y, classes=classes)
    return Pipeline([("scale", scaler), ("clf", clf)])
