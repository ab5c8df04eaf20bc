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
* :func:`train_head`, :func:`save_head`, :func:`load_head`, :func:`evaluate_head`, and
  :func:`fit_streaming` for caches larger than memory.

A saved head is one skops file holding ``{"head": estimator, "meta": "<JSON>"}``. It loads
through :func:`~bottleneck_transfer.heads.trust.load_trusted`: only the exact classes its
head kind declares in the registry, never a function.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.errors import DuplicateImagesWarning, HeadError, SmallDataWarning
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.format import check_features
from bottleneck_transfer.features.duplicates import (
    Duplicates,
    cache_duplicates,
    duplicates_message,
    shared_message,
)
from bottleneck_transfer.fingerprint import diff_keys, fingerprint, sha256_arrays
from bottleneck_transfer.heads.calibration import calibration_folds
from bottleneck_transfer.heads.memo import FitMemo, code_versions, fit_key
from bottleneck_transfer.heads.metrics import row_losses, score
from bottleneck_transfer.heads.registry import (
    CALIBRATE_KEY,
    CALIBRATION_FOLDS,
    DEFAULT_HEAD,
    calibration_method,
    classifier,
    fitted_calibration,
    has_proba,
    head_kind,
    head_names,
    make_head,
    parse_spec,
    set_random_state,
    single_threaded,
)
from bottleneck_transfer.heads.splits import groups_within
from bottleneck_transfer.heads.stats import holdout_intervals
from bottleneck_transfer.heads.trust import load_trusted
from bottleneck_transfer.heads.tuning import VAL_FRACTION, TuneResult, tune_head, validation_split
from bottleneck_transfer.versions import software_versions
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import confusion_matrix
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


