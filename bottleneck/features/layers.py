"""Several layers in one pass: one decode, one model call with every layer as an output.

Each layer is stored as its own single-layer version-1 cache, with the fingerprint of a
single-layer extraction of that layer (:func:`features.bases.load_layers` gives each the very
description ``load_base(layer=...)`` gives), so a later ``--layer X`` run finds it up to date
and every reader, head and store works on it unchanged. ``out`` holds the first layer; the
others go beside it as ``<stem>.<layer><suffix>`` (:func:`layer_paths`). The pass is
:func:`features.extract.extract_pass`'s, so layers compose with everything a single layer
does: ``update``, a split part, views, a resume and the Dask engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bottleneck_transfer.features.extract import (
    ExtractResult,
    as_source,
    check_options,
    extract_pass,
)
from bottleneck_transfer.features.passes import load_pass
from bottleneck_transfer.features.sources import Source, Split


def layer_paths(out: str | Path, layers: Sequence[str]) -> list[Path]:
    """``out`` for the first layer, ``<stem>.<layer><suffix>`` beside it for the others."""
    out = Path(out)
    return [out] + [out.with_name(f"{out.stem}.{layer}{out.suffix}") for layer in layers[1:]]


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
    compute_dtype: str | None = None,
    trust_graph: bool = False,
    classes: str | list | None = None,
    limit: int | None = None,
    split: Split | None = None,
    groups: str | None = None,
    batch_size: int | None = None,
    engine: str = "local",
    store_dtype: str = "float32",
    compression: str | None = None,
    augment: str | list[str] | None = None,
    views: int = 0,
    seed: int = 0,
    **options: Any,
) -> list[ExtractResult]:
    """Extract the features of several ``layers`` of ``base`` in one pass over ``source``.

    Writes one single-layer cache per layer at :func:`layer_paths` (``out`` holds the first
    layer), each equal to ``extract(..., layer=name)`` to that path, same fingerprint
    included. Every option is :func:`features.extract.extract`'s and composes as it does
    there: ``augment``/``views``/``seed`` store the views in each cache; ``split`` extracts
    one part; ``update`` brings existing layer caches up to date, running only new or
    changed images (new or changed for any of them) through the base, once (a layer without
    a cache yet is extracted whole in that pass); ``engine="dask"`` runs the pass per shard
    and joins each layer's cache. Layers whose cache is already up to date are not written
    again.

    Returns
    -------
    list of ExtractResult
        One per layer, in the order of ``layers``.

    Raises
    ------
    BaseModelError
        A name that is not a layer of the base (close names suggested), or a hub base.
    StaleCacheError
        With ``update``, a layer cache made with another base, settings or views.
    """
    if len(set(layers)) != len(layers) or not layers:
        raise ValueError(f"layers must be distinct layer names. Received: layers={list(layers)}")
    made = check_options(batch_size, engine, store_dtype, compression, augment, views, seed)
    source = as_source(source, classes=classes, limit=limit, split=split, groups=groups)
    shaping = {"weights": weights, "image_size": image_size, "preprocess": preprocess}
    job = load_pass(
        base,
        layers=layers,
        pooling=pooling,
        compute_dtype=compute_dtype,
        trust_graph=trust_graph,
        seed=seed,
        **shaping,
    )
    return extract_pass(
        source,
        job,
        layer_paths(out, layers),
        views=made,
        batch_size=batch_size,
        engine=engine,
        store_dtype=store_dtype,
        compression=compression,
        **options,
    )
