"""Several layers in one pass: one decode, one model call with every layer as an output.

Each layer is stored as its own single-layer version-1 cache, with the fingerprint of a
single-layer extraction of that layer (:func:`features.bases.load_layers` gives each the very
description ``load_base(layer=...)`` gives), so a later ``--layer X`` run finds it up to date
and every reader, head and store works on it unchanged. ``out`` holds the first layer; the
others go beside it as ``<stem>.<layer><suffix>`` (:func:`layer_paths`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.bases import Base, load_layers
from bottleneck_transfer.features.batches import default_batch_size
from bottleneck_transfer.features.cache import (
    CacheWriter,
    FeatureCache,
    check_existing,
    check_storage,
    discard_partial,
    writer_lock,
    writing,
)
from bottleneck_transfer.features.extract import (
    ExtractResult,
    _open_writer,
    _run,
    cache_identity,
    commit_seconds,
    with_compute_dtype,
)
from bottleneck_transfer.features.images import DEFAULT_MAX_PIXELS
from bottleneck_transfer.features.sources import Source, open_source
from bottleneck_transfer.features.views import Views
from bottleneck_transfer.fingerprint import fingerprint


def layer_paths(out: str | Path, layers: Sequence[str]) -> list[Path]:
    """``out`` for the first layer, ``<stem>.<layer><suffix>`` beside it for the others."""
    out = Path(out)
    return [out] + [out.with_name(f"{out.stem}.{layer}{out.suffix}") for layer in layers[1:]]


class _FanOut:
    """The writers of several layers' caches, driven by the extraction loop as one writer:
    each batch's list of layer features is split among them; each finalizes its own path."""

    def __init__(self, writers: list[CacheWriter], outputs: list[int], paths: list[Path]):
        self.writers, self.outputs, self.paths = writers, outputs, paths
        self.path = writers[0].path

    def write_batch(self, features: list[np.ndarray], *rest: Any) -> None:
        for writer, k in zip(self.writers, self.outputs, strict=True):
            writer.write_batch(features[k], *rest)

    def commit(self) -> None:
        for writer in self.writers:
            writer.commit()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def finalize(self, out: Path, extraction: dict) -> None:
        for writer, path in zip(self.writers, self.paths, strict=True):
            writer.finalize(path, extraction)

    def __getattr__(self, name: str) -> Any:  # rows, items_done, n_failed: equal for all
        return getattr(self.writers[0], name)

    @property
    def pending_bytes(self) -> int:
        return sum(writer.pending_bytes for writer in self.writers)


def extract_layers(
    source: str | Source,
    base: str | Path,
    out: str | Path,
    layers: Sequence[str],
    *,
    weights: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str = "avg",
    preprocess: str | None = None,
    classes: str | list | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    force: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    compute_dtype: str | None = None,
    progress: bool | None = None,
    wait: Callable[[str], Any] | None = None,
    store_dtype: str = "float32",
    compression: str | None = None,
    augment: str | list[str] | None = None,
    views: int = 0,
    seed: int = 0,
) -> list[ExtractResult]:
    """Extract the features of several ``layers`` of ``base`` in one pass over ``source``.

    Writes one single-layer cache per layer at :func:`layer_paths` (``out`` holds the first
    layer), each equal to ``extract(..., layer=name)`` to that path, same fingerprint
    included (with ``augment``/``views``/``seed``, each cache holds the views too, as a
    single-layer extraction with them). Layers whose cache is already up to date are not
    written again. Options are :func:`features.extract.extract`'s.

    Returns
    -------
    list of ExtractResult
        One per layer, in the order of ``layers``.

    Raises
    ------
    BaseModelError
        A name that is not a layer of the base (close names suggested), or a hub base.
    """
    if len(set(layers)) != len(layers) or not layers:
        raise ValueError(f"layers must be distinct layer names. Received: layers={list(layers)}")
    check_storage(store_dtype, compression)
    if not isinstance(source, Source):
        source = open_source(source, classes=classes, limit=limit)
    options = {"weights": weights, "image_size": image_size, "preprocess": preprocess}
    bases, joint = load_layers(base, layers, pooling=pooling, **options)
    bases = [with_compute_dtype(b, compute_dtype) for b in bases]
    first = bases[0]
    runner = with_compute_dtype(
        Base(joint, first.name, first.image_size, first.channels, first.description),
        compute_dtype,
    )
    paths = layer_paths(out, layers)
    manifest = source.manifest()
    augmenting = Views.make(augment, views, seed)
    views_identity = augmenting.identity() if augmenting else None
    identities = [cache_identity(b, source, manifest, store_dtype, views_identity) for b in bases]
    prints = [fingerprint(identity) for identity in identities]
    storage = {"store_dtype": store_dtype, "compression": compression}
    with contextlib.ExitStack() as stack:
        for path in paths:
            with writing(path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(writer_lock(path, wait))
        todo = [
            k
            for k, path in enumerate(paths)
            if force or not check_existing(path, prints[k], identities[k], manifest)
        ]
        if todo:
            writers = [
                _open_writer(
                    paths[k], prints[k], identities[k], bases[k], source, manifest, force, storage
                )
                for k in todo
            ]
            if len({w.items_done for w in writers}) > 1:  # stopped between two layers' commits
                writers = [
                    _open_writer(
                        paths[k],
                        prints[k],
                        identities[k],
                        bases[k],
                        source,
                        manifest,
                        True,
                        storage,
                    )
                    for k in todo
                ]
            fan = _FanOut(writers, todo, [paths[k] for k in todo])
            size = batch_size or default_batch_size(first.image_size, len(source))
            try:
                _run(
                    fan,
                    paths[todo[0]],
                    source,
                    runner,
                    size,
                    workers,
                    strict,
                    max_pixels,
                    progress,
                    commit_seconds(),
                    augmenting,
                )
            except SourceError:
                for writer in writers:
                    with contextlib.suppress(Exception):
                        discard_partial(writer.path)
                raise
    results = []
    for k, path in enumerate(paths):
        with FeatureCache.open(path) as cache:
            results.append(
                ExtractResult(
                    path, len(cache), cache.failed, up_to_date=k not in todo, fingerprint=prints[k]
                )
            )
    return results
