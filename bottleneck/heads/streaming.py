"""Heads that stream a cache in chunks: fit, scale and predict on index sets, never copies.

Used when the features exceed the memory budget (:mod:`heads.budget`), or with
``--out-of-core``. A *source* is anything sliced like the cache's ``/features``: an array, the
HDF5 dataset (:attr:`FeatureCache.features_dataset`), or a :class:`~heads.rows.RowSubset` of
either (a split's rows, kept as indices; :mod:`heads.rows` reads them). Rows are read a chunk at
a time, chunks in an order shuffled by a seeded generator, so a fit is reproducible.

How each kind streams (declared by :attr:`HeadKind.streaming` in the registry):

``"sgd"`` (logreg, linear-svm, nystroem)
    Standardisation statistics in one pass (``partial_fit``), then averaged minibatch SGD
    (:func:`sgd_linear`, one-vs-rest with the kind's ``streaming_loss``, returned as an
    :class:`~sklearn.linear_model.SGDClassifier`) over :data:`EPOCHS` passes. Its
    regularisation is the in-memory head's: both minimise
    ``C * sum(loss) + |w|^2 / 2``, and SGD's objective ``mean(loss) + alpha * |w|^2 / 2`` is
    that divided by ``C * n``, so ``alpha = 1 / (C * n_rows)``. SGD runs on rows centred
    and scaled to unit norm, the model folded back (:func:`sgd_linear`). The streaming linear SVM
    uses the hinge loss (the in-memory one, the squared hinge) and is not calibrated
    (calibration needs out-of-fold decision values of rows in memory): it outputs scores.
    ``nystroem`` fits its kernel map on the ``n_components`` rows its in-memory fit draws
    (the same seeded sample, read by index), then SGD on the mapped rows.
``"dense"``
    :class:`~heads.estimators.DenseHead` trained on a Keras ``PyDataset`` reading HDF5
    slices (:func:`heads.rows.chunk_batches`), early stopping on a validation split of the rows.
``"knn"``
    :class:`ChunkedKNN`: the training rows stay in the file; each query chunk is searched
    against the training chunks, keeping the ``k`` nearest.

``rbf-svm`` has no streaming form: above the budget it is refused, naming the alternatives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.heads.budget import block_rows
from bottleneck_transfer.heads.metrics import proba_row_scores
from bottleneck_transfer.heads.registry import (
    CALIBRATE_KEY,
    head_kind,
    head_names,
    make_head,
    parse_spec,
)
from bottleneck_transfer.heads.rows import chunk_starts, read_rows
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

#: SGD passes over the rows.
EPOCHS = 5
#: SGD's step ``eta0 / t ** SGD_POWER`` at step ``t`` on rows of unit root-mean-square
#: norm (:func:`sgd_linear`), averaged (Polyak-Ruppert): slowly decaying steps starting at
#: ``eta0 = 1 / L``, ``L = 1 / SGD_STEP + alpha`` (the log loss's curvature is at most
#: ``|x|^2 / 4``, the penalty's ``alpha``: larger steps diverge), which averaging makes
#: converge whatever ``alpha`` (scikit-learn's default steps, ``1 / (alpha * t)``, are huge
#: where ``alpha = 1 / (C * n)`` is small). On the 5-class test fixture, 5 passes end within
#: 0.7 % of the optimum of the objective (logreg, 3 %), and 0.3 points of its accuracy.
SGD_STEP, SGD_POWER = 4.0, 0.25
#: Rows per step of the minibatch solver (:func:`sgd_linear`), at most; fewer on fewer
#: rows, so that an epoch has at least :data:`MIN_STEPS` steps (averaged SGD needs steps:
#: 1,797 digits in steps of 256 ended 5 points short of the in-memory head).
MINIBATCH, MIN_STEPS = 256, 512
#: Blocks (from random places of the rows) mixed into one SGD step: class-sorted caches
#: (class folders) would otherwise give steps of one class.
BLOCKS_PER_STEP = 8


def n_rows(source: Any) -> int:
    """Rows of a source."""
    return int(source.shape[0])


def iter_chunks(source: Any, chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, features)`` of each chunk of ``source``, in order."""
    for start in chunk_starts(n_rows(source), chunk_rows):
        yield int(start), source[start : start + chunk_rows]


