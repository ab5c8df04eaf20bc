"""Duplicate images: exact copies by content hash, near copies by feature similarity.

Two rows are the same picture when

* their items' contents hash equal (:func:`content_hash`: a file's bytes, an array image's
  pixels) — known before any feature exists (``extract --val-split``, ``finetune --val``); or
* their features' cosine similarity is at least :data:`NEAR_THRESHOLD` (:func:`near_pairs`)
  — a PNG, a JPEG and a resized copy of one photo; identical pixels give identical features,
  so this also catches exact copies whose bytes differ (another container, other metadata).

Duplicates and user-declared groups (a manifest's ``--groups`` column: patient, session) are
merged into one label per row (:func:`merge_labels`): every split keeps each group whole on
one side (``heads.splits``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bottleneck_transfer.features.cache.reader import FeatureCache
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

#: Cosine similarity from which two feature rows are copies of one picture, chosen from data
#: on the shipped base (README, "Duplicates"): every PNG / JPEG (q 50-95) / resized (0.5-1.5x)
#: copy of scikit-image's 19 photos scores >= 0.9997 with its original, while among the 10,000
#: distinct Fashion-MNIST test images 25 have a neighbour >= 0.9995 (176 >= 0.999, 2,012
#: >= 0.99): the threshold keeps false ties rare. Heavy re-encodings of 28 x 28 images fall
#: below it (30 % of those pairs are caught); exact copies always tie (cosine 1).
NEAR_THRESHOLD = 0.9995
#: Rows per block of the similarity search (a block x N float32 product at a time).
BLOCK_ROWS = 1024
#: The near-copy search compares every pair of rows, so its time grows with the square of
#: the rows: 200,000 x 1,280 features (2.6e13 multiply-adds) ran past 20 minutes on a busy
#: 2-core machine before any head was fitted, and 2M rows would take 100 times that. Where
#: heads load a cache of more plain rows than this (:func:`cache_duplicates` with
#: ``near=False``), only exact copies are found: identical feature rows, by hashing each row
#: (linear time). ``bottleneck cache dupes`` still searches near copies at any size.
#: (Those times are the full search's; the band search of :func:`near_pairs` took 0.6-1.5 s
#: CPU on 60,000 x 1,280 synthetic rows, its candidate test still quadratic: the limit may
#: be raised once measured on real caches.)
NEAR_SEARCH_MAX_ROWS = 100_000


def content_hash(content: str | Path | bytes | np.ndarray) -> str:
    """``sha256:<hex>`` of a file's bytes (or the bytes themselves: a tar member, a table
    cell), or of an image array's pixels (shape included).

    File bytes, not decoded pixels: hashing needs no decode (decoding is the extraction's
    cost), and copies whose bytes differ but pixels agree have identical features, which
    the near-copy search groups anyway.
    """
    digest = hashlib.sha256()
    if isinstance(content, np.ndarray):
        digest.update(repr((content.shape, content.dtype.str)).encode())
        digest.update(np.ascontiguousarray(content).tobytes())
    elif isinstance(content, bytes):
        digest.update(content)
    else:
        with open(content, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """int64 (n,): each row's connected component, named by its smallest row."""
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(n))
    return smallest[component]


def merge_labels(*labelings: Sequence | np.ndarray | None) -> np.ndarray | None:
    """One label per row joining every labeling's groups (rows equal in any one share a label).

    Each labeling gives rows any hashable label; ``None`` entries (and ``None`` labelings)
    tie nothing. Labels are each group's smallest row; ``None`` when no two rows are tied.
    """
    given = [list(labels) for labels in labelings if labels is not None]
    if not given:
        return None
    n = len(given[0])
    first, second = [], []
    for labels in given:
        seen: dict = {}
        for row, label in enumerate(labels):
            if label is None:
                continue
            if label in seen:
                first.append(seen[label])
                second.append(row)
            else:
                seen[label] = row
    if not first:
        return None
    return _components(n, np.asarray(first, np.int64), np.asarray(second, np.int64))


def _inverse_norms(X: np.ndarray, block_rows: int) -> np.ndarray:
    """float32 (n,): 1 / each row's L2 norm (1 for a zero row), a block at a time, summed in
    float32 (float16 sums round the norm by 5e-4: cosines off by 1e-3)."""
    norms = np.concatenate(
        [
            np.linalg.norm(np.asarray(X[s : s + block_rows], np.float32), axis=1)
            for s in range(0, len(X), block_rows)
        ]
        or [np.zeros(0, np.float32)]
    ).astype(np.float32)
    return 1 / np.where(norms > 0, norms, 1)


