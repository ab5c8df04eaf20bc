"""Base kind ``application``: a ``keras.applications`` model by name (``resnet50``,
``MobileNetV2``), any spelling; ``--weights imagenet`` (default), ``none`` or a file. Its own
``preprocess_input`` is measured once and rebuilt as a frozen per-channel affine layer.

The fallback kind: any base that spells a name (not a path) and no other kind claims.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.errors import BaseModelError, did_you_mean
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.built import Backbone, BaseRequest, Built, cut, weights_arg
from bottleneck_transfer.features.bases.common import PIXELS, _key, random_weights
from bottleneck_transfer.features.bases.preprocessing import preprocess_affine

if TYPE_CHECKING:
    import keras

KIND = "application"


#: Input sizes the applications were trained at (others: 224).
_DEFAULT_SIZES = {
    "inceptionv3": 299,
    "inceptionresnetv2": 299,
    "xception": 299,
    "nasnetlarge": 331,
    "efficientnetb1": 240,
    "efficientnetb2": 260,
    "efficientnetb3": 300,
    "efficientnetb4": 380,
    "efficientnetb5": 456,
    "efficientnetb6": 528,
    "efficientnetb7": 600,
    "efficientnetv2b1": 240,
    "efficientnetv2b2": 260,
    "efficientnetv2b3": 300,
    "efficientnetv2s": 384,
    "efficientnetv2m": 480,
    "efficientnetv2l": 480,
}


def detect(base: str | Path) -> bool:
    """Whether ``base`` spells a name (any name: unknown ones are refused by :func:`build`)."""
    return hub.spelled_path(base) is None


def build(base: str | Path, request: BaseRequest) -> Built:
    """The application cut at ``request.layer`` and pooled."""
    return cut(backbone(base, request), request.layer, request.pooling)


def backbone(base: str | Path, request: BaseRequest) -> Backbone:
    """The application without its top, at its training size unless ``request.size``."""
    import keras

    name = resolve_application(str(base))
    size = request.size or (_DEFAULT_SIZES.get(_key(name), 224),) * 2
    keras_weights = weights_arg("imagenet" if request.weights is None else request.weights)
    model = _build_application(name, keras_weights, size, request.seed)
    module = importlib.import_module(getattr(keras.applications, name).__module__)
    preprocess = request.preprocess
    affine = (
        preprocess_affine(preprocess, 3) if preprocess else _measure_affine(module.preprocess_input)
    )
    weights_id = keras_weights if keras_weights in (None, "imagenet") else "file"
    origin = {"application": name}
    return Backbone(model, name, name, origin, weights_id or "none", size, 3, affine)


def application_names() -> list[str]:
    """Names of every ``keras.applications`` model (``ResNet50``, ``MobileNetV2``, ...)."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def resolve_application(name: str) -> str:
    """Map ``resnet50`` / ``mobilenet_v2`` / ``ResNet50`` to the application's own name.

    Raises
    ------
    BaseModelError
        For a name no application has; when a file or folder of that name is in the working
        directory, saying how to pick it (``./name``: see :func:`features.hub.spelled_path`).
    """
    matches = [n for n in application_names() if _key(n) == _key(name)]
    if not matches and Path(name).exists():
        raise BaseModelError(
            f"base {name!r} is a name, and no registered model has it; the file or folder "
            f"{name} in the working directory is used only when spelled as a path. Received: "
            f"base={name!r}; pass --base ./{name} for it, or a keras.applications name"
        )
    if not matches:
        close = did_you_mean(name, application_names(), key=_key)
        raise BaseModelError(
            f"unknown base {name!r}: not a model file and not a keras.applications name.{close} "
            f"Received: base={name!r}; valid names include {', '.join(application_names())}, "
            f"{PIXELS!r}, or a path to a .keras/.h5 model"
        )
    return matches[0]


def _measure_affine(preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Recover ``preprocess(x) == x @ W + b`` per pixel from probes, and check it holds."""
    import keras

    probes = np.zeros((4, 1, 1, 3), np.float32)
    for c in range(3):
        probes[c + 1, 0, 0, c] = 100.0
    out = keras.ops.convert_to_numpy(preprocess(probes.copy())).astype(np.float64)
    bias = out[0, 0, 0]
    weight = np.stack([(out[c + 1, 0, 0] - bias) / 100.0 for c in range(3)])
    check = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(preprocess(check.copy()))
    if not np.allclose(check @ weight + bias, expected, atol=1e-3):
        raise BaseModelError("the application's preprocess_input is not a per-channel affine map")
    return weight, bias


def _build_application(
    name: str, weights: str | None, size: tuple[int, int], seed: int
) -> keras.Model:
    import keras

    builder = getattr(keras.applications, name)
    try:
        model = builder(include_top=False, weights=weights, input_shape=(*size, 3))
        return random_weights(model, seed) if weights is None else model
    except ValueError as exc:
        raise BaseModelError(f"cannot build {name} at {size[0]}x{size[1]}: {exc}") from exc
    except Exception as exc:
        if weights == "imagenet" and _looks_like_download_failure(exc):
            raise BaseModelError(
                f"could not download the imagenet weights of {name} (no internet?). "
                f"Download them once on a connected machine (they are cached in "
                f"~/.keras/models/), pass --weights PATH to a weights file, or use "
                f"--weights none for random weights. ({type(exc).__name__}: {exc})"
            ) from exc
        raise


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("url", "fetch", "download", "connection", "resolve"))


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The application a cache's provenance names and the ``weights`` to try; None when
    ``described`` is not an application's."""
    if "application" not in described:
        return None
    if weights is not None:
        return described["application"], [str(weights)]
    if described.get("weights") == "file":
        raise BaseModelError(
            f"the cache {cache_path} was made with a weights file for "
            f"{described['application']}; pass it with --weights PATH"
        )
    return described["application"], [described.get("weights")]
