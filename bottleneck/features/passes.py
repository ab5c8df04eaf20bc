"""One pass over the images: the model run on every batch and the caches it feeds.

A :class:`Pass` is one base that is its own runner (one cache), or several layers of one model
computed by one joint model (:func:`features.bases.load_layers`; one cache per layer, each
with the description a single-layer base gives it). :class:`FanOut` splits each batch's
outputs among the caches' writers, so the extraction loop drives them as one writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import Base
from bottleneck_transfer.features.bases.load import load_base, load_layers
from bottleneck_transfer.features.cache.writer import CacheWriter
from bottleneck_transfer.features.choices import COMPUTE_DTYPES


def _retyped_config(config, policy: str):
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
            config.get("config"), dict
        ):
            return {**config, "config": {**config["config"], "name": policy}}
        return {key: _retyped_config(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_retyped_config(value, policy) for value in config]
    return config


def with_compute_dtype(base: Base, compute_dtype: str | None) -> Base:
    """The base computing in ``bfloat16`` or ``float16`` (Keras mixed precision).

    Weights stay float32 and features are still stored as float32; the dtype enters the
    base's description (so the cache fingerprint), since the features differ slightly.
    ``None`` or ``"float32"`` returns ``base`` unchanged. Meant for accelerators, but
    bfloat16 also pays on CPUs with AVX512-BF16 or AMX: measured on a 2-core AMD EPYC,
    ResNet50 runs 1.15-1.5x faster with features 0.35 % (median relative error) from float32,
    while MobileNetV2 (depthwise convolutions) gains nothing. float16 can overflow on bases
    without normalisation.
    """
    if compute_dtype in (None, "float32"):
        return base
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"unknown compute dtype. Received: compute_dtype={compute_dtype!r}; "
            f"valid: {', '.join(COMPUTE_DTYPES)}"
        )
    if base.description.get("compute_dtype", "float32") == compute_dtype:
        return base
    hub.refuse_saved_model(base.description, f"--compute-dtype {compute_dtype}")
    config = _retyped_config(base.model.get_config(), f"mixed_{compute_dtype}")
    model = base.model.__class__.from_config(config)
    model.set_weights(base.model.get_weights())
    model.trainable = False
    description = {**base.description, "compute_dtype": compute_dtype}
    return Base(model, base.name, base.image_size, base.channels, description)


@dataclass(frozen=True)
class Pass:
    """What one pass over the images computes, and which caches it feeds.

    ``runner`` is the model run on every batch; ``bases`` the single-layer base of each cache
    the pass writes (its description makes the cache's fingerprint), fed by the runner output
    ``outputs[i]``: one base that is its own runner, or several layers of one model
    (:func:`load_pass` with ``layers``). ``recipe`` rebuilds the pass on a Dask worker; None
    for a :class:`Base` object.
    """

    runner: Base
    bases: tuple[Base, ...]
    outputs: tuple[int, ...] = (0,)
    recipe: dict | None = None

    def select(self, keep: Sequence[int]) -> Pass:
        """The same pass feeding only the caches ``keep`` (indices into :attr:`bases`)."""
        recipe = self.recipe
        if recipe is not None and recipe.get("layers"):
            recipe = {**recipe, "layers": [recipe["layers"][k] for k in keep]}
        bases = tuple(self.bases[k] for k in keep)
        return Pass(self.runner, bases, tuple(self.outputs[k] for k in keep), recipe)

    def split(self, features: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """Each cache's rows of one batch of runner outputs (one array, or one per output)."""
        outputs = features if isinstance(features, list) else [features]
        return [outputs[k] for k in self.outputs]


def load_pass(
    base: str | Path,
    *,
    layer: str | None = None,
    layers: Sequence[str] | None = None,
    weights: str | None = None,
    image_size: int | tuple[int, int] | list[int] | None = None,
    pooling: str = "avg",
    preprocess: str | None = None,
    compute_dtype: str | None = None,
    trust_graph: bool = False,
    seed: int = 0,
) -> Pass:
    """The pass of ``base`` cut at ``layer`` (one cache), or at every one of ``layers``
    (one cache per layer, one model computing them all: :func:`features.bases.load_layers`).

    Its recipe holds these arguments, so ``load_pass(**job.recipe)`` rebuilds it (on a Dask
    worker); ``seed`` seeds random weights (``weights="none"``), equal wherever it is built.
    """
    path = hub.spelled_path(base)
    recipe = {
        "base": str(path.resolve()) if path is not None and path.exists() else str(base),
        "layer": layer,
        "layers": None if layers is None else list(layers),
        "weights": weights,
        "image_size": list(image_size) if isinstance(image_size, tuple) else image_size,
        "pooling": pooling,
        "preprocess": preprocess,
        "compute_dtype": compute_dtype,
        "trust_graph": trust_graph,
        "seed": seed,
    }
    size = tuple(image_size) if isinstance(image_size, list) else image_size
    shaping = {
        "weights": weights,
        "image_size": size,
        "pooling": pooling,
        "preprocess": preprocess,
        "seed": seed,
    }
    if layers is None:
        loaded = load_base(base, layer=layer, trust_graph=trust_graph, **shaping)
        one = with_compute_dtype(loaded, compute_dtype)
        return Pass(one, (one,), recipe=recipe)
    bases, joint = load_layers(base, layers, **shaping)
    first = bases[0]
    runner = Base(joint, first.name, first.image_size, first.channels, first.description)
    return Pass(
        with_compute_dtype(runner, compute_dtype),
        tuple(with_compute_dtype(b, compute_dtype) for b in bases),
        tuple(range(len(bases))),
        recipe,
    )


class FanOut:
    """The writers of the caches of one pass, driven by the extraction loop as one writer:
    each batch's runner outputs are split among them (:meth:`Pass.split`); each finalizes its
    own path."""

    def __init__(self, writers: list[CacheWriter], job: Pass, paths: list[Path]) -> None:
        self.writers, self.job, self.paths = writers, job, paths
        self.path = writers[0].path

    def write_batch(self, features: np.ndarray | list[np.ndarray], *rest: Any) -> None:
        for writer, rows in zip(self.writers, self.job.split(features), strict=True):
            writer.write_batch(rows, *rest)

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
