"""Rebuild the base a cache was made with from the cache's provenance."""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import POOLINGS, Base
from bottleneck_transfer.features.bases.load import load_base
from bottleneck_transfer.features.bases.preprocessing import candidate_specs
from bottleneck_transfer.features.runtimes import with_compute_dtype
from bottleneck_transfer.fingerprint import sha256_file


def _repo_bases_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "bases"


def _resolve_base_file(described: dict, base_path: str | Path | None, cache_path: Path) -> Path:
    """Find the base model file named in the provenance and verify its sha256."""
    name = described["file"]
    expected = described.get("file_sha256")
    if base_path is not None:
        path = Path(base_path).expanduser()
        if not path.is_file():
            raise BaseModelError(f"base model file not found: {path} (--base)")
        actual = sha256_file(path)
        if expected and actual != expected:
            raise BaseModelError(
                f"{path} is not the base the cache {cache_path} was made with: its sha256 is "
                f"{actual}, the cache's base {name} has {expected}"
            )
        return path
    candidates = _candidates(name, cache_path)
    for path in candidates:
        if path.is_file() and (not expected or sha256_file(path) == expected):
            return path
    raise BaseModelError(
        f"the cache {cache_path} was made with the base model file {name} ({expected}), "
        f"which is not in {', '.join(str(c.parent) for c in candidates)}; "
        "point at it with --base PATH"
    )


def _candidates(name: str, cache_path: Path) -> list[Path]:
    """Where a base named only by its file or folder name is looked for."""
    folders = [Path.cwd(), cache_path.parent, cache_path.parent.parent, _repo_bases_dir()]
    return [folder / name for folder in folders]


def _hub_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]]:
    """A hub base: its handle, or its folder (``--base``, else found by name; the weights'
    sha256 check in :func:`rebuild_base` decides whether it is the same)."""
    weight_args = [str(weights) if weights is not None else described.get("weights")]
    if base_path is not None:
        return Path(base_path).expanduser(), weight_args
    if "preset" in described:
        return described["preset"], weight_args
    name = described.get("preset_folder") or described["saved_model"]
    for path in _candidates(name, cache_path):
        if path.is_dir():
            return path, weight_args
    raise BaseModelError(
        f"the cache {cache_path} was made with the hub base folder {name}, which is not beside "
        "it or in the working directory; point at it with --base PATH"
    )


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
    """What to pass to ``load_base``: the base and the ``weights`` arguments to try in turn.

    A model file's own weights are tried as ``"file"`` and as ``None`` (the default of
    ``bottleneck extract``; both must give the same weights, and the sha256 check below
    decides).
    """
    weights_id = described.get("weights")
    if any(key in described for key in hub.NAME_KEYS):
        return _hub_spec(described, base_path, weights, cache_path)
    if "file" in described:
        spec: str | Path = _resolve_base_file(described, base_path, cache_path)
        if weights is not None:
            return spec, [str(weights)]
        if weights_id == "file":
            return spec, ["file", None]
        if weights_id in ("none", "random"):
            return spec, [weights_id]
        raise BaseModelError(
            f"the cache {cache_path} was made with the weights file {weights_id!r} for "
            f"{described['file']}; pass it with --weights PATH"
        )
    if "application" not in described:
        raise BaseModelError(f"{cache_path}: the provenance names no base (application or file)")
    if weights is not None:
        return described["application"], [str(weights)]
    if weights_id == "file":
        raise BaseModelError(
            f"the cache {cache_path} was made with a weights file for "
            f"{described['application']}; pass it with --weights PATH"
        )
    return described["application"], [weights_id]