#: Principal directions the near-copy search projects rows on (:func:`near_pairs`).
BAND_DIRECTIONS = 16
#: Rows drawn (seeded) to estimate those directions.
BAND_SAMPLE_ROWS = 1024


def _band_basis(features: np.ndarray, scale: np.ndarray, k: int) -> np.ndarray:
    """float32 (dim, k) orthonormal columns near the top principal directions of the
    normalised rows (a seeded sample, three power iterations); any orthonormal basis keeps
    :func:`near_pairs` exact, a good one prunes more pairs (coordinate axes where the
    sample is not finite)."""
    n, dim = features.shape
    k = min(k, dim)
    rows = np.sort(np.random.default_rng(0).permutation(n)[:BAND_SAMPLE_ROWS])
    sample = np.asarray(features[rows], np.float64) * scale[rows, None]
    sample -= sample.mean(axis=0)
    basis = np.random.default_rng(1).normal(size=(dim, k))
    for _ in range(3):
        basis, _ = np.linalg.qr(sample.T @ (sample @ basis))
    return (basis if np.isfinite(basis).all() else np.eye(dim, k)).astype(np.float32)


def _project(
    features: np.ndarray, scale: np.ndarray, basis: np.ndarray, block_rows: int
) -> np.ndarray:
    """float32 (n, k): each normalised row's coordinates on ``basis``, a block at a time."""
    parts = [
        (np.asarray(features[s : s + block_rows], np.float32) * scale[s : s + block_rows, None])
        @ basis
        for s in range(0, len(features), block_rows)
    ]
    return np.concatenate(parts or [np.zeros((0, basis.shape[1]), np.float32)])


def _augmented(p: np.ndarray, left: bool) -> np.ndarray:
    """float32 (n, k + 2) such that ``_augmented(p, True) @ _augmented(q, False).T`` holds
    the squared distances ``|p_i - q_j|^2``: one product instead of three passes."""
    squared, ones = (p * p).sum(1, keepdims=True), np.ones((len(p), 1), p.dtype)
    return np.hstack([-2 * p, squared, ones] if left else [p, ones, squared])


def near_pairs(
    features: np.ndarray,
    threshold: float = NEAR_THRESHOLD,
    block_rows: int = BLOCK_ROWS,
    other: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row pairs ``i < j`` of ``features`` whose cosine similarity is at least ``threshold``,
    or with ``other``, pairs ``(i, j)`` of a row of ``features`` and a row of ``other``;
    sorted by ``(i, j)``.

    Exact, and only the pairs that can qualify are multiplied: unit rows whose cosine is at
    least ``t`` lie within ``sqrt(2 (1 - t))`` of each other, and so do their coordinates
    on any orthonormal basis (:data:`BAND_DIRECTIONS` principal directions). Rows are sorted
    by the first coordinate; each block of ``block_rows`` meets only the rows inside that
    band, a ``block_rows`` chunk at a time, and of those only the pairs whose coordinates lie
    within the radius are multiplied (``rows x columns`` float32 products). Never the
    ``N x N`` matrix nor a normalised copy of the features; where nothing is pruned (all
    rows alike) the cost is the full blocked product plus ``(k + 2) / dim`` of it (1.4 %
    at 1,280 features). One BLAS thread: on a shared 2-core machine two threads spinning
    on the many small products took 5-10 times the CPU (0.27 s against 0.055 s on 6,000 x
    1,280 features).

    Returns
    -------
    first, second : ndarray of int64
    similarity : ndarray of float32
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1]. Received: threshold={threshold}")
    with threadpool_limits(1, user_api="blas"):  # many small products: threads only spin
        return _band_search(features, threshold, block_rows, other)