@dataclass
class LabeledData:
    """Features and labels of one cache (or of arrays), held in memory.

    ``y`` holds class indices into ``class_names``; -1 marks unlabeled rows. ``linked``:
    each row's group label, shared by images every split keeps together (copies of one
    picture, groups a manifest declares; see :mod:`heads.splits`); None when there are none.
    ``duplicates``: the copies found in the cache (:func:`features.duplicates.cache_duplicates`).
    """

    X: np.ndarray
    y: np.ndarray
    ids: list[str]
    space: FeatureSpace
    fingerprint: str = ""
    source_rows: np.ndarray | None = None
    linked: np.ndarray | None = None
    duplicates: Duplicates | None = field(default=None, repr=False)

    @classmethod
    def from_cache(cls, cache: FeatureCache | str | Path) -> LabeledData:
        """Read a cache's features, labels and ids once."""
        if not isinstance(cache, FeatureCache):
            with FeatureCache.open(cache) as opened:
                return cls.from_cache(opened)
        X = cache.features
        duplicates, linked = cache_duplicates(cache, X)
        return cls(
            X=X,
            y=cache.labels.astype(np.int64),
            ids=cache.ids,
            space=FeatureSpace.of_cache(cache),
            fingerprint=cache.fingerprint,
            source_rows=cache.source_rows if cache.has_views else None,
            linked=linked,
            duplicates=duplicates,
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

    def take(self, rows: np.ndarray) -> LabeledData:
        """The rows ``rows``, with a fingerprint naming them (memo keys); views keep their
        image, so ``rows`` must hold the plain row of every view it holds (as every split of
        :mod:`heads.splits` does)."""
        rows = np.asarray(rows, dtype=np.int64)
        source_rows = groups_within(self.groups, rows) if self.has_views else None
        if source_rows is not None and np.array_equal(source_rows, np.arange(len(rows))):
            source_rows = None
        return LabeledData(
            X=self.X[rows],
            y=self.y[rows],
            ids=[self.ids[i] for i in rows],
            space=self.space,
            fingerprint=fingerprint({"rows of": self.key, "rows": sha256_arrays([rows])}),
            source_rows=source_rows,
            linked=None if self.linked is None else self.linked[rows],
        )


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
    messages = [duplicates_message(found, data.ids, data.space.source)]
    if test is not None:
        sources = (test.space.source, data.space.source)
        messages.append(shared_message(test.X, data.X, (test.ids, data.ids), sources))
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
) -> Fit:
    """Fit one head on ``rows`` of ``data``: the fit of compare, train, export and the pipeline.

    The data is guarded once by its user (:func:`check_data`), not here per fit.

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

    A calibrated head (:func:`~bottleneck_transfer.heads.registry.calibration_method`) has
    its calibrator fitted on folds of these rows only
    (:func:`~bottleneck_transfer.heads.calibration.calibration_folds`).

    Returns
    -------
    Fit
    """
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    head = set_random_state(make_head(spec), random_state)
    kind = head_kind(spec).name
    tune_settings = {"val_fraction": VAL_FRACTION, "metric": metric} if tune else None
    params = _json_params(head)
    code = code_versions([*(step for _, step in head.steps), classifier(head)])
    key = fit_key(data.key, rows, kind, params, tune_settings, random_state, code)
    every_row = len(rows) == len(data) and np.array_equal(rows, np.arange(len(data)))
    X, y = (data.X, data.y) if every_row else (data.X[rows], data.y[rows])
    grouping = {"groups": groups_within(data.groups, rows)} if data.has_views else {}
    if data.linked is not None:
        grouping["linked"] = data.linked[rows]
    meta = None if memo is None else memo.load_meta(key)
    if meta is not None:
        tuning = None
        if meta["tuning"] is not None:
            train_rows, val_rows = validation_split(y, VAL_FRACTION, random_state, **grouping)
            tuning = TuneResult.from_dict(meta["tuning"], rows[train_rows], rows[val_rows])
        return Fit(
            spec, meta["params"], tuning, meta["seconds"], meta["notes"], key, True, memo=memo
        )
    tuning = None
    if tune:
        tuning = tune_head(
            spec, X, y, random_state=random_state, n_jobs=n_jobs, metric=metric, **grouping
        )
        head = set_random_state(make_head(spec, **tuning.best_params), random_state)
    method = calibration_method(spec)
    if method is not None:
        try:
            folds = calibration_folds(
                y, groups_within(data.groups, rows), CALIBRATION_FOLDS, random_state
            )
        except ValueError as exc:
            raise HeadError(
                f"{spec!r} cannot be calibrated on these rows: {exc}; give more rows or "
                f"turn calibration off ({kind}:calibrate=false, --no-calibrate)"
            ) from exc
        head.set_params(clf__cv=folds)
    neighbours = getattr(classifier(head), "n_neighbors", None)
    if neighbours is not None and neighbours > len(rows):
        raise HeadError(
            f"{spec!r} looks for {neighbours} neighbours among {len(rows)} training rows; "
            f"give more rows or fewer neighbours (e.g. knn:n_neighbors={len(rows)}). Received: "
            f"rows={len(rows)}"
        )
    with single_threaded(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        head.fit(X, y)
        seconds = time.perf_counter() - start
    notes = sorted(
        {_not_converged(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)}
    )
    approximation = getattr(classifier(head), "approximation_", None)
    if approximation:
        notes.append(approximation)
    if tuning is not None:
        tuning.train_indices, tuning.val_indices = (
            rows[tuning.train_indices],
            rows[tuning.val_indices],
        )
    fit = Fit(spec, _json_params(head), tuning, seconds, notes, key, fitted=head)
    if memo is not None:
        memo.save_head(
            key,
            head,
            {
                "head": spec,
                "params": fit.params,
                "tuning": None if tuning is None else tuning.to_dict(),
                "seconds": seconds,
                "notes": notes,
            },
        )
    return fit


def _not_converged(message: Warning | str) -> str:
    """One line for a :class:`ConvergenceWarning`: its first line after :data:`NOT_CONVERGED`."""
    first = str(message).strip().splitlines()[0].rstrip(":")
    return f"{NOT_CONVERGED} {first}"


def train_head(
    cache: FeatureCache | LabeledData,
    spec: str = DEFAULT_HEAD,
    *,
    tune: bool = False,
    out_of_core: bool = False,
    random_state: int = 0,
    n_jobs: int | None = -1,
    memo: FitMemo | None = None,
    metric: str = "accuracy",
) -> TrainedHead:
    """Fit one head on a whole cache.

    Parameters
    ----------
    cache : FeatureCache or LabeledData
        Training features; ``out_of_core`` needs an open :class:`FeatureCache`.
    spec : str, default=DEFAULT_HEAD ("logreg")
        Head spec, e.g. ``"logreg:C=0.1"``.
    tune : bool, default=False
        Search hyper-parameters first (:func:`heads.tuning.tune_head`).
    out_of_core : bool, default=False
        Stream row blocks from the HDF5 file (:func:`fit_streaming`); kinds with a
        ``streaming_loss`` only.
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
        The fitted estimator and its metadata (``reused`` says whether the memo had it).

    Examples
    --------
    >>> trained = train_head("caches/train.h5", "logreg:C=0.5")  # doctest: +SKIP
    >>> save_head(trained, "heads/logreg.skops")  # doctest: +SKIP
    """
    make_head(spec)
    start = time.perf_counter()
    tuning = None
    reused = False
    if out_of_core:
        if not isinstance(cache, FeatureCache):
            raise HeadError("out-of-core training streams from a cache file; pass a FeatureCache")
        if tune:
            raise HeadError("--tune needs the features in memory; drop --out-of-core or --tune")
        estimator = fit_streaming(cache, spec, random_state=random_state)
        space, fingerprint, rows = FeatureSpace.of_cache(cache), cache.fingerprint, len(cache)
        messages = small_data_messages(cache.labels, space.class_names, source=space.source)
        seconds = time.perf_counter() - start
    else:
        data = cache if isinstance(cache, LabeledData) else LabeledData.from_cache(cache)
        space, fingerprint, rows = data.space, data.fingerprint, len(data)
        messages = check_data(data, min_per_class=2 if tune else 1)
        fit = fit_head(
            spec,
            data,
            tune=tune,
            random_state=random_state,
            n_jobs=n_jobs,
            memo=memo,
            metric=metric,
        )
        estimator, tuning, reused = fit.estimator, fit.tuning, fit.reused
        seconds = fit.seconds + (tuning.seconds if tuning is not None else 0.0)
    meta = {
        "format": HEAD_FORMAT,
        "format_version": HEAD_FORMAT_VERSION,
        "head": spec,
        "params": _json_params(estimator),
        "tuning": None if tuning is None else tuning.to_dict(),
        "out_of_core": out_of_core,
        "reused": reused,
        "cache": {"path": space.source, "fingerprint": fingerprint, "rows": rows},
        "base": space.base,
        "class_names": space.class_names,
        "dim": space.dim,
        "fit_seconds": seconds,
        "warnings": messages,
        "versions": software_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return TrainedHead(estimator, meta)


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
    import skops.io  # on use: importing it imports all of scikit-learn (seconds)

    path = Path(path)
    with atomic_path(path) as tmp:
        skops.io.dump({"head": head.estimator, "meta": json.dumps(head.metadata)}, tmp)
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

    Examples
    --------
    >>> evaluation = evaluate_head("heads/logreg.skops", "caches/fm-test.h5")
    >>> round(evaluation.metrics["accuracy"], 3)  # doctest: +SKIP
    0.92
    """
    head = head if isinstance(head, TrainedHead) else load_head(head)
    data = cache if isinstance(cache, LabeledData) else LabeledData.from_cache(cache)
    check_compatible(head.space, data.space, what="cache")
    check_scorable(data)
    check_data(data, min_classes=1)
    with single_threaded():
        start = time.perf_counter()
        predictions = head.estimator.predict(data.X)
        seconds = time.perf_counter() - start
        proba = head.estimator.predict_proba(data.X) if has_proba(head.estimator) else None
    classes = head.estimator.classes_
    metrics = score(data.y, predictions, proba, classes)
    losses = None if proba is None else row_losses(data.y, proba, classes)
    intervals, _ = holdout_intervals(
        data.y,
        predictions,
        len(data.class_names),
        losses,
        n_boot=n_bootstrap,
        seed=random_state,
    )
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
    head: str = DEFAULT_HEAD,
    *,
    epochs: int = 5,
    block_rows: int = 2048,
    blocks_per_batch: int = 8,
    random_state: int = 0,
) -> Pipeline:
    """Train a head kind with a ``streaming_loss`` (``logreg``, ``linear-svm``) out of core.

    One pass over :meth:`FeatureCache.iter_rows` fits the kind's scaler (which must have
    ``partial_fit``) and checks every block for finite values; then ``epochs`` passes of
    averaged SGD (:class:`~sklearn.linear_model.SGDClassifier` with the kind's loss,
    ``alpha = 1 / (C * n_rows)`` to match the in-memory heads' ``C``) read row blocks in
    random order. Memory is ``block_rows * blocks_per_batch`` rows. It is never calibrated
    (calibration needs out-of-fold decision values of the rows in memory): a hinge-loss head
    outputs scores, and says so (``params["calibrate"]`` is False).

    Parameters
    ----------
    cache : FeatureCache
        An open cache; only its labels are read whole.
    head : str, default=DEFAULT_HEAD ("logreg")
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
        Fitted ``Pipeline([("scale", scaler), ("clf", SGDClassifier)])``.
    """
    kind = head_kind(head)
    params = parse_spec(head)[1]
    if kind.streaming_loss is None:
        streaming = [name for name in head_names() if head_kind(name).streaming_loss]
        raise HeadError(
            f"out-of-core training supports {', '.join(streaming)}. Received: head={kind.name!r}"
        )
    extra = sorted(set(params) - {"C", CALIBRATE_KEY})
    if extra:
        raise HeadError(f"out-of-core {kind.name} takes only C; got {', '.join(extra)}")
    space = FeatureSpace.of_cache(cache)
    labels = cache.labels
    check_labels(labels, space.class_names, source=space.source)
    warn_small_data(labels, space.class_names, source=space.source)
    ids = cache.ids
    scaler = kind.scaler()
    offset = 0
    for X, _ in cache.iter_rows(block_rows * blocks_per_batch):
        check_features(X, ids[offset : offset + len(X)], space.source)
        scaler.partial_fit(X)
        offset += len(X)
    clf = SGDClassifier(
        loss=kind.streaming_loss,
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
