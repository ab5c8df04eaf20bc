"""The extraction façade: a source through a base into caches, on an engine.

:func:`extract` (one cache), :func:`extract_layers` (one cache per layer of one model, in one
pass) and :func:`extract_split` (a train/validation split of one source) take the source, the
base, the output and the options (:class:`features.options.ExtractOptions`, built from
keyword arguments and passed down whole). :func:`extract_pass` is the one path under them:
caches up to date are left alone, ``update`` goes to :mod:`features.update`, the rest runs on
the engine the options name (:mod:`features.engines`) through the loop
(:mod:`features.loop`).

Several layers are stored each as its own single-layer version-1 cache, with the fingerprint
of a single-layer extraction of that layer (:func:`features.bases.load_layers` gives each the
very description ``load_base(layer=...)`` gives), so a later ``--layer X`` run finds it up to
date and every reader, head and store works on it unchanged. ``out`` holds the first layer;
the others go beside it as ``<stem>.<layer><suffix>`` (:func:`layer_paths`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bottleneck_transfer.features.bases.common import Base
from bottleneck_transfer.features.engines import get_engine
from bottleneck_transfer.features.loop import ExtractResult, Plan, locked, run_missing
from bottleneck_transfer.features.options import BASE_OPTIONS, SOURCE_OPTIONS, ExtractOptions
from bottleneck_transfer.features.runtimes import Pass, load_pass, with_compute_dtype
from bottleneck_transfer.features.sources import Source, Split, open_source, split_source
from bottleneck_transfer.features.update import update_caches

__all__ = [
    "ExtractOptions",
    "ExtractResult",
    "extract",
    "extract_layers",
    "extract_pass",
    "extract_split",
    "layer_paths",
]


def extract(
    source: str | Source,
    base: str | Base,
    out: str | Path,
    *,
    options: ExtractOptions | None = None,
    **settings: Any,
) -> ExtractResult:
    """Extract bottleneck features of every image of ``source`` into the cache ``out``.

    Parameters
    ----------
    source : str or Source
        An image collection (see :func:`features.sources.open_source`).
    base : str or Base
        A base (see :func:`features.bases.load_base`).
    out : str or Path
        The cache file. It appears only when complete; meanwhile ``<out>.partial`` grows.
    options : ExtractOptions, optional
        How to extract; ``settings`` (its field names as keywords: ``weights``,
        ``batch_size``, ``engine``, ``augment``, ...) change it. See
        :class:`features.options.ExtractOptions` for each.

    Returns
    -------
    ExtractResult
        ``up_to_date`` is True when an identical cache was already there (nothing done).

    Raises
    ------
    StaleCacheError
        ``out`` (or its partial file) holds features of different inputs; use ``force``.
    CacheError
        Another process is writing ``out`` (without ``wait``); ``out`` cannot be written
        (disk full, read-only folder: one line saying what to do).
    SourceError
        No image of the source could be read (0 rows): nothing is written.
    Interrupted
        Ctrl-C or SIGTERM: says how many rows were kept; the same call resumes.
    ImageError
        With ``strict``, the first bad image, named.

    Examples
    --------
    >>> result = extract(
    ...     "fashion-mnist:train",
    ...     "data/bases/fashion_mnist_0-4.keras",
    ...     "caches/fm-train.h5",
    ...     classes="5-9",
    ...     limit=2000,
    ... )
    >>> result.rows, result.up_to_date
    (2000, False)
    >>> extract("photos/", "resnet50", "c.h5", engine="dask", workers=4)  # doctest: +SKIP
    """
    options = ExtractOptions.build(options, **settings)
    _refuse_options(base, Base, "base", "load_base(name", options, BASE_OPTIONS)
    source = as_source(source, options)
    if isinstance(base, Base):
        one = with_compute_dtype(base, options.compute_dtype)
        job = Pass(one, (one,))
    else:
        job = _load_job(base, options, layer=options.layer)
    (result,) = extract_pass(source, job, [Path(out)], options)
    return result


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
    options: ExtractOptions | None = None,
    **settings: Any,
) -> list[ExtractResult]:
    """Extract the features of several ``layers`` of ``base`` in one pass over ``source``.

    Writes one single-layer cache per layer at :func:`layer_paths` (``out`` holds the first
    layer), each equal to ``extract(..., layer=name)`` to that path, same fingerprint
    included. Every option is :func:`extract`'s and composes as it does there:
    ``augment``/``views``/``seed`` store the views in each cache; ``split`` extracts one part;
    ``update`` brings existing layer caches up to date, running only new or changed images
    (new or changed for any of them) through the base, once (a layer without a cache yet is
    extracted whole in that pass); a cluster engine runs the pass per shard and joins each
    layer's cache. Layers whose cache is already up to date are not written again.

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
    options = ExtractOptions.build(options, **settings)
    source = as_source(source, options)
    job = _load_job(base, options, layers=layers)
    return extract_pass(source, job, layer_paths(out, layers), options)