def _band_search(
    X: np.ndarray, threshold: float, block_rows: int, other: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`near_pairs` (``X``: ``features``)."""
    Y = X if other is None else other
    x_scale = _inverse_norms(X, block_rows)
    y_scale = x_scale if other is None else _inverse_norms(Y, block_rows)
    # float32 products round by ~1e-6 at most: the radius admits every such pair.
    radius = np.sqrt(2 * (1 - (threshold - 1e-6 - 1e-5))) + 1e-4
    if len(X) == 0 or len(Y) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    basis = _band_basis(X, x_scale, BAND_DIRECTIONS)
    px = _project(X, x_scale, basis, block_rows)
    py = px if other is None else _project(Y, y_scale, basis, block_rows)
    x_order = np.argsort(px[:, 0], kind="stable")
    y_order = x_order if other is None else np.argsort(py[:, 0], kind="stable")
    y_first = py[y_order, 0]
    left, right = _augmented(px[x_order], True), _augmented(py[y_order], False)
    # float32 squared distances of terms below 2 round by ~1e-6: admit 5e-5 more.
    limit = radius * radius + 5e-5
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(X), block_rows):
        stop = min(start + block_rows, len(X))
        band = px[x_order[start:stop], 0]
        low = start if other is None else np.searchsorted(y_first, band.min() - radius)
        high = np.searchsorted(y_first, band.max() + radius, side="right")
        for offset in range(low, high, block_rows):
            end = min(offset + block_rows, high)
            near = left[start:stop] @ right[offset:end].T <= limit
            if other is None and offset == start:  # a row is not its own copy
                np.fill_diagonal(near, False)
            rows, columns = x_order[start:stop][near.any(1)], y_order[offset:end][near.any(0)]
            once = other is None and offset == start  # the block with itself: i < j
            found.append(_pairs((X, Y), (x_scale, y_scale), rows, columns, threshold, once))
    return _sorted_pairs(found, within=other is None, n_columns=len(Y))


def _pairs(
    data: tuple[np.ndarray, np.ndarray],
    scales: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    columns: np.ndarray,
    threshold: float,
    once: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of ``rows`` x ``columns`` (positions in the two arrays) whose cosine similarity
    is at least ``threshold`` (float32 products of the normalised rows); ``once``: only
    ``row < column`` (rows and columns of one set and block)."""
    if not len(rows) or not len(columns):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows, columns = np.sort(rows), np.sort(columns)  # increasing: h5py datasets too
    (X, Y), (x_scale, y_scale) = data, scales
    left = np.asarray(X[rows], np.float32) * x_scale[rows, None]
    right = np.asarray(Y[columns], np.float32) * y_scale[columns, None]
    similarity = left @ right.T
    found = similarity >= threshold - 1e-6
    if once:
        found &= rows[:, None] < columns[None, :]
    i, j = np.nonzero(found)
    return rows[i], columns[j], similarity[i, j]


def _sorted_pairs(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], within: bool, n_columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of every block (each met once), sorted by ``(first, second)``; ``within``
    one set: as ``first < second``."""
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    first, second, similarity = (np.concatenate(parts) for parts in zip(*found, strict=True))
    first, second = first.astype(np.int64), second.astype(np.int64)
    if within:
        first, second = np.minimum(first, second), np.maximum(first, second)
    order = np.argsort(first * n_columns + second)
    return first[order], second[order], similarity[order].astype(np.float32)


@dataclass(frozen=True)
class Duplicates:
    """Groups of rows holding one picture.

    ``labels``: int64 (n,), each searched row's group named by its smallest position
    (singletons their own); ``exact``: bool per group of :attr:`groups`, whether its rows hold
    identical features or content; ``threshold``: the cosine similarity used; ``rows``: the
    cache row of each searched position (None: positions are rows).
    """

    labels: np.ndarray
    exact: tuple[bool, ...]
    threshold: float
    rows: np.ndarray | None = None

    @property
    def groups(self) -> list[np.ndarray]:
        """Rows of each group of two or more, in order of their first row."""
        order = np.argsort(self.labels, kind="stable")
        sorted_labels = self.labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        groups = [g for g in np.split(order, starts[1:]) if len(g) > 1]
        return groups if self.rows is None else [self.rows[g] for g in groups]

    @property
    def n_rows(self) -> int:
        """Rows that have a copy elsewhere."""
        return sum(len(g) for g in self.groups)

    def summary(self) -> dict[str, int]:
        """Counts: groups, exact and near groups, rows in groups, rows beyond one per group."""
        groups = self.groups
        return {
            "groups": len(groups),
            "exact_groups": int(sum(self.exact)),
            "near_groups": len(groups) - int(sum(self.exact)),
            "rows": self.n_rows,
            "extra_copies": self.n_rows - len(groups),
        }


def _same_rows(features: np.ndarray, rows: np.ndarray) -> bool:
    """Whether every row of ``rows`` holds the same features."""
    return bool((np.asarray(features[rows]) == np.asarray(features[rows[0]])).all())


def row_hashes(features: np.ndarray, block_rows: int = BLOCK_ROWS) -> list[str]:
    """A digest of each feature row's bytes (equal rows, equal digests), a block at a time."""
    digests = []
    for start in range(0, len(features), block_rows):
        block = np.ascontiguousarray(features[start : start + block_rows])
        digests += [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in block]
    return digests


def find_duplicates(
    features: np.ndarray,
    hashes: Sequence[str | None] | None = None,
    threshold: float = NEAR_THRESHOLD,
    *,
    near: bool = True,
) -> Duplicates:
    """Exact (equal ``hashes``, or identical features) and near copies among ``features`` rows.

    Parameters
    ----------
    features : ndarray of shape (n_rows, dim)
    hashes : sequence of str or None, optional
        Each row's :func:`content_hash`, when known.
    threshold : float, default=NEAR_THRESHOLD
        Cosine similarity from which two rows are copies.
    near : bool, default=True
        Search near copies (every pair of rows); False: identical feature rows only
        (:func:`row_hashes`, linear time; the result's ``threshold`` is then 1).
    """
    n = len(features)
    if near:
        first, second, _ = near_pairs(features, threshold)
        labels = _components(n, first, second)
    else:
        threshold = 1.0
        labels = merge_labels(row_hashes(features))
        labels = np.arange(n, dtype=np.int64) if labels is None else labels
    if hashes is not None:
        labels = merge_labels(labels, hashes)
        labels = np.arange(n, dtype=np.int64) if labels is None else labels
    exact = []
    for group in Duplicates(labels, (), threshold).groups:  # positions, not rows
        same_hash = hashes is not None and len({hashes[r] for r in group}) == 1
        exact.append(
            bool(same_hash and hashes[group[0]] is not None) or _same_rows(features, group)
        )
    return Duplicates(labels, tuple(exact), threshold)


def cache_duplicates(
    cache: FeatureCache,
    features: np.ndarray | None = None,
    threshold: float = NEAR_THRESHOLD,
    *,
    near: bool = True,
) -> tuple[Duplicates, np.ndarray | None]:
    """The copies among a cache's images, and each row's group label for the splits.

    Only plain rows are searched (augmented views are copies of their image by design); the
    group labels join copies and the cache's declared groups (``/groups``), a view taking its
    image's. ``features``: the cache's features when already read; ``near``: as
    :func:`find_duplicates` (the result's ``threshold`` is 1 without the near search).

    Returns
    -------
    duplicates : Duplicates
        Over the plain rows (its groups name cache rows).
    linked : ndarray of int64 (N,) or None
        Each row's group (its group's smallest plain position); None when no two images
        are tied.
    """
    features = cache.features if features is None else features
    source_rows = cache.source_rows
    plain = np.flatnonzero(source_rows == np.arange(len(source_rows)))
    searched = features if len(plain) == len(features) else features[plain]  # no copy: all
    found = find_duplicates(searched, threshold=threshold, near=near)
    found = Duplicates(found.labels, found.exact, found.threshold, plain)
    declared = cache.groups
    declared = None if declared is None else [g or None for g in declared[plain].tolist()]
    merged = merge_labels(found.labels, declared)
    if merged is None:
        return found, None
    position = np.empty(len(source_rows), dtype=np.int64)
    position[plain] = np.arange(len(plain))
    return found, merged[position[source_rows]]


def duplicates_message(
    duplicates: Duplicates, ids: Sequence[str], source: str, unit: str = "images"
) -> str | None:
    """One line counting the copies in ``source`` with examples (None when there are none);
    ``unit``: what its rows are (``images``, ``texts``)."""
    counts = duplicates.summary()
    if not counts["groups"]:
        return None
    examples = "; ".join(" = ".join(ids[r] for r in g[:3]) for g in duplicates.groups[:2])
    return (
        f"{source}: {counts['rows']} {unit} are copies of another ({counts['groups']} groups: "
        f"{counts['exact_groups']} exact, {counts['near_groups']} near at cosine >= "
        f"{duplicates.threshold}), e.g. {examples}; each group stays on one side of every "
        f"split; list them with `bottleneck cache dupes {source}`"
    )


def shared_message(
    test: np.ndarray,
    train: np.ndarray,
    ids: tuple[Sequence[str], Sequence[str]],
    sources: tuple[str, str],
    threshold: float = NEAR_THRESHOLD,
    unit: str = "images",
) -> str | None:
    """One line counting the ``test`` rows with a copy among the ``train`` rows (None: none);
    ``unit``: what the rows are (``images``, ``texts``)."""
    first, second, _ = near_pairs(test, threshold, other=train)
    if not len(first):
        return None
    shown = "; ".join(
        f"{ids[0][a]} = {ids[1][b]}" for a, b in zip(first[:2], second[:2], strict=True)
    )
    return (
        f"{sources[0]}: {len(np.unique(first))} of {len(test)} test {unit} have a copy in "
        f"{sources[1]} (cosine >= {threshold}), e.g. {shown}; their scores measure memory, not "
        "transfer: drop them from the test set, or split one cache (--cv, --val-split)"
    )
