"""A 2-D map of the scored rows: where the classes lie, where the winner errs, which rows
are copies.

:func:`comparison_map` reopens the cache a comparison was scored on, draws at most
:data:`MAP_ROWS` of its scored rows (seeded by the comparison's ``random_state``) and
projects their features with scikit-learn: PCA to :data:`PCA_DIMENSIONS` dimensions, then
t-SNE to two. Each point carries its class, whether the winning head got it wrong, and
whether the row has a copy in the cache (:func:`~bottleneck_transfer.features.duplicates.
cache_duplicates`, searched over every plain row, not only the drawn ones).

Why t-SNE from scikit-learn and not UMAP: umap-learn needs numba and llvmlite (about 200 MB)
and compiles its kernels on first use in every fresh process, tens of seconds on a busy
2-core machine, before projecting a thousand rows; scikit-learn is already a dependency and
its Barnes-Hut t-SNE maps a thousand rows in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.duplicates import cache_duplicates
from bottleneck_transfer.heads.compare import Comparison
from bottleneck_transfer.heads.figures import new_figure
from bottleneck_transfer.heads.registry import single_threaded

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: At most this many scored rows are drawn on the map (a seeded sample beyond it).
MAP_ROWS = 1000
#: PCA keeps this many dimensions before t-SNE (denoises and speeds up the neighbours).
PCA_DIMENSIONS = 50
#: t-SNE iterations (scikit-learn's minimum is 250, its default 1,000).
TSNE_ITERATIONS = 500
#: Classes beyond this many share a continuous colour map and get no legend entries.
LEGEND_CLASSES = 20


@dataclass(frozen=True)
class CacheMap:
    """Drawn rows of a comparison's scored rows with their 2-D position.

    ``rows``: positions in the comparison's scored rows; ``points``: float (n, 2);
    ``labels``: class index; ``wrong``: the winner's prediction differs from the label;
    ``copies``: the row has a copy (exact or near) among the cache's plain rows;
    ``n_scored``: how many rows were scored; ``method``: how the points were computed.
    """

    rows: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    wrong: np.ndarray
    copies: np.ndarray
    n_scored: int
    limit: int
    method: str
    source: str

    @property
    def caption(self) -> str:
        """One sentence: what is drawn, from which rows, how."""
        drawn = len(self.rows)
        share = (
            f"all {drawn} scored rows"
            if drawn == self.n_scored
            else f"{drawn} of {self.n_scored} scored rows (a seeded sample, cap {self.limit:,})"
        )
        return (
            f"{share} of {self.source}: {self.method}; colour = true class, "
            f"× = misclassified by the winner ({int(self.wrong.sum())} drawn), "
            f"ring = has a copy in the cache ({int(self.copies.sum())} drawn)."
        )


def project(features: np.ndarray, random_state: int = 0) -> tuple[np.ndarray, str]:
    """Two columns per row of ``features``, and the method in words.

    PCA to :data:`PCA_DIMENSIONS` then t-SNE (perplexity 30, or less for few rows), with
    BLAS and OpenMP on one thread (Barnes-Hut's threads spin on a busy machine: ten times
    the CPU for the same map). Fewer than 5 rows, or rows all equal, are not projected.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    X = np.asarray(features, dtype=np.float64)
    n = len(X)
    if n < 5 or not np.ptp(X, axis=0).any():
        return np.zeros((n, 2)), "not projected (fewer than 5 rows, or all rows equal)"
    dims = min(PCA_DIMENSIONS, X.shape[1], n)
    perplexity = min(30.0, (n - 1) / 3)
    tsne = TSNE(
        2, perplexity=perplexity, init="pca", random_state=random_state, max_iter=TSNE_ITERATIONS
    )
    with single_threaded():
        points = tsne.fit_transform(PCA(dims, random_state=random_state).fit_transform(X))
    return points, (
        f"t-SNE (scikit-learn, perplexity {perplexity:.3g}, {TSNE_ITERATIONS} iterations, "
        f"seed {random_state}) of the first {dims} principal components"
    )


def _scored_cache(comparison: Comparison) -> str:
    key = "test" if comparison.mode == "holdout" else "train"
    return comparison.caches[key]["path"]


def comparison_map(comparison: Comparison, limit: int | None = None) -> CacheMap:
    """Project at most ``limit`` (default :data:`MAP_ROWS`) of the comparison's scored rows
    (a sample seeded by its ``random_state``).

    Raises
    ------
    BottleneckError
        When the scored rows do not come from a cache file (arrays, a moved file), or the
        file no longer holds them.
    """
    path = _scored_cache(comparison)
    if not Path(path).is_file():
        raise BottleneckError(f"the scored rows come from {path!r}, not a cache file")
    limit = MAP_ROWS if limit is None else limit
    n_scored = len(comparison.eval_ids)
    rng = np.random.default_rng(comparison.random_state)
    drawn = np.sort(rng.choice(n_scored, size=min(limit, n_scored), replace=False))
    with FeatureCache.open(path) as cache:
        index = {item_id: row for row, item_id in enumerate(cache.ids)}
        missing = [comparison.eval_ids[i] for i in drawn if comparison.eval_ids[i] not in index]
        if missing:
            raise BottleneckError(
                f"{path} no longer holds the scored rows (e.g. {missing[0]!r}): was it rebuilt?"
            )
        features = cache.features
        cache_rows = np.asarray([index[comparison.eval_ids[i]] for i in drawn], dtype=np.int64)
        duplicates, _ = cache_duplicates(cache, features)
    copied = np.zeros(len(features), dtype=bool)
    for group in duplicates.groups:
        copied[group] = True
    points, method = project(features[cache_rows], comparison.random_state)
    labels = np.asarray(comparison.eval_labels)[drawn]
    return CacheMap(
        rows=drawn,
        points=points,
        labels=labels,
        wrong=np.asarray(comparison.best.predictions)[drawn] != labels,
        copies=copied[cache_rows],
        n_scored=n_scored,
        limit=limit,
        method=method,
        source=Path(path).name,
    )


def _colour(k: int, n_classes: int) -> tuple[float, float, float, float]:
    """Class ``k``'s colour: tab10 up to 10 classes, tab20 up to 20, else turbo."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](k)
    if n_classes <= LEGEND_CLASSES:
        return colormaps["tab20"](k)
    return colormaps["turbo"](k / max(n_classes - 1, 1))


def map_figure(cache_map: CacheMap, class_names: list[str], winner: str) -> Figure:
    """The map: points coloured by class, misclassified rows crossed, copies ringed."""
    figure = new_figure(7.5, 6.0)
    axes = figure.add_subplot()
    x, y = cache_map.points.T
    n_classes = len(class_names)
    colours = [_colour(int(k), n_classes) for k in cache_map.labels]
    axes.scatter(x, y, c=colours, s=14, alpha=0.8, linewidths=0)
    if n_classes <= LEGEND_CLASSES:
        for k in np.unique(cache_map.labels):
            axes.scatter([], [], color=_colour(int(k), n_classes), s=14, label=class_names[k])
    wrong, copies = cache_map.wrong, cache_map.copies
    axes.scatter(
        x[wrong],
        y[wrong],
        marker="x",
        s=30,
        color="black",
        linewidths=1.0,
        label=f"misclassified by {winner}",
    )
    axes.scatter(
        x[copies],
        y[copies],
        marker="o",
        s=70,
        facecolors="none",
        edgecolors="red",
        linewidths=1.0,
        label="has a copy in the cache",
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"Map of the scored rows ({len(cache_map.rows)} drawn)")
    figure.legend(loc="outside right upper", fontsize=8, frameon=False)
    return figure