def extract_split(
    source: str | Source,
    base: str | Base,
    out: str | Path,
    val_out: str | Path,
    *,
    val_split: float,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    **options: Any,
) -> tuple[ExtractResult, ExtractResult] | tuple[list[ExtractResult], list[ExtractResult]]:
    """Extract a stratified, seeded train/validation split of one labelled source.

    The ``val_split`` share of each class goes to the cache ``val_out``, the rest to
    ``out``; each cache's provenance records the split. ``options`` are :func:`extract`'s;
    augmented views (``augment``, ``views``, seeded by ``seed`` too) go to the train part
    only: the validation cache is the plain cache of its images. With ``layers``, each part
    is :func:`extract_layers`'s (one pass, one cache per layer beside ``out`` and beside
    ``val_out``; a list of results per part).

    Examples
    --------
    >>> train, val = extract_split("photos/", "mobilenet_v2", "train.h5", "val.h5",
    ...                            val_split=0.2, augment="flip,crop", views=4)  # doctest: +SKIP
    """

    def run(where: str | Path, part: str, **chosen: Any) -> Any:
        split = Split(val_split, part, seed)
        if layers is None:
            return extract(source, base, where, split=split, seed=seed, **chosen)
        assert not isinstance(base, Base)
        return extract_layers(source, base, where, layers, split=split, seed=seed, **chosen)

    plain = {k: v for k, v in options.items() if k not in ("augment", "views")}
    return run(out, "train", **options), run(val_out, "val", **plain)


def as_source(source: str | Source, options: ExtractOptions) -> Source:
    """``source`` opened (with the options' :data:`SOURCE_OPTIONS`), restricted to
    the options' ``split`` part."""
    _refuse_options(source, Source, "source", "open_source(spec", options, SOURCE_OPTIONS)
    if not isinstance(source, Source):
        chosen = {name: getattr(options, name) for name in SOURCE_OPTIONS}
        return open_source(source, split=options.split, **chosen)
    return source if options.split is None else split_source(source, options.split)


def extract_pass(
    source: Source, job: Pass, paths: Sequence[str | Path], options: ExtractOptions
) -> list[ExtractResult]:
    """Extract ``source`` in one pass of ``job`` into its caches ``paths`` (one per base).

    The one extraction path under :func:`extract` and :func:`extract_layers`: caches already
    up to date are left alone (unless ``force``); with ``update``, existing caches are
    brought up to date (:mod:`features.update`); the others are extracted in one pass on the
    options' engine (:mod:`features.engines`).

    Returns
    -------
    list of ExtractResult
        One per path, in order.
    """
    engine = get_engine(options.engine)
    plan = Plan.make(source, job, paths, options)
    with locked(plan.paths, options.wait):
        if options.update and not options.force and any(p.exists() for p in plan.paths):
            return _update(plan)
        return run_missing(plan, engine.run)


def _update(plan: Plan) -> list[ExtractResult]:
    """Bring the existing caches of ``plan`` up to date (:func:`features.update.update_caches`):
    the new and changed images run locally, in one pass for every cache that needs them."""
    part_options = plan.options.replace(
        force=True,
        update=False,
        engine="local",
        wait=None,
        store_dtype="float32",
        compression=None,
    )
    return update_caches(
        plan.source,
        plan.paths,
        prints=plan.prints,
        identities=plan.identities,
        manifest=plan.manifest,
        open_writer=lambda k: plan.open_writer(k, True),
        extract_part=lambda part, keep, fresh: extract_pass(
            part, plan.job.select(keep), fresh, part_options
        ),
    )


def _refuse_options(
    given: object,
    kind: type,
    name: str,
    maker: str,
    options: ExtractOptions,
    names: tuple[str, ...],
) -> None:
    """One-line error when ``options`` that shape a ``source``/``base`` (``names``) come with
    a built one."""
    passed = options.given(names)
    if isinstance(given, kind) and passed:
        keys = ", ".join(f"{key}=" for key in names)
        args = ", ".join(f"{key}=..." for key in names)
        received = ", ".join(f"{key}={value!r}" for key, value in passed.items())
        raise ValueError(
            f"extract(): {keys} apply to a {name} given by name; {maker}, {args}) builds a "
            f"{kind.__name__} object with them. Received: {received}"
        )


def _load_job(base: str | Path, options: ExtractOptions, **cut: Any) -> Pass:
    """The pass of ``base`` built with the options' base settings, cut at ``cut`` (``layer``
    or ``layers``): the one mapping of options to :func:`load_pass`."""
    return load_pass(
        base,
        **cut,
        pooling=options.pooling,
        max_length=options.max_length,
        compute_dtype=options.compute_dtype,
        trust_graph=options.trust_graph,
        seed=options.seed,
        weights=options.weights,
        image_size=options.image_size,
        preprocess=options.preprocess,
        layout=options.layout,
    )
