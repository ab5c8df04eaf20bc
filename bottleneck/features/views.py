"""Cached augmented views: K seeded augmentations of every decoded batch, in the same pass.

Each batch is decoded once; view ``k`` of it is made by a fresh pipeline of Keras
preprocessing layers seeded from ``(seed, batch start, k)``, so a resumed or repeated run
gives the same views. The view rows of image ``id`` are stored as ``id#view<k>`` after every
plain row, and ``/views/source_row`` ties each row to its plain row
(:meth:`features.cache.FeatureCache.source_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.cache import view_id

#: Augmentation names and their Keras layers, each built with an explicit seed.
AUGMENTATIONS: dict[str, Callable[[int], list[keras.layers.Layer]]] = {
    "flip": lambda seed: [keras.layers.RandomFlip("horizontal", seed=seed)],
    "crop": lambda seed: [keras.layers.RandomZoom((-0.25, 0.0), fill_mode="reflect", seed=seed)],
    "rotate": lambda seed: [keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed)],
    "color": lambda seed: [
        keras.layers.RandomContrast(0.3, seed=seed),
        keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 1),
    ],
}


class AugmentError(BottleneckError):
    """An ``--augment`` recipe names an unknown augmentation, or ``--views`` is invalid."""


def parse_recipe(recipe: str | Sequence[str]) -> tuple[str, ...]:
    """``"flip,crop"`` (or a list) as a tuple of known augmentation names.

    Raises
    ------
    AugmentError
        An empty recipe or an unknown name (the valid ones listed).
    """
    names = recipe.split(",") if isinstance(recipe, str) else list(recipe)
    names = [name.strip() for name in names if name.strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown or not names:
        raise AugmentError(
            f"--augment: unknown augmentation(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(AUGMENTATIONS)}. Received: augment={recipe!r}"
        )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Views:
    """``count`` augmented views of every image, by ``recipe``, seeded by ``seed``.

    Views depend on the batch size (a batch is augmented as one tensor), which is therefore
    part of :meth:`identity`.
    """

    recipe: tuple[str, ...]
    count: int
    seed: int = 0

    @classmethod
    def make(cls, augment: str | Sequence[str] | None, count: int, seed: int) -> Views | None:
        """The views asked for, or None for none (no recipe or ``count`` 0: a plain cache)."""
        if count < 0:
            raise AugmentError(f"--views must be >= 0. Received: views={count}")
        if augment is None or count == 0:
            return None
        return cls(parse_recipe(augment), int(count), int(seed))

    def identity(self, batch_size: int) -> dict:
        """What enters the cache identity (so the fingerprint) and the provenance."""
        return {
            "recipe": list(self.recipe),
            "count": self.count,
            "seed": self.seed,
            "batch_size": int(batch_size),
        }

    def augment(self, pixels: np.ndarray, start: int, k: int) -> np.ndarray:
        """View ``k`` of the uint8 batch ``pixels`` whose first item is source item ``start``."""
        seed = int(np.random.SeedSequence([self.seed, start, k]).generate_state(1)[0] >> 1)
        x = keras.ops.convert_to_tensor(pixels.astype(np.float32))
        for offset, name in enumerate(self.recipe):
            for layer in AUGMENTATIONS[name](seed + 7919 * offset):
                x = layer(x, training=True)
        out = keras.ops.convert_to_numpy(x)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def rows(
        self,
        pixels: np.ndarray,
        start: int,
        ids: Sequence[str],
        labels: np.ndarray,
        run_model: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Features, labels and ids of the views of one batch, view by view."""
        features = [run_model(self.augment(pixels, start, k)) for k in range(self.count)]
        view_ids = [view_id(i, k) for k in range(self.count) for i in ids]
        return np.concatenate(features), np.tile(labels, self.count), view_ids
