"""Base kinds by registry: each kind one module, detected from the ``--base`` spec.

A kind module provides

``KIND``
    Its name (the key in :data:`BASE_KINDS`).
``POOLINGS``
    The ``pooling`` values it takes (optional; default ``avg``, ``max``).
``LAYOUTS``
    The input layouts ``--layout`` may give (optional; default none: NHWC pixels only).
``DEFAULT_POOLING``
    The pooling when none is asked (optional; default ``avg``; None: chosen per model).
``detect(base) -> bool``
    Whether ``base`` (a name, a path or a handle, as given to ``--base``) is of this kind.
    Kinds are asked in :data:`BASE_KINDS` order; the last, ``application``, takes any name.
``build(base, request) -> Built``
    The model cut at ``request.layer`` and pooled (:class:`~.built.Built`;
    ``request`` is the whole :class:`~.built.BaseRequest`), ready for :func:`~.load.load_base`
    to freeze and describe.
``rebuild_spec(described, base_path, weights, cache_path) -> (spec, weights) | None``
    For a cache's provenance ``base`` entry this kind made: what to pass ``load_base`` again
    (the spec, and the ``weights`` to try in turn); None for another kind's
    (:func:`~bottleneck_transfer.features.rebuild.rebuild_base`: export, finetune, baselines).
``backbone(base, request) -> Backbone``
    Optional: the uncut model, for kinds that cut several layers in one pass (``--layers``).

Adding a base kind (an ONNX file, a torch model by name) is its module and one entry in
:data:`BASE_KINDS`, placed before the kinds whose ``detect`` would also claim its spec.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from bottleneck_transfer.features.bases import (
    application,
    model_file,
    onnx_file,
    pixels,
    preset,
    saved_model,
    text,
)
from bottleneck_transfer.features.bases.common import POOLINGS

#: Kind name -> its module, in detection order (folders and names before the fallbacks).
BASE_KINDS: dict[str, ModuleType] = {
    "pixels": pixels,
    "text-preset": text,
    "preset": preset,
    "saved_model": saved_model,
    "onnx_file": onnx_file,
    "model_file": model_file,
    "application": application,
}


def base_kind(base: str | Path) -> ModuleType:
    """The module of the first kind in :data:`BASE_KINDS` that detects ``base``.

    Raises
    ------
    BaseModelError
        From a kind's ``detect`` (a folder that is neither a preset nor a SavedModel).
    """
    return next(module for module in BASE_KINDS.values() if module.detect(base))


def poolings(kind: ModuleType) -> tuple[str, ...]:
    """The ``pooling`` values ``kind`` takes."""
    return getattr(kind, "POOLINGS", POOLINGS)


def layouts(kind: ModuleType) -> tuple[str, ...]:
    """The ``layout`` values ``kind`` takes (none: it takes NHWC pixels only)."""
    return getattr(kind, "LAYOUTS", ())


def default_pooling(kind: ModuleType) -> str | None:
    """The ``pooling`` of ``kind`` when none is asked: its ``DEFAULT_POOLING`` (None: the
    kind chooses per model, as a text base does), else ``avg``."""
    return getattr(kind, "DEFAULT_POOLING", "avg")


def cuts_layers(kind: ModuleType) -> bool:
    """Whether ``kind`` cuts several layers in one pass (has ``backbone``)."""
    return hasattr(kind, "backbone")
