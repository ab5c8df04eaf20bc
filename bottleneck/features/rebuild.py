"""Rebuild the base a cache was made with from the cache's provenance."""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import POOLINGS, Base
from bottleneck_transfer.features.bases.load import load_base
from bottleneck_transfer.features.bases.preprocessing import candidate_specs
from bottleneck_transfer.features.bases.registry import BASE_KINDS
from bottleneck_transfer.features.runtimes import with_compute_dtype


def _preprocess_modes(described: dict) -> list[str | None]:
    """Preprocessing to try: the base's default first, then specs that may give its affine."""
    stored = described.get("preprocess") or {}
    # A SavedModel has no preprocessing of its own: one was given.
    modes: list[str | None] = [] if "saved_model" in described else [None]
    modes += candidate_specs(stored)
    return modes


def rebuild_base(
    described: dict,
    *,
    base_path: str | Path | None = None,
    weights: str | Path | None = None,
    cache_path: str | Path = ".",
) -> Base:
    """Rebuild the base a cache was made with from its provenance ``base`` entry.

    Parameters
    ----------
    described : dict
        ``FeatureCache.provenance["base"]`` (application or file, weights, layer, pooling,
        input shape, preprocessing, ``weights_sha256``).
    base_path : str or Path, optional
        The base model file, for caches made from a file (provenance holds only its name
        and sha256; without it the file is looked for beside the cache, in the working
        directory and in the package's ``data/bases``).
    weights : str or Path, optional
        The weights file, for caches made with ``--weights FILE``.
    cache_path : str or Path
        The cache (for messages and the file search).

    Raises
    ------
    BaseModelError
        If the base cannot be found or built, or its weights differ from the cache's.
    """
    cache_path = Path(cache_path)
    if described.get("input") == "text":
        return _rebuild_text(described, base_path, weights, cache_path)
    shape = described.get("input_shape") or []
    if len(shape) != 3:
        raise BaseModelError(f"{cache_path}: the provenance has no base input shape")
    size = (int(shape[0]), int(shape[1]))
    channels = int(shape[2])
    layer = described.get("layer")
    layer = None if layer in (None, "penultimate") else layer
    pooling = described.get("pooling")
    pooling = pooling if pooling in (*POOLINGS, hub.TOKEN) else "avg"
    spec, weight_args = _base_spec(described, base_path, weights, cache_path)
    expected = described.get("weights_sha256")
    found: list[str] = []
    for weights_arg in weight_args:
        for mode in _preprocess_modes(described):
            base = load_base(
                spec,
                weights=weights_arg,
                image_size=size,
                pooling=pooling,
                layer=layer,
                preprocess=mode,
                channels=channels,
                seed=int(described.get("weights_seed", 0)),
                layout=described.get("layout"),
            )
            if base.description.get("preprocess") != described.get("preprocess"):
                continue
            if base.description.get("weights_sha256") == expected:
                return _with_compute_dtype(base, described.get("compute_dtype"))
            found.append(str(base.description.get("weights_sha256")))
            break
    if not found:
        raise BaseModelError(
            f"cannot rebuild the preprocessing of the cache {cache_path}'s base "
            f"({described.get('preprocess')})"
        )
    raise BaseModelError(
        f"the rebuilt base {spec} has other weights than the ones the cache {cache_path} was "
        f"made with (weights_sha256 {found[0]} != {expected}); point --base/--weights at the "
        "exact model and weights used for extraction"
    )


def _rebuild_text(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> Base:
    """A text base (:mod:`.bases.text`) from its provenance, its weights checked."""
    spec, weight_args = _base_spec(described, base_path, weights, cache_path)
    layer = described.get("layer")
    base = load_base(
        spec,
        weights=weight_args[0],
        pooling=described.get("pooling"),
        layer=None if layer in (None, "last") else layer,
        max_length=described.get("max_length"),
        seed=int(described.get("weights_seed", 0)),
    )
    if base.description.get("weights_sha256") != described.get("weights_sha256"):
        raise BaseModelError(
            f"the rebuilt text base {spec} has other weights than the ones the cache "
            f"{cache_path} was made with; point --base at the exact preset used for extraction"
        )
    return _with_compute_dtype(base, described.get("compute_dtype"))


def _with_compute_dtype(base: Base, compute_dtype: str | None) -> Base:
    """Apply the mixed-precision compute dtype the cache was extracted with, if any."""
    if compute_dtype in (None, "float32"):
        return base
    return with_compute_dtype(base, compute_dtype)


def _base_spec(
    described: dict,
    base_path: str | Path | None,
    weights: str | Path | None,
    cache_path: Path,
) -> tuple[str | Path, list[str | None]]:
    """What to pass to ``load_base``: the base and the ``weights`` arguments to try in turn,
    from the first base kind (:data:`~.bases.registry.BASE_KINDS`) that made ``described``."""
    for kind in BASE_KINDS.values():
        found = kind.rebuild_spec(described, base_path, weights, cache_path)
        if found is not None:
            return found
    raise BaseModelError(f"{cache_path}: the provenance names no base (application or file)")