def shuffled_steps(
    source: Any, y: np.ndarray, chunk_rows: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(X, y)`` steps of about ``chunk_rows`` rows: :data:`BLOCKS_PER_STEP`
    blocks from random places (seeded), their rows shuffled."""
    block = max(1, chunk_rows // BLOCKS_PER_STEP)
    starts = chunk_starts(n_rows(source), block, rng)
    for group in range(0, len(starts), BLOCKS_PER_STEP):
        chosen = np.sort(starts[group : group + BLOCKS_PER_STEP])
        labels = np.concatenate([y[s : s + block] for s in chosen])
        order = rng.permutation(len(labels))
        # no local name keeps a step's rows alive while the next is read
        yield np.concatenate([source[s : s + block] for s in chosen])[order], labels[order]


class Scaled:
    """A source whose slices go through a fitted transformer (the head's scaling step)."""

    def __init__(self, source: Any, transformer: Any) -> None:
        self.source, self.transformer = source, transformer
        self.shape, self.ndim, self.dtype = source.shape, 2, np.dtype(np.float32)

    def __len__(self) -> int:
        return n_rows(self.source)

    def __getitem__(self, key: Any) -> np.ndarray:
        X = np.asarray(self.source[key], dtype=np.float32)
        if X.base is not None or not X.flags.writeable:  # a view of features kept elsewhere
            X = X.copy()
        return np.asarray(self.transformer.transform(X, copy=False), dtype=np.float32)


def fit_scaler(scaler: Any, source: Any, chunk_rows: int) -> Any:
    """Fit the scaling step in one pass (``partial_fit`` where it has one, a block of each
    chunk at a time; a stateless one, e.g. :class:`~sklearn.preprocessing.Normalizer`, on
    the first chunk)."""
    for _, X in iter_chunks(source, chunk_rows):
        if not hasattr(scaler, "partial_fit"):
            return scaler.fit(X)
        for start in range(0, len(X), block_rows(X.shape[1])):  # float64 working copies
            scaler.partial_fit(X[start : start + block_rows(X.shape[1])])
        del X  # freed before the next chunk is read
    return scaler


def streaming_kinds() -> list[str]:
    """The registered kinds that stream."""
    return [name for name in head_names() if head_kind(name).streaming]


def check_streams(spec: str, why: str) -> None:
    """Refuse a head kind without a streaming form, in one line naming the alternatives."""
    kind = head_kind(spec)
    if kind.streaming is None:
        raise HeadError(
            f"{kind.name} cannot stream and {why}: use a head that streams "
            f"({', '.join(streaming_kinds())}; nystroem is a kernel approximation + linear "
            f"head, the streaming stand-in for {kind.name}), or raise --memory-budget"
        )


def fit_streaming_head(
    spec: str,
    source: Any,
    y: np.ndarray,
    *,
    chunk_rows: int,
    random_state: int = 0,
    classes: np.ndarray | None = None,
    epochs: int = EPOCHS,
    **params: Any,
) -> Pipeline:
    """Fit ``spec`` on every row of ``source`` (labels ``y``) by streaming chunks; ``params``
    (of the ``clf`` step) override those of the spec, as in :func:`make_head`.

    Returns the fitted ``Pipeline([("scale", scaler), ("clf", estimator)])`` (for ``sgd``
    kinds the estimator is an :class:`SGDClassifier`, never calibrated).

    Raises
    ------
    HeadError
        For a kind without a streaming form (:func:`check_streams`).
    """
    kind = head_kind(spec)
    check_streams(spec, "the features exceed the memory budget (or --out-of-core was given)")
    params = {**parse_spec(spec)[1], **params}
    params.pop(CALIBRATE_KEY, None)
    y = np.asarray(y, dtype=np.int64)
    classes = np.unique(y) if classes is None else classes
    rng = np.random.default_rng(random_state)
    scaler = fit_scaler(kind.scaler(), source, chunk_rows)
    scaled = Scaled(source, scaler)
    if kind.streaming == "sgd":
        clf = _fit_sgd(kind, params, scaled, y, classes, chunk_rows, rng, random_state, epochs)
    elif kind.streaming == "dense":
        clf = make_head(spec, calibrate=False, **{**params, "random_state": random_state})[-1]
        clf.fit_source(scaled, y, chunk_rows=chunk_rows)
    elif kind.streaming == "knn":
        clf = ChunkedKNN(n_neighbors=params.get("n_neighbors", 5), chunk_rows=chunk_rows).fit(
            scaled, y
        )
    else:
        raise HeadError(f"unknown streaming form {kind.streaming!r} of head {kind.name!r}")
    return Pipeline([("scale", scaler), ("clf", clf)])


def _fit_sgd(
    kind: Any,
    params: dict,
    scaled: Scaled,
    y: np.ndarray,
    classes: np.ndarray,
    chunk_rows: int,
    rng: np.random.Generator,
    seed: int,
    epochs: int,
) -> BaseEstimator:
    """:func:`sgd_linear` with ``alpha = 1 / (C * n)``; through the kind's own estimator
    when it maps rows before its linear model (``fit_streaming``, e.g. nystroem: its map is
    fitted on the rows its in-memory fit would draw, :meth:`sample_rows`)."""
    estimator = kind.factory().set_params(**params)
    alpha = 1.0 / (float(getattr(estimator, "C", 1.0)) * len(y))

    def fit_linear(transform: Any = None) -> SGDClassifier:
        def epoch() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for X, labels in shuffled_steps(scaled, y, chunk_rows, rng):
                yield (X if transform is None else transform(X)), labels

        return sgd_linear(
            epoch,
            loss=kind.streaming_loss,
            alpha=alpha,
            classes=classes,
            epochs=epochs,
            seed=seed,
            n_rows=len(y),
        )

    if not hasattr(estimator, "fit_streaming"):
        return fit_linear()
    estimator.set_params(random_state=seed)
    return estimator.fit_streaming(read_rows(scaled, estimator.sample_rows(len(y))), fit_linear)


def sgd_linear(
    epoch: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    *,
    loss: str,
    alpha: float,
    classes: np.ndarray,
    epochs: int,
    seed: int,
    n_rows: int,
) -> SGDClassifier:
    """Averaged minibatch SGD minimising ``mean(loss) + alpha * |w|^2 / 2`` one-vs-rest
    (``loss``: ``"log_loss"`` or ``"hinge"``, per class as :class:`SGDClassifier`) over
    ``epochs`` passes of ``epoch()`` (``(X, y)`` steps, consumed in place), returned as an
    :class:`SGDClassifier` of the rows as given.

    ``n_rows``: the rows of an epoch (steps of :data:`MINIBATCH` rows, fewer on few rows).
    Each step is two matrix products (BLAS) for every class at
    once, where scikit-learn's ``partial_fit`` updates one class and one row at a time (on
    200,000 x 1,280 rows, 10 classes, it ran at about 2,000 rows/s per pass on this
    machine). The rows are centred and scaled to unit root-mean-square norm in place (the
    mean and norm of the first step), with ``alpha`` scaled to match (``alpha * scale**2``),
    and the model folded back at the end: the same objective, its minimum unchanged (the
    intercept is not penalised), but one step size (:data:`SGD_STEP`) suits every input.
    """
    solver: _MinibatchSGD | None = None
    batch = max(1, min(MINIBATCH, n_rows // MIN_STEPS))
    for _ in range(epochs):
        for X, labels in epoch():
            if solver is None:
                solver = _MinibatchSGD(X, classes, loss, alpha, batch)
            solver.step_through(X, labels)
            del X  # freed before the next step is read
    if solver is None:
        raise HeadError("no rows to fit")
    return solver.classifier(seed)


class _MinibatchSGD:
    """The state of :func:`sgd_linear`: weights, their running average and the step count."""

    def __init__(
        self, X: np.ndarray, classes: np.ndarray, loss: str, alpha: float, batch: int
    ) -> None:
        self.batch = batch
        self.center = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        # mean |x - c|^2 = mean |x|^2 - |c|^2: no centred copy of the rows
        squares = float(np.einsum("ij,ij->", X, X, dtype=np.float64)) / len(X)
        norm = float(np.sqrt(max(squares - float(self.center @ self.center), 0.0)))
        self.scale = 1.0 / norm if norm > 0 else 1.0
        self.classes, self.loss = classes, loss
        self.alpha = alpha * self.scale**2
        self.eta0 = 1.0 / (1.0 / SGD_STEP + self.alpha)  # 1 / L, L: loss + penalty
        columns = 1 if len(classes) == 2 else len(classes)
        self.W = np.zeros((columns, X.shape[1]), np.float32)
        self.b = np.zeros(columns, np.float32)
        self.W_mean, self.b_mean, self.t = self.W.copy(), self.b.copy(), 0

    def step_through(self, X: np.ndarray, labels: np.ndarray) -> None:
        """Minibatch steps over the rows of ``X`` in order (scaled in place first)."""
        X = np.asarray(X, dtype=np.float32)
        X -= self.center
        X *= np.float32(self.scale)
        index = np.searchsorted(self.classes, labels)
        targets = (
            (index == 1)[:, None] if len(self.W) == 1 else index[:, None] == np.arange(len(self.W))
        ).astype(np.float32)
        for start in range(0, len(X), self.batch):
            x, target = X[start : start + self.batch], targets[start : start + self.batch]
            scores = x @ self.W.T + self.b
            if self.loss == "hinge":
                sign = 2 * target - 1
                gradient = -sign * (sign * scores < 1)
            else:
                gradient = 1 / (1 + np.exp(-scores)) - target
            gradient /= len(x)
            self.t += 1
            eta = np.float32(self.eta0 / self.t**SGD_POWER)
            self.W *= 1 - eta * np.float32(self.alpha)
            self.W -= eta * (gradient.T @ x)
            self.b -= eta * gradient.sum(axis=0)
            self.W_mean += (self.W - self.W_mean) / self.t
            self.b_mean += (self.b - self.b_mean) / self.t

    def classifier(self, seed: int) -> SGDClassifier:
        """The averaged model as an :class:`SGDClassifier` of the unscaled rows."""
        sgd = SGDClassifier(loss=self.loss, alpha=self.alpha, average=True, random_state=seed)
        sgd.coef_ = self.W_mean.astype(np.float64) * self.scale
        sgd.intercept_ = self.b_mean.astype(np.float64) - sgd.coef_ @ self.center
        sgd.classes_, sgd.n_features_in_, sgd.t_ = self.classes, self.W.shape[1], float(self.t)
        return sgd


def predict_source(
    head: Any, source: Any, chunk_rows: int, *, proba: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(predictions, probabilities or None)`` of ``head`` on every row of ``source``, a
    chunk at a time (the scaling step never copies the whole features)."""
    predictions, probabilities = [], []
    with_proba = proba and hasattr(head, "predict_proba")
    for _, X in iter_chunks(source, chunk_rows):
        predictions.append(head.predict(X))
        if with_proba:
            probabilities.append(head.predict_proba(X))
    if not predictions:
        raise HeadError("no rows to predict")
    return np.concatenate(predictions), np.concatenate(probabilities) if with_proba else None


def score_source(
    head: Any, source: Any, y: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(predictions, per-row losses, top-k hits)`` of ``head`` on every row of ``source``
    (labels ``y``), a chunk at a time: unlike :func:`predict_source`, the probabilities are
    never held whole (:func:`~heads.metrics.proba_row_scores`; None without them)."""
    predictions, losses, hits = [], [], []
    with_proba = hasattr(head, "predict_proba")
    for start, X in iter_chunks(source, chunk_rows):
        predictions.append(head.predict(X))
        if with_proba:
            loss, hit = proba_row_scores(
                y[start : start + len(X)], head.predict_proba(X), head.classes_
            )
            losses.append(loss)
            hits.append(hit)
        del X  # freed before the next chunk is read
    if not predictions:
        raise HeadError("no rows to predict")
    losses_all = np.concatenate(losses) if with_proba else None
    hits_all = np.concatenate(hits) if with_proba and hits[0] is not None else None
    return np.concatenate(predictions), losses_all, hits_all


class ChunkedKNN(ClassifierMixin, BaseEstimator):
    """k nearest neighbours (Euclidean) searched chunk by chunk over a source of training
    rows that stays where it is (the cache file): the streaming form of ``knn``.

    Predictions match :class:`~sklearn.neighbors.KNeighborsClassifier` (uniform weights,
    ties to the smallest class index) up to ties in distance.
    """

    def __init__(self, n_neighbors: int = 5, chunk_rows: int = 8192) -> None:
        self.n_neighbors = n_neighbors
        self.chunk_rows = chunk_rows

    def fit(self, X: Any, y: np.ndarray) -> ChunkedKNN:
        """Keep the source and its labels (nothing is read)."""
        self.source_, self.classes_ = X, np.unique(y)
        self.y_index_ = np.searchsorted(self.classes_, y)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _neighbours(self, Q: np.ndarray) -> np.ndarray:
        """Indices of each query row's ``k`` nearest training rows."""
        k = self.n_neighbors
        Q = np.asarray(Q, dtype=np.float32)
        best_d = np.full((len(Q), 0), np.inf, np.float32)
        best_i = np.zeros((len(Q), 0), np.int64)
        q_norms = (Q * Q).sum(1)[:, None]
        for start, T in iter_chunks(self.source_, self.chunk_rows):
            d = q_norms - 2 * Q @ T.T + (T * T).sum(1)[None, :]
            d = np.concatenate([best_d, d], axis=1)
            rows = np.broadcast_to(start + np.arange(len(T)), (len(Q), len(T)))
            i = np.concatenate([best_i, rows], axis=1)
            keep = np.argsort(d, axis=1, kind="stable")[:, :k]
            best_d, best_i = np.take_along_axis(d, keep, 1), np.take_along_axis(i, keep, 1)
        return best_i

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The share of the ``k`` neighbours in each class."""
        labels = self.y_index_[self._neighbours(X)]
        counts = np.stack([(labels == c).sum(1) for c in range(len(self.classes_))], 1)
        return counts / counts.sum(1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most common class among the ``k`` neighbours."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
