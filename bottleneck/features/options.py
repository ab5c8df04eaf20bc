"""Extraction options as one typed object, checked once when built and passed down whole.

:class:`ExtractOptions` holds every option of :func:`features.extract.extract` but the
source, the base and the output: how the source and the base are shaped when they are
given by name, how the pass runs, and on which engine. The façade builds it from keyword
arguments (:meth:`ExtractOptions.build`); the loop and the engines read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.features.cache.format import check_storage
from bottleneck_transfer.features.choices import ENGINES, runtime_choices
from bottleneck_transfer.features.decode import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from bottleneck_transfer.features.sources import Split
    from bottleneck_transfer.features.views import Views

#: The options that shape a source given by name (:func:`features.sources.open_source`).
SOURCE_OPTIONS = (
    "classes",
    "limit",
    "groups",
    "source_kind",
    "image_column",
    "label_column",
    "target",
    "text_column",
)
#: The options that shape a base given by name (:func:`features.bases.load_base`).
BASE_OPTIONS = (
    "weights",
    "image_size",
    "pooling",
    "layer",
    "preprocess",
    "trust_graph",
    "layout",
    "max_length",
)


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract (see :func:`features.extract.extract`).

    Parameters
    ----------
    weights, image_size, pooling, layer, preprocess, trust_graph, layout
        :func:`features.bases.load_base`'s options, for a base given by name (a
        :class:`Base` object has them already: passing any is an error).
    classes, limit
        Class subset and evenly spread sample of a source given by name (a :class:`Source`
        object has them already: passing either is an error).
    split : Split, optional
        Extract one part of a stratified, seeded train/validation split of the source
        (see :func:`features.extract.extract_split` for both parts); declared groups and
        exact copies stay whole.
    groups : str, optional
        A CSV manifest's column of each image's group (patient, session), stored as the
        cache's ``/groups``: every split keeps a group on one side.
    source_kind : str, optional
        The source's kind (:data:`features.sources.registry.SOURCE_KINDS`) instead of
        detecting it from the path.
    image_column, label_column : str, optional
        A Parquet/Arrow table's image and label columns (default ``image`` and ``label``);
        ``label_column`` is a text table's too.
    target : str, optional
        A manifest's target kind and column (:mod:`features.targets`), e.g.
        ``"regression:column=age,unit=years"``; default: inferred from its ``label`` column.
    text_column : str, optional
        A text table's column of texts (default ``text``; :mod:`features.sources.text`).
    max_length : int, optional
        Text bases: tokens per text, longer ones truncated and counted (default: the
        preset's longest sequence, at most :data:`features.bases.text.MAX_LENGTH`).
    batch_size : int, optional
        Images per model call. Default (:func:`features.runtimes.default_batch_size`): 64
        on a CPU and 256 on an accelerator for 224 x 224 inputs, scaled by pixel count.
    workers : int, optional
        Decoding threads (default: all cores); the local cluster's processes for
        ``engine="dask"`` or ``"ray"``.
    strict : bool
        Stop at the first bad image instead of recording it in ``/failed`` and going on.
    force : bool
        Replace a cache (or discard a partial one) made from different inputs.
    max_pixels : int
        Refuse images declaring more pixels (decompression bombs).
    compute_dtype : {"float32", "bfloat16", "float16"}, optional
        Run the base in mixed precision (accelerators); features are stored as float32 and
        the dtype is part of the fingerprint.
    progress : bool, optional
        Show a progress bar (default: only on a terminal).
    wait : callable, optional
        When another process is writing the cache, call ``wait(message)`` and wait for it
        to finish (then reuse its cache) instead of raising :class:`CacheError`.
    engine : {"local", "dask", "ray"}
        Where the pass runs (:mod:`features.engines`): ``"dask"`` and ``"ray"`` cut the
        source into shards run as tasks on a cluster (a local one of ``workers`` processes,
        or the one at ``scheduler``/``address``) and join them into one cache equal to a
        local run's. The base must be given by name or path (each worker builds it once)
        and workers must see the images at the same path.
    scheduler : str, optional
        Address of a running cluster to join: a Dask scheduler (``tcp://host:8786``) or a
        Ray cluster (``host:6379``, ``auto``).
    shard_images : int, optional
        Images per shard for the cluster engines (rounded to whole batches; default 4096).
    timeout : float, optional
        For the cluster engines: seconds to wait to reach the cluster, for a worker, or
        while no worker runs a shard, before the run stops with one line, keeping the
        finished shards for a rerun (default: :data:`features.choices.DASK_TIMEOUT`, 60).
    runtime : {"keras", "onnx", "auto"}, optional
        How the base's forward pass runs (:mod:`features.runners`): ``"keras"`` (None, the
        default: ``"keras"``, or ``"onnx"`` for an ONNX file base, which runs on nothing else);
        ``"onnx"``: converted once to ONNX (stored, parity checked to 1e-4) and run by ONNX
        Runtime; ``"auto"``: the faster of the two for this base on this machine (probed
        once, stored). Not part of the fingerprint: ONNX runs only where its features equal
        Keras'; the runtime and its probe are in the provenance.
    store_dtype : {"float32", "float16"}
        How ``/features`` is stored: float16 halves the cache (part of the fingerprint;
        readers still give float32).
    compression : {"lzf", "gzip"}, optional
        Lossless HDF5 compression of ``/features`` (recorded in the provenance only).
    update : bool
        The cache exists for an older state of the source: extract only new or changed
        images, drop removed ones, reuse every other row (:mod:`features.update`); refused
        when the base or its settings differ.
    augment, views, seed
        ``seed`` seeds random weights (``weights="none"``: the same in every engine) and the
        views. Also store ``views`` augmented views of every image (recipe ``augment``, e.g.
        ``"flip,crop,rotate,color"``, seeded by ``seed``; :mod:`features.views`), made from
        the same decoded batch; part of the fingerprint. ``views=0`` or no ``augment`` is
        the plain cache. View ``k`` of an image depends only on the seed, its id and ``k``,
        so views compose with ``update``, the cluster engines, a resume and
        :func:`features.extract.extract_split` (train part only).

    Raises
    ------
    ValueError, CacheError, AugmentError
        When built: an option out of range, naming it and what is valid.

    Examples
    --------
    >>> ExtractOptions(batch_size=0)
    Traceback (most recent call last):
    ValueError: batch_size must be >= 1. Received: batch_size=0
    """

    weights: str | None = None
    image_size: int | tuple[int, int] | None = None
    pooling: str | None = None
    layer: str | None = None
    preprocess: str | None = None
    trust_graph: bool = False
    layout: str | None = None
    classes: str | list | None = None
    limit: int | None = None
    split: Split | None = None
    groups: str | None = None
    source_kind: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    target: str | None = None
    text_column: str | None = None
    max_length: int | None = None
    batch_size: int | None = None
    workers: int | None = None
    strict: bool = False
    force: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    compute_dtype: str | None = None
    progress: bool | None = None
    wait: Callable[[str], Any] | None = None
    engine: str = "local"
    scheduler: str | None = None
    shard_images: int | None = None
    timeout: float | None = None
    runtime: str | None = None
    store_dtype: str = "float32"
    compression: str | None = None
    update: bool = False
    augment: str | list[str] | None = None
    views: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2. Received: max_length={self.max_length}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1. Received: batch_size={self.batch_size}")
        check_storage(self.store_dtype, self.compression)
        if self.runtime is not None and self.runtime not in runtime_choices():
            raise ValueError(
                f"runtime must be one of {', '.join(runtime_choices())}. "
                f"Received: runtime={self.runtime!r}"
            )
        if self.engine not in ENGINES:
            raise ValueError(
                f"engine must be one of {', '.join(ENGINES)}. Received: engine={self.engine!r}"
            )
        self.made_views()  # checks the recipe and the count

    @classmethod
    def build(cls, options: ExtractOptions | None = None, **changes: Any) -> ExtractOptions:
        """``options`` (or the defaults) with ``changes``, checked.

        Raises
        ------
        TypeError
            A keyword that is no option, naming it (Keras style).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown extraction option(s) {', '.join(unknown)}; see ExtractOptions. "
                f"Received: {', '.join(f'{k}={changes[k]!r}' for k in unknown)}"
            )
        return dataclasses.replace(options or cls(), **changes)

    def replace(self, **changes: Any) -> ExtractOptions:
        """These options with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def made_views(self) -> Views | None:
        """The augmented views asked for (:meth:`features.views.Views.make`), or None."""
        from bottleneck_transfer.features.views import Views

        return Views.make(self.augment, self.views, self.seed)

    def given(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The options among ``names`` set to something other than their default."""
        defaults = ExtractOptions.__dataclass_fields__
        return {
            name: getattr(self, name)
            for name in names
            if getattr(self, name) != defaults[name].default
        }
