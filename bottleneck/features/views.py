"""Cached augmented views: K seeded augmentations of every decoded image, in the same pass.

Each batch is decoded once. View ``k`` of an image depends only on ``(seed, the image's id,
k)``: its random draws (flip, zoom, angle, contrast, brightness) are read from a BLAKE2b hash
of those, and the whole batch is then transformed at once (one affine resampling for the
geometric part, Keras ops; array arithmetic for colour). So an image's views do not depend on
its batch, shard, a resume or an update: every way of extracting a cache gives the same views.
The view rows of image ``id`` are ``id#view<k>``; :mod:`features.cache` lays them out after
every plain row and ties each to its plain row (``/views/source_row``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.cache.format import view_id

#: The augmentations, in the order they compose (a recipe's order does not matter).
AUGMENTATIONS: dict[str, str] = {
    "flip": "mirror left-right with probability 1/2",
    "crop": "zoom in on the centre by up to 25 % (a random crop, resized back)",
    "rotate": "rotate by up to 18 degrees either way (edges reflected)",
    "color": "contrast x0.7-1.3 about each channel's mean and brightness +-20 % of 255",
}
#: The uniform draws of one view of one image, by use (the same columns whatever the recipe).
_DRAWS = ("flip", "zoom", "angle", "contrast", "brightness")
_MAX_ANGLE = np.deg2rad(18.0)


class AugmentError(BottleneckError):
    """An ``--augment`` recipe names an unknown augmentation, or ``--views`` is invalid."""


def parse_recipe(recipe: str | Sequence[str]) -> tuple[str, ...]:
    """``"flip,crop"`` (or a list) as a tuple of known augmentation names, in composing order.

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
    return tuple(name for name in AUGMENTATIONS if name in names)


def uniforms(seed: int, ids: Sequence[str], k: int) -> np.ndarray:
    """float64 (len(ids), 5) in [0, 1): view ``k``'s draws for each id (see :data:`_DRAWS`),
    from a BLAKE2b hash of ``(seed, k, id)`` alone."""
    prefix = f"{int(seed)}:{int(k)}:".encode()
    size = 8 * len(_DRAWS)
    digests = b"".join(
        hashlib.blake2b(prefix + item_id.encode(), digest_size=size).digest() for item_id in ids
    )
    words = np.frombuffer(digests, "<u8").reshape(len(ids), len(_DRAWS))
    return (words >> np.uint64(11)) * 2.0**-53


@dataclass(frozen=True)
class Views:
    """``count`` augmented views of every image, by ``recipe``, seeded by ``seed``.

    Examples
    --------
    >>> views = Views.make("flip,crop", 2, seed=0)
    >>> views.augment(pixels, ["a.png", "b.png"], k=0).shape  # doctest: +SKIP
    (2, 224, 224, 3)
    """

    recipe: tuple[str, ...]
    count: int
    seed: int = 0

    @classmethod
    def make(cls, augment: str | Sequence[str] | None, count: int, seed: int) -> Views | None:
        """The views asked for, or None for none (``count`` 0: a plain cache).

        Raises
        ------
        AugmentError
            A negative ``count``, or views without a recipe to make them.
        """
        if count < 0:
            raise AugmentError(f"--views must be >= 0. Received: views={count}")
        if augment is None and count > 0:
            raise AugmentError(
                f"--views {count} needs --augment RECIPE to make them, a comma list of "
                f"{', '.join(AUGMENTATIONS)}. Received: augment=None, views={count}"
            )
        if augment is None or count == 0:
            return None
        return cls(parse_recipe(augment), int(count), int(seed))

    def identity(self) -> dict:
        """What enters the cache identity (so the fingerprint) and the provenance."""
        return {"recipe": list(self.recipe), "count": self.count, "seed": self.seed}

    def options(self) -> dict:
        """The :func:`features.extract.extract` arguments that make these views."""
        return {"augment": ",".join(self.recipe), "views": self.count, "seed": self.seed}

    def augment(self, pixels: np.ndarray, ids: Sequence[str], k: int) -> np.ndarray:
        """View ``k`` of the uint8 images ``pixels`` (B, H, W, C) whose ids are ``ids``."""
        draws = dict(zip(_DRAWS, uniforms(self.seed, ids, k).T, strict=True))
        x = pixels.astype(np.float32)
        if {"flip", "crop", "rotate"} & set(self.recipe):
            x = self._geometry(x, draws)
        if "color" in self.recipe:  # x -> contrast * (x - mean) + mean + brightness
            contrast = (0.7 + 0.6 * draws["contrast"])[:, None]
            brightness = 255 * 0.4 * (draws["brightness"] - 0.5)[:, None]
            mean = np.einsum("bhwc->bc", x) / (x.shape[1] * x.shape[2])
            shift = (1 - contrast) * mean + brightness
            x = x * contrast.astype(np.float32)[:, :, None, None]
            x += shift.astype(np.float32)[:, None, None, :]
        x = np.clip(x, 0, 255)  # a new array: a backend's output may be read-only
        return np.rint(x, out=x).astype(np.uint8)

    def _geometry(self, x: np.ndarray, draws: dict[str, np.ndarray]) -> np.ndarray:
        """Flip, zoom and rotation about the centre, as one affine resampling per image."""
        import keras

        n, height, width = x.shape[:3]
        flip = np.where(draws["flip"] < 0.5, -1.0, 1.0) if "flip" in self.recipe else np.ones(n)
        zoom = 1.0 - 0.25 * draws["zoom"] if "crop" in self.recipe else np.ones(n)
        angle = _MAX_ANGLE * (2 * draws["angle"] - 1) if "rotate" in self.recipe else np.zeros(n)
        cos, sin = zoom * np.cos(angle), zoom * np.sin(angle)
        # output pixel p samples the input at c + zoom * R(angle) @ diag(flip, 1) @ (p - c)
        a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2, b2 = cx - a0 * cx - a1 * cy, cy - b0 * cx - b1 * cy
        zero = np.zeros(n)
        transform = np.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1).astype(np.float32)
        out = keras.ops.image.affine_transform(
            x, transform, interpolation="bilinear", fill_mode="reflect", data_format="channels_last"
        )
        return keras.ops.convert_to_numpy(out)

    def with_views(
        self,
        pixels: np.ndarray,
        features: np.ndarray | list[np.ndarray],
        labels: np.ndarray,
        ids: Sequence[str],
        run_model: Callable[[np.ndarray], np.ndarray | list[np.ndarray]],
    ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]:
        """One batch's plain rows (``features``, ``labels``, ``ids``) followed by its views'.

        ``features`` and ``run_model``'s outputs are one array, or one per layer (several
        layers in one pass); the rows are stacked alike.
        """
        parts = [features] + [run_model(self.augment(pixels, ids, k)) for k in range(self.count)]
        if isinstance(features, list):
            stacked = [np.concatenate(layer) for layer in zip(*parts, strict=True)]
        else:
            stacked = np.concatenate(parts)
        view_ids = [view_id(i, k) for k in range(self.count) for i in ids]
        return stacked, np.tile(labels, self.count + 1), list(ids) + view_ids
