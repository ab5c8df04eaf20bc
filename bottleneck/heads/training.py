"""Fitting, saving, loading and evaluating heads on cached features: the one fit path.

* :class:`LabeledData` holds one cache's features, read once per run.
* :func:`check_data` is the one set of data guards every fit and score goes behind:
  :func:`check_labels` (unlabeled rows, one class, too few rows per class) and the cache
  reader's own check of NaN, Inf or overflowing features (naming the rows) refuse the data
  in one line; small or imbalanced training data emits
  :class:`~bottleneck_transfer.errors.SmallDataWarning`. :func:`check_compatible` refuses
  features from another base, feature size or class list, naming the difference.
* :func:`fit_head` fits one head (tuned or not) on rows of a data set. compare, train,
  export and the pipeline all fit through it; with a
  :class:`~bottleneck_transfer.heads.memo.FitMemo` a fit done before is loaded, not redone.
  Streaming data (``data.chunk_rows`` set) is fitted by
  :func:`~bottleneck_transfer.heads.streaming.fit_streaming_head` on the rows as an index
  set (tuned by streaming too; never calibrated or memoized). A calibrated head
  (:func:`~bottleneck_transfer.heads.registry.calibration_method`) has its calibrator fitted
  on folds of the fitting rows only
  (:func:`~bottleneck_transfer.heads.calibration.calibration_folds`).
* :func:`train_head`, :func:`save_head`, :func:`load_head`, :func:`evaluate_head`.

Memory: a cache whose features exceed the memory budget (:mod:`heads.budget`) is not read
whole: :class:`LabeledData` keeps the HDF5 dataset (``chunk_rows`` set), subsets keep row
indices, and every fit and prediction streams chunks (:mod:`heads.streaming`).

A saved head is one skops file holding ``{"head": estimator, "meta": "<JSON>"}``. It loads
through :func:`~bottleneck_transfer.heads.trust.load_trusted`: only the exact classes its
head kind declares in the registry, never a function.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.display import Display, cell
from bottleneck_transfer.errors import DuplicateImagesWarning, HeadError, SmallDataWarning
from bottleneck_transfer.features.bases.common import items_word
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.format import check_features
from bottleneck_transfer.features.cache.reader import CacheIds
from bottleneck_transfer.features.duplicates import (
    NEAR_SEARCH_MAX_ROWS,
    Duplicates,
    cache_duplicates,
    duplicates_message,
    merge_labels,
    shared_message,
)
from bottleneck_transfer.features.targets import VALUE_KINDS
from bottleneck_transfer.fingerprint import diff_keys, fingerprint, sha256_arrays
from bottleneck_transfer.heads.budget import MemoryPlan, block_rows
from bottleneck_transfer.heads.calibration import calibration_folds
from bottleneck_transfer.heads.memo import FitMemo, code_versions, fit_key
from bottleneck_transfer.heads.metrics import (
    confusion_of,
    per_class_scores,
    scores_of_rows,
)
from bottleneck_transfer.heads.registry import (
    CALIBRATE_KEY,
    CALIBRATION_FOLDS,
    CALIBRATION_HELD_ROWS,
    DEFAULT_HEAD,
    calibration_method,
    classifier,
    fitted_calibration,
    head_kind,
    make_head,
    set_random_state,
    single_threaded,
)
from bottleneck_transfer.heads.rows import RowSubset
from bottleneck_transfer.heads.splits import groups_within
from bottleneck_transfer.heads.stats import holdout_intervals
from bottleneck_transfer.heads.streaming import (
    check_streams,
    fit_scaler,
    fit_streaming_head,
    predict_source,
    score_source,
)
from bottleneck_transfer.heads.trust import load_trusted, skops_io
from bottleneck_transfer.heads.tuning import VAL_FRACTION, TuneResult, tune_head, validation_split
from bottleneck_transfer.quiet import named_by_first_argument
from bottleneck_transfer.versions import software_versions
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

HEAD_FORMAT = "bottleneck-head"
HEAD_FORMAT_VERSION = 1
SMALL_CLASS_ROWS = 20
#: How a fit's note starts when its solver stopped at its iteration bound.
NOT_CONVERGED = "not converged:"
#: Classes are called imbalanced from this ratio of the largest to the smallest class: at
#: 3:1 (two classes) a constant guess of the larger already scores 0.75 accuracy, so
#: accuracy differences mostly reflect the large class; read balanced accuracy.
IMBALANCE_RATIO = 3.0


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

    @property
    def unit(self) -> str:
        """What the rows are in messages: ``"texts"`` for a text base's features, else
        ``"images"``."""
        return items_word(self.base)


@dataclass
class LabeledData:
    """Features and labels of one cache (or of arrays), held in memory.

    ``y`` holds class indices into ``class_names``; -1 marks unlabeled rows. ``linked``:
    each row's group label, shared by images every split keeps together (copies of one
    picture, groups a manifest declares; see :mod:`heads.splits`); None when there are none.
    ``duplicates``: the copies found in the cache (:func:`features.duplicates.cache_duplicates`).
    ``chunk_rows``: None when ``X`` is in memory; else ``X`` is the cache's HDF5 dataset (or
    a :class:`~heads.rows.RowSubset` of it) and every head streams chunks of this many
    rows.
    """

    X: np.ndarray
    y: np.ndarray
    ids: Sequence[str]  # a list, or CacheIds read from the file when streaming
    space: FeatureSpace
    fingerprint: str = ""
    source_rows: np.ndarray | None = None
    linked: np.ndarray | None = None
    duplicates: Duplicates | None = field(default=None, repr=False)
    chunk_rows: int | None = None

    @classmethod
    def from_cache(
        cls,
        cache: FeatureCache | str | Path,
        plan: MemoryPlan | None = None,
        *,
        copies: bool = True,
    ) -> LabeledData:
        """Read a cache's features, labels and ids once; with a streaming ``plan`` keep the
        features in the file (no copy search then; declared groups still bind the splits).
        Above :data:`~features.duplicates.NEAR_SEARCH_MAX_ROWS` rows only exact copies are
        searched (the near-copy search compares every pair of rows: quadratic time).
        ``copies=False``: no copy search either (for a fit that splits nothing and warns of
        nothing: ``train`` without ``--tune``)."""
        if not isinstance(cache, FeatureCache):
            with FeatureCache.open(cache) as opened:
                return cls.from_cache(opened, plan, copies=copies)
        refuse_value_target(cache)
        streaming = plan is not None and plan.streaming
        X = cache.features_dataset if streaming else cache.features
        if streaming or not copies:
            duplicates, declared = None, cache.groups
            linked = None if declared is None else merge_labels([g or None for g in declared])
        else:
            near = len(X) <= NEAR_SEARCH_MAX_ROWS
            duplicates, linked = cache_duplicates(cache, X, near=near)
        return cls(
            X=X,
            y=cache.labels.astype(np.int64),
            ids=cache.lazy_ids if streaming else cache.ids,
            space=FeatureSpace.of_cache(cache),
            fingerprint=cache.fingerprint,
            source_rows=cache.source_rows if cache.has_views else None,
            linked=linked,
            duplicates=duplicates,
            chunk_rows=plan.chunk_rows if streaming else None,
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

    def __repr__(self) -> str:
        return f"LabeledData({self.space.source!r}, rows={len(self)}, dim={self.space.dim})"

    @property
    def key(self) -> str:
        """What identifies the data in memo keys: the cache's fingerprint, else a hash of it."""
        return self.fingerprint or sha256_arrays([self.X, self.y])

    @property
    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names[i]``."""
        return self.space.class_names

    @property
    def has_views(self) -> bool:
        """Whether some rows are augmented views (``extract --augment --views K``)."""
        return self.source_rows is not None

    @property
    def groups(self) -> np.ndarray:
        """int64 (N,): the group of each row, its plain row (a plain row's own index), so
        every split keeps all views of one image on one side."""
        if self.source_rows is None:
            return np.arange(len(self), dtype=np.int64)
        return self.source_rows

    @property
    def plain(self) -> np.ndarray:
        """bool (N,): rows that are not augmented views (the only rows ever scored)."""
        return self.groups == np.arange(len(self))

    def take(self, rows: np.ndarray, *, copy: bool = True) -> LabeledData:
        """The rows ``rows``, with a fingerprint naming them (memo keys); views keep their
        image, so ``rows`` must hold the plain row of every view it holds (as every split of
        :mod:`heads.splits` does).

        ``copy=False`` keeps the features as row indices into these
        (:class:`~heads.streaming.RowSubset`, as streaming data always does): for rows that
        are only predicted on, a block at a time (:func:`predict_rows`), never fitted."""
        rows = np.asarray(rows, dtype=np.int64)
        source_rows = groups_within(self.groups, rows) if self.has_views else None
        if source_rows is not None and np.array_equal(source_rows, np.arange(len(rows))):
            source_rows = None
        return LabeledData(
            X=self.X[rows] if copy and self.chunk_rows is None else RowSubset(self.X, rows),
            y=self.y[rows],
            ids=take_ids(self.ids, rows),
            space=self.space,
            fingerprint=fingerprint({"rows of": self.key, "rows": sha256_arrays([rows])}),
            source_rows=source_rows,
            linked=None if self.linked is None else self.linked[rows],
            chunk_rows=self.chunk_rows,
        )


def take_ids(ids: Sequence[str], rows: np.ndarray) -> Sequence[str]:
    """The ids of ``rows``: still unread for ids left in the file (:class:`CacheIds`)."""
    return ids.take(rows) if isinstance(ids, CacheIds) else [ids[i] for i in rows]


#: What every head function takes as data: an open cache, a cache path, LabeledData, or
#: arrays ``(X, y)`` / ``(X, y, class_names)``.
DataInput = FeatureCache | LabeledData | str | Path | tuple


def refuse_value_target(cache: FeatureCache) -> None:
    """Refuse a multi-label or regression cache where heads need classes.

    Raises
    ------
    HeadError
        Naming the cache and its target, and the commands that take it.
    """
    if cache.target.kind in VALUE_KINDS:
        raise HeadError(
            f"{cache.path} has a {cache.target.kind} target, not classes: `compare` and "
            "`export` take it (heads.target_compare); train, evaluate and the class "
            "comparison take class and binary targets"
        )


def as_data(
    value: DataInput, *, what: str = "data", plan: MemoryPlan | None = None, copies: bool = True
) -> LabeledData:
    """The one coercion of a head function's data argument to :class:`LabeledData`.

    Parameters
    ----------
    value : FeatureCache, str, Path, LabeledData or tuple
        An open cache or a cache path (read once), LabeledData as is, or in-memory arrays
        ``(X, y)`` or ``(X, y, class_names)`` (class names default to ``"0".."K-1"``).
    what : str, default="data"
        The argument's name, for the error.
    plan : MemoryPlan, optional
        A cache's path under the memory budget (:func:`memory_plan`): read whole, or left
        in the file (which stays open while the returned data refers to its features).
    copies : bool, default=True
        Search a cache's copies (:meth:`LabeledData.from_cache`).

    Raises
    ------
    HeadError
        For any other type, saying what is accepted.

    Examples
    --------
    >>> as_data((np.eye(4), [0, 1, 0, 1])).class_names
    ['0', '1']
    """
    if isinstance(value, LabeledData):
        return value
    if isinstance(value, (FeatureCache, str, Path)):
        if plan is not None and plan.streaming and not isinstance(value, FeatureCache):
            return LabeledData.from_cache(FeatureCache.open(value), plan, copies=copies)
        return LabeledData.from_cache(value, plan, copies=copies)
    if isinstance(value, tuple) and len(value) in (2, 3):
        X, y, *names = value
        return LabeledData.from_arrays(X, y, class_names=names[0] if names else None)
    raise HeadError(
        f"{what} must be a FeatureCache, a cache path, LabeledData, or arrays (X, y) or "
        f"(X, y, class_names). Received: {what}={cell(value, 60)} ({type(value).__name__})"
    )


def memory_plan(
    data: DataInput, budget: str | int | None = None, *, force: bool = False
) -> MemoryPlan:
    """The path a cache takes under ``budget`` (:class:`~heads.budget.MemoryPlan`): data
    already in memory stays there; ``force`` streams a cache whatever its size."""
    if isinstance(data, tuple):
        data = as_data(data)
    if isinstance(data, LabeledData):
        if force:
            raise HeadError("streaming reads a cache file; pass a FeatureCache or a path")
        plan = MemoryPlan.choose(len(data), data.space.dim, budget)
        plan.path = "in-memory"
        return plan
    if not isinstance(data, FeatureCache):
        with FeatureCache.open(data) as opened:
            return memory_plan(opened, budget, force=force)
    return MemoryPlan.choose(len(data), data.dim, budget, force=force)


def predict_rows(
    head: BaseEstimator, data: LabeledData, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(predictions, probabilities or None)`` of a fitted head on ``rows`` of ``data``
    (default: all), a block of rows at a time (:func:`~heads.budget.block_rows` in memory):
    neither the rows nor their scaled copy are ever held whole
    (:func:`~bottleneck_transfer.heads.streaming.predict_source`)."""
    source = data.X if rows is None else RowSubset(data.X, rows)
    return predict_source(head, source, data.chunk_rows or block_rows(data.space.dim))


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
    if counts[largest] >= IMBALANCE_RATIO * counts[smallest]:
        ratio = counts[largest] / counts[smallest]
        share = counts[largest] / counts[present].sum()
        messages.append(
            f"{source}: classes are imbalanced {ratio:.1f}:1 ({class_names[largest]!r} has "
            f"{counts[largest]} rows, {class_names[smallest]!r} {counts[smallest]}; warned "
            f"from {IMBALANCE_RATIO:g}:1): always guessing {class_names[largest]!r} scores "
            f"accuracy {share:.3f}, so accuracy favours the majority class; read balanced "
            "accuracy"
        )
    return messages


def warn_small_data(labels: np.ndarray, class_names: list[str], *, source: str) -> list[str]:
    """Emit :class:`SmallDataWarning` for each :func:`small_data_messages`; return them."""
    messages = small_data_messages(labels, class_names, source=source)
    for message in messages:
        warnings.warn(message, SmallDataWarning, stacklevel=2)
    return messages


def check_data(data: LabeledData, *, min_per_class: int = 1, min_classes: int = 2) -> list[str]:
    """The one set of data guards heads are fitted (``min_classes=2``) or scored (1) behind.

    Refuses unusable labels (:func:`check_labels`) and features that hold NaN, Inf or
    overflowing values (:func:`~bottleneck_transfer.features.cache.check_features`, naming
    the rows); for training data, warns of small or imbalanced classes and returns those
    messages.

    Raises
    ------
    HeadError
        For unusable labels, naming the data and what to do.
    CacheError
        For unusable features, naming the rows.
    """
    source = data.space.source
    labels = data.y[data.plain] if data.has_views else data.y  # count images, not views
    check_labels(
        labels,
        data.class_names,
        source=source,
        min_per_class=min_per_class,
        min_classes=min_classes,
    )
    check_features(data.X, data.ids, source)
    if min_classes < 2:
        return []
    return warn_small_data(labels, data.class_names, source=source)


def warn_duplicates(data: LabeledData, test: LabeledData | None = None) -> list[str]:
    """Emit a :class:`DuplicateImagesWarning` counting the copies in ``data``, and the
    ``test`` images with a copy in ``data``; return the messages.

    Checked where a cache is loaded (``data.duplicates`` set), not again for its subsets.
    """
    found = data.duplicates
    if found is None:
        return []
    unit = data.space.unit
    messages = [duplicates_message(found, data.ids, data.space.source, unit)]
    if test is not None:
        sources = (test.space.source, data.space.source)
        pairs = (test.ids, data.ids)
        messages.append(shared_message(test.X, data.X, pairs, sources, unit=unit))
    messages = [m for m in messages if m is not None]
    for message in messages:
        warnings.warn(message, DuplicateImagesWarning, stacklevel=2)
    return messages


def check_scorable(data: LabeledData) -> None:
    """Refuse to score on augmented views: test rows are never augmented.

    Raises
    ------
    HeadError
        If ``data`` holds view rows (``extract --augment --views K``), naming it.
    """
    if data.has_views:
        raise HeadError(
            f"{data.space.source} holds augmented views (extract --augment --views): test rows "
            "are never augmented; extract the test images without --augment"
        )


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


@dataclass(repr=False)
class TrainedHead(Display):
    """A fitted head and its metadata (what it was trained on, how, and with what)."""

    estimator: BaseEstimator
    metadata: dict[str, Any]

    def _display_summary(self) -> dict[str, Any]:
        meta = self.metadata
        tuning = meta.get("tuning")
        return {
            "head": meta["head"],
            "trained on": f"{meta['cache']['path']} ({meta['cache']['rows']} rows, "
            f"{meta['dim']} features)",
            "classes": f"{len(meta['class_names'])}: {', '.join(meta['class_names'])}",
            "fit_seconds": meta.get("fit_seconds"),
            "reused": meta.get("reused"),
            "tuned": None
            if not tuning
            else f"{tuning['best_params']} (validation {tuning['metric']} "
            f"{cell(tuning['best_validation_score'])}, a selection score)",
            "warnings": "; ".join(meta.get("warnings") or []) or None,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per parameter of the fitted classifier."""
        return [
            {"parameter": key, "value": value}
            for key, value in self.metadata.get("params", {}).items()
        ]

    def _display_plot(self, ax: Any) -> None:
        """The tuning trials' validation scores when tuned, else the summary as text."""
        tuning = self.metadata.get("tuning")
        if not tuning:
            super()._display_plot(ax)
            return
        scores = [trial["validation_score"] for trial in tuning["trials"]]
        ax.plot(range(1, len(scores) + 1), scores, marker="o")
        ax.set_xlabel("tuning trial")
        ax.set_ylabel(f"validation {tuning['metric']}")

    @property
    def space(self) -> FeatureSpace:
        """The feature space the head expects."""
        return FeatureSpace(
            self.metadata["cache"]["path"],
            self.metadata["base"],
            self.metadata["class_names"],
            self.metadata["dim"],
        )


@dataclass
class Fit:
    """One head fitted by :func:`fit_head`, or found in the memo where it was fitted before.

    ``tuning`` indexes rows of the data given to :func:`fit_head`; ``seconds`` and ``notes``
    (convergence warnings, approximations) are those of the fit itself, also when reused.
    A reused head is loaded from the memo when :attr:`estimator` is first read.
    """

    spec: str
    params: dict[str, Any]
    tuning: TuneResult | None
    seconds: float
    notes: list[str]
    key: str
    reused: bool = False
    fitted: Pipeline | None = field(default=None, repr=False)
    memo: FitMemo | None = field(default=None, repr=False)

    @property
    def estimator(self) -> Pipeline:
        """The fitted head."""
        if self.fitted is None:
            self.fitted = self.memo.load_head(self.key, self.spec)
        return self.fitted


@named_by_first_argument
def fit_head(
    spec: str,
    data: LabeledData,
    rows: np.ndarray | None = None,
    *,
    tune: bool = False,
    random_state: int = 0,
    n_jobs: int | None = -1,
    memo: FitMemo | None = None,
    metric: str = "accuracy",
    scale_in_place: bool = False,
    calibrate: bool = True,
) -> Fit:
    """Fit one head on ``rows`` of ``data``: the fit of compare, train, export and the pipeline.

    The data is guarded once by its user (:func:`check_data`), not here per fit. Streaming
    data and calibration: see the module docstring.

    Parameters
    ----------
    spec : str
        Head spec, e.g. ``"logreg:C=0.1"``.
    data : LabeledData
        The data set the rows index.
    rows : ndarray, optional
        Rows to fit on (default: all).
    tune : bool, default=False
        Search hyper-parameters first, on a validation split of these rows only (of the
        estimator, before calibration).
    random_state : int, default=0
        Seeds the head, the tuning split and the calibration folds.
    n_jobs : int or None, default=-1
        Parallel tuning trials.
    memo : FitMemo, optional
        Where fits are stored by key (data, rows, spec with all parameters, tuning, seed):
        a fit stored before is loaded instead of fitted.
    metric : str, default="accuracy"
        The declared metric tuning decides by.
    scale_in_place : bool, default=False
        Let the scaling step overwrite ``data.X`` when fitting on every row (the caller
        no longer needs the raw features: no second copy of them). A subset of rows is a
        fresh copy and is always scaled in place (:func:`scale_rows`).
    calibrate : bool, default=True
        False fits the estimator without its calibration (:func:`~.registry.make_head`);
        a choice does where the calibration cannot change its score.

    Returns
    -------
    Fit
    """
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    if data.chunk_rows is not None:
        return _fit_streaming(spec, data, rows, tune=tune, random_state=random_state, metric=metric)
    head = set_random_state(make_head(spec, calibrate=calibrate), random_state)
    key = _memo_key(spec, head, data, rows, random_state, tuned_by=metric if tune else None)
    every_row = len(rows) == len(data) and np.array_equal(rows, np.arange(len(data)))
    X, y = (data.X, data.y) if every_row else (data.X[rows], data.y[rows])
    grouping = _grouping(data, rows)
    meta = None if memo is None else memo.load_meta(key)
    if meta is not None:
        return _stored_fit(spec, meta, key, memo, y, rows, random_state, grouping)
    tuning = None
    if tune:
        tuning = tune_head(
            spec, X, y, random_state=random_state, n_jobs=n_jobs, metric=metric, **grouping
        )
        head = set_random_state(
            make_head(spec, calibrate=calibrate, **tuning.best_params), random_state
        )
    if calibrate and calibration_method(spec) is not None:
        _calibrate_on_folds(head, spec, y, groups_within(data.groups, rows), random_state)
    _check_neighbours(head, spec, len(rows))
    # X is not the caller's when it is a subset (a copy): the scaling may overwrite it
    seconds, notes = _fit_pipeline(head, X, y, in_place=scale_in_place or not every_row)
    if tuning is not None:
        _index_tuning(tuning, rows)
    fit = Fit(spec, _json_params(head), tuning, seconds, notes, key, fitted=head)
    if memo is not None:
        _store_fit(memo, fit)
    return fit


def _memo_key(
    spec: str,
    head: Pipeline,
    data: LabeledData,
    rows: np.ndarray,
    random_state: int,
    *,
    tuned_by: str | None,
) -> str:
    """The memo key of a fit (:func:`~.memo.fit_key`): data, rows, head kind and parameters,
    tuning (by the metric ``tuned_by``, None untuned), seed and the code of the head's steps."""
    tune_settings = (
        {"val_fraction": VAL_FRACTION, "metric": tuned_by} if tuned_by is not None else None
    )
    code = code_versions([*(step for _, step in head.steps), classifier(head)])
    params = _json_params(head)
    return fit_key(data.key, rows, head_kind(spec).name, params, tune_settings, random_state, code)


def _index_tuning(tuning: TuneResult, rows: np.ndarray) -> None:
    """Make a tuning's split index the data set's rows instead of the fitting ``rows``."""
    tuning.train_indices, tuning.val_indices = (
        rows[tuning.train_indices],
        rows[tuning.val_indices],
    )


def _grouping(data: LabeledData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The view groups and linked rows of ``rows`` that a validation split keeps together."""
    grouping = {"groups": groups_within(data.groups, rows)} if data.has_views else {}
    if data.linked is not None:
        grouping["linked"] = data.linked[rows]
    return grouping


def _stored_fit(
    spec: str,
    meta: dict[str, Any],
    key: str,
    memo: FitMemo,
    y: np.ndarray,
    rows: np.ndarray,
    random_state: int,
    grouping: dict[str, np.ndarray],
) -> Fit:
    """A fit found in the memo (its head loaded when first read), its tuning split redone."""
    tuning = None
    if meta["tuning"] is not None:
        train_rows, val_rows = validation_split(y, VAL_FRACTION, random_state, **grouping)
        tuning = TuneResult.from_dict(meta["tuning"], rows[train_rows], rows[val_rows])
    return Fit(spec, meta["params"], tuning, meta["seconds"], meta["notes"], key, True, memo=memo)


def _calibrate_on_folds(
    head: Pipeline, spec: str, y: np.ndarray, groups: np.ndarray | None, random_state: int
) -> None:
    """Set a calibrated head's calibration folds, drawn from its fitting rows only.

    Raises
    ------
    HeadError
        When the rows cannot give the folds, naming how to turn calibration off.
    """
    try:
        folds = calibration_folds(
            y, groups, CALIBRATION_FOLDS, random_state, held_rows=CALIBRATION_HELD_ROWS
        )
    except ValueError as exc:
        raise HeadError(
            f"{spec!r} cannot be calibrated on these rows: {exc}; give more rows or "
            f"turn calibration off ({head_kind(spec).name}:calibrate=false, --no-calibrate)"
        ) from exc
    head.set_params(clf__cv=folds)


def _check_neighbours(head: Pipeline, spec: str, n_rows: int) -> None:
    """Refuse a neighbours head asking for more neighbours than there are fitting rows."""
    neighbours = getattr(classifier(head), "n_neighbors", None)
    if neighbours is not None and neighbours > n_rows:
        raise HeadError(
            f"{spec!r} looks for {neighbours} neighbours among {n_rows} training rows; "
            f"give more rows or fewer neighbours (e.g. knn:n_neighbors={n_rows}). Received: "
            f"rows={n_rows}"
        )


def _fit_pipeline(
    head: Pipeline, X: np.ndarray, y: np.ndarray, *, in_place: bool
) -> tuple[float, list[str]]:
    """Fit ``head`` single-threaded: its seconds and notes (convergence, approximation).

    Convergence warnings become notes; the other warnings go on to the caller's filters
    (the CLI's summary).
    """
    with single_threaded(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        scaled = scale_rows(head.steps[0][1], X, in_place=in_place)
        head[1:].fit(scaled, y)  # the pipeline's own steps, fitted in place
        del scaled
        seconds = time.perf_counter() - start
    notes = sorted(
        {_not_converged(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)}
    )
    for other in caught:
        if not issubclass(other.category, ConvergenceWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    approximation = getattr(classifier(head), "approximation_", None)
    if approximation:
        notes.append(approximation)
    return seconds, notes


def _store_fit(memo: FitMemo, fit: Fit) -> None:
    """Store a fresh fit in the memo under its key."""
    memo.save_head(
        fit.key,
        fit.fitted,
        {
            "head": fit.spec,
            "params": fit.params,
            "tuning": None if fit.tuning is None else fit.tuning.to_dict(),
            "seconds": fit.seconds,
            "notes": fit.notes,
        },
    )


def scale_rows(scaler: Any, X: np.ndarray, *, in_place: bool) -> np.ndarray:
    """Fit a head's scaling step on ``X`` and return ``X`` scaled, a block of rows at a time.

    The statistics come from one pass of ``partial_fit`` over blocks
    (:func:`~bottleneck_transfer.heads.streaming.fit_scaler`; scikit-learn's ``fit`` of a
    :class:`~sklearn.preprocessing.StandardScaler` makes a float64 temporary of the whole
    array, twice the float32 features), then each block is scaled into ``X`` itself
    (``in_place``) or into one new array: no full-size temporary either way.
    """
    rows = block_rows(X.shape[1])
    fit_scaler(scaler, X, rows)
    out = X if in_place else np.empty(X.shape, np.result_type(X.dtype, np.float32))
    for start in range(0, len(X), rows):
        out[start : start + rows] = scaler.transform(X[start : start + rows])
    return out


def _fit_streaming(
    spec: str, data: LabeledData, rows: np.ndarray, *, tune: bool, random_state: int, metric: str
) -> Fit:
    """:func:`fit_head` on streaming data: the rows stay indices into the file; tuning
    streams too (:func:`~heads.tuning.tune_head` with ``chunk_rows``)."""
    every_row = len(rows) == len(data) and np.array_equal(rows, np.arange(len(data)))
    source = data.X if every_row else RowSubset(data.X, rows)
    y = data.y[rows]
    notes = []
    if calibration_method(spec) is not None:
        notes.append(f"{spec}: streamed, so not calibrated (its outputs are scores)")
    tuning = None
    if tune:
        grouping = _grouping(data, rows)
        tuning = tune_head(
            spec,
            source,
            y,
            random_state=random_state,
            metric=metric,
            chunk_rows=data.chunk_rows,
            **grouping,
        )
        _index_tuning(tuning, rows)
    best = {} if tuning is None else tuning.best_params
    with single_threaded():
        start = time.perf_counter()
        head = fit_streaming_head(
            spec, source, y, chunk_rows=data.chunk_rows, random_state=random_state, **best
        )
        seconds = time.perf_counter() - start
    key = fingerprint(
        {"streamed": spec, "data": data.key, "rows": sha256_arrays([rows]), "tuned": best}
    )
    return Fit(spec, _json_params(head), tuning, seconds, notes, key, fitted=head)


def _not_converged(message: Warning | str) -> str:
    """One line for a :class:`ConvergenceWarning`: its first line after :data:`NOT_CONVERGED`."""
    first = str(message).strip().splitlines()[0].rstrip(":")
    return f"{NOT_CONVERGED} {first}"


def train_head(
    cache: DataInput,
    spec: str = DEFAULT_HEAD,
    *,
    tune: bool = False,
    out_of_core: bool = False,
    memory_budget: str | int | None = None,
    random_state: int = 0,
    n_jobs: int | None = -1,
    memo: FitMemo | None = None,
    metric: str = "accuracy",
) -> TrainedHead:
    """Fit one head on a whole cache.

    Parameters
    ----------
    cache : FeatureCache, path, LabeledData or arrays (X, y)
        Training features (:func:`as_data`); streaming needs a cache or a path.
    spec : str, default=DEFAULT_HEAD ("logreg")
        Head spec, e.g. ``"logreg:C=0.5"``.
    tune : bool, default=False
        Search hyper-parameters first (:func:`heads.tuning.tune_head`; streaming too).
    out_of_core : bool, default=False
        Stream the cache whatever its size (:mod:`heads.streaming`).
    memory_budget : str or int, optional
        Above it the cache streams (:func:`heads.budget.parse_budget`: ``"8G"``, ``"40%"``;
        default :data:`~heads.budget.DEFAULT_SHARE` of the machine's memory).
    random_state : int, default=0
        Seeds the head and the tuning split.
    n_jobs : int or None, default=-1
        Parallel tuning trials.
    memo : FitMemo, optional
        Reuse (and store) the fit by key, as :func:`fit_head` does.
    metric : str, default="accuracy"
        The declared metric tuning decides by.

    Returns
    -------
    TrainedHead
        The fitted estimator and its metadata (``reused`` says whether the memo had it;
        ``memory``: the path taken, :meth:`~heads.budget.MemoryPlan.to_dict`).

    Examples
    --------
    >>> trained = train_head("caches/train.h5", "logreg:C=0.5")  # doctest: +SKIP
    >>> save_head(trained, "heads/logreg.skops")  # doctest: +SKIP
    """
    make_head(spec)
    start = time.perf_counter()
    plan = memory_plan(cache, memory_budget, force=out_of_core)
    if plan.streaming:
        _check_streamable(spec, plan)
    # Copies only matter to a split: without tuning, the fit splits nothing (calibration
    # folds follow augmented views only) and train reports no copies.
    data = as_data(cache, what="cache", plan=plan, copies=tune)
    messages = check_data(data, min_per_class=2 if tune else 1)
    fit = fit_head(
        spec,
        data,
        tune=tune,
        random_state=random_state,
        n_jobs=n_jobs,
        memo=memo,
        metric=metric,
        # Only data read here is scaled in place: never the arrays of an open cache or the caller.
        scale_in_place=isinstance(cache, (str, Path)),
    )
    estimator, tuning = fit.estimator, fit.tuning
    seconds = time.perf_counter() - start if plan.streaming else fit.seconds
    seconds += tuning.seconds if tuning is not None and not plan.streaming else 0.0
    return TrainedHead(estimator, _head_meta(fit, data, plan, seconds, messages))


def _check_streamable(spec: str, plan: MemoryPlan) -> None:
    """Refuse a head that cannot be trained on a cache streamed over the memory budget."""
    check_streams(spec, _over_budget(plan))
    if head_kind(spec).streaming == "knn":
        raise HeadError(
            f"a saved knn head holds every training row, and these exceed the memory "
            f"budget ({_over_budget(plan)}): train logreg, linear-svm, dense or "
            "nystroem, or raise --memory-budget"
        )


def _head_meta(
    fit: Fit, data: LabeledData, plan: MemoryPlan, seconds: float, messages: list[str]
) -> dict[str, Any]:
    """A trained head's metadata: the fit, the cache it came from and the run."""
    space, tuning = data.space, fit.tuning
    return {
        "format": HEAD_FORMAT,
        "format_version": HEAD_FORMAT_VERSION,
        "head": fit.spec,
        "params": _json_params(fit.estimator),
        "tuning": None if tuning is None else tuning.to_dict(),
        "out_of_core": plan.streaming,
        "memory": plan.measure().to_dict(),
        "reused": fit.reused,
        "cache": {"path": space.source, "fingerprint": data.fingerprint, "rows": len(data)},
        "base": space.base,
        "class_names": space.class_names,
        "dim": space.dim,
        "fit_seconds": seconds,
        "warnings": messages + (fit.notes if plan.streaming else []),
        "versions": software_versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _over_budget(plan: MemoryPlan) -> str:
    """Why a plan streams, for refusals."""
    return "--out-of-core was given" if plan.forced else "the features exceed the memory budget"


def _json_params(estimator: BaseEstimator) -> dict[str, Any]:
    """The classifier's parameters as JSON values (others by their ``repr``), and
    ``calibrate``: the calibration method, or False."""
    params = {
        key: value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
        for key, value in classifier(estimator).get_params(deep=False).items()
    }
    params[CALIBRATE_KEY] = fitted_calibration(estimator) or False
    return params


def save_head(head: TrainedHead, path: str | Path) -> Path:
    """Write a head and its metadata to one skops file (atomically; no pickle)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        skops_io().dump({"head": head.estimator, "meta": json.dumps(head.metadata)}, tmp)
    return path


def load_head(path: str | Path) -> TrainedHead:
    """Load a head saved by :func:`save_head`, trusting only its kind's declared classes.

    Raises
    ------
    HeadError
        If the file is missing, not a skops head file, or holds a type its head kind does not
        declare in the registry (naming it; nothing is loaded then).
    """
    path = Path(path)
    content = load_trusted(path)
    meta = json.loads(content.get("meta", "{}")) if isinstance(content, dict) else {}
    if meta.get("format") != HEAD_FORMAT or "head" not in content:
        raise HeadError(f"{path} is a skops file but not a bottleneck head")
    if meta.get("format_version") != HEAD_FORMAT_VERSION:
        raise HeadError(
            f"{path} has head format version {meta.get('format_version')}; this bottleneck "
            f"reads version {HEAD_FORMAT_VERSION}: retrain it with `bottleneck train`"
        )
    return TrainedHead(content["head"], meta)


@dataclass(repr=False)
class Evaluation(Display):
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
    memory: dict | None = None

    def _display_summary(self) -> dict[str, Any]:
        intervals = {k: v for k, v in self.intervals.items() if v is not None}
        return {
            "head": self.head,
            "scored on": f"{self.source} ({self.n_rows} rows)",
            **{
                key: f"{cell(value)} {cell(intervals.get(key))}".strip()
                for key, value in self.metrics.items()
                if value is not None
            },
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """Precision, recall, F1 and support of each class."""
        return per_class_scores(self.confusion, self.class_names)

    def _display_plot(self, ax: Any) -> None:
        """The confusion matrix (rows: true class, columns: predicted)."""
        ax.imshow(self.confusion, cmap="Blues")
        ticks = range(len(self.class_names))
        ax.set_xticks(list(ticks), self.class_names, rotation=90)
        ax.set_yticks(list(ticks), self.class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")

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
            "memory": self.memory,
        }


def evaluate_head(
    head: TrainedHead | str | Path,
    cache: DataInput,
    *,
    n_bootstrap: int = 1000,
    random_state: int = 0,
    memory_budget: str | int | None = None,
    out_of_core: bool = False,
) -> Evaluation:
    """Score a trained head on a labeled cache from the same base, size and classes.

    ``cache`` is anything :func:`as_data` takes: an open cache, a path, or arrays (X, y).
    The head predicts a chunk of rows at a time; a cache over ``memory_budget``
    (:class:`~heads.budget.MemoryPlan`) is read a chunk at a time too (``Evaluation.memory``
    says which path ran).

    Raises
    ------
    HeadError
        If the cache comes from another base or feature size, has other classes, or is
        unlabeled.

    Examples
    --------
    >>> evaluation = evaluate_head("heads/logreg.skops", "caches/fm-test.h5")
    >>> round(evaluation.metrics["accuracy"], 3)  # doctest: +SKIP
    0.92
    """
    head = head if isinstance(head, TrainedHead) else load_head(head)
    plan = memory_plan(cache, memory_budget, force=out_of_core)
    data = as_data(cache, what="cache", plan=plan)
    check_compatible(head.space, data.space, what="cache")
    check_scorable(data)
    check_data(data, min_classes=1)
    with single_threaded():
        start = time.perf_counter()
        predictions, losses, top_hits = score_source(
            head.estimator, data.X, data.y, data.chunk_rows or block_rows(data.space.dim)
        )
        seconds = time.perf_counter() - start
    confusion = confusion_of(data.y, predictions, len(data.class_names))
    metrics = scores_of_rows(confusion, losses, top_hits)
    intervals, _ = holdout_intervals(
        data.y,
        predictions,
        len(data.class_names),
        losses,
        n_boot=n_bootstrap,
        seed=random_state,
    )
    return Evaluation(
        head=head.metadata["head"],
        source=data.space.source,
        n_rows=len(data),
        metrics=metrics,
        intervals=intervals,
        confusion=confusion,
        predictions=predictions,
        predict_ms_per_1k=seconds / len(data) * 1e6,
        class_names=data.class_names,
        memory=plan.measure().to_dict(),
    )
