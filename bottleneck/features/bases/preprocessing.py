"""Input normalisation as a per-channel affine map ``x @ W + b`` on raw pixels (0..255).

A base's preprocessing is a frozen affine layer inside its model (see :mod:`features.bases`),
so it is part of the model file and of the cache fingerprint (``W`` and ``b`` are recorded).
``--preprocess`` (and ``[base] preprocess`` in a pipeline spec) takes either

* a named mode: ``none`` (x), ``unit`` (x / 255), ``tf`` (x / 127.5 - 1), ``torch``
  (x / 255 minus the ImageNet mean, over its std), ``caffe`` (RGB to BGR, minus the ImageNet
  mean); ``none``, ``unit`` and ``tf`` fit any number of channels, ``torch`` and ``caffe``
  only RGB; or
* ``mean=M,std=S``: ``(x - M) / S``, with ``M`` and ``S`` one number for every channel or
  one per channel, comma-separated: ``mean=127.5,std=127.5`` (a model trained on [-1, 1]),
  ``mean=123.7,116.3,103.5;std=58.4,57.1,57.4`` (``;`` or ``,`` between the two keys;
  either key may be left out: mean 0, std 1).

This module needs only NumPy, so the CLI and spec validation can check a value cheaply.
"""

from __future__ import annotations

import math
import re

import numpy as np
from bottleneck_transfer.errors import BaseModelError

PREPROCESS_MODES = ("none", "unit", "tf", "torch", "caffe")
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_MODE_AFFINE = {
    "none": (np.eye(3), np.zeros(3)),
    "unit": (np.eye(3) / 255.0, np.zeros(3)),
    "tf": (np.eye(3) / 127.5, -np.ones(3)),
    "torch": (np.diag(1 / (255.0 * _IMAGENET_STD)), -_IMAGENET_MEAN / _IMAGENET_STD),
    "caffe": (np.eye(3)[::-1].copy(), -np.array([103.939, 116.779, 123.68])),
}
_KEY = re.compile(r"\s*\b(mean|std)\s*=\s*")
SYNTAX = (
    f"{', '.join(PREPROCESS_MODES)}, or mean=M,std=S with one number or one per channel "
    "(mean=123.7,116.3,103.5;std=58.4,57.1,57.4)"
)


def _error(spec: str, problem: str) -> BaseModelError:
    return BaseModelError(
        f"invalid --preprocess: {problem}. Received: preprocess={spec!r}; valid: {SYNTAX}"
    )


def _numbers(spec: str, key: str, text: str) -> list[float]:
    tokens = [t for t in re.split(r"[\s,;]+", text) if t]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise _error(spec, f"{key}= needs numbers separated by commas")
    if key == "std" and not all(v > 0 for v in values):
        raise _error(spec, "std= must be > 0")
    return values


def mean_std(spec: str) -> tuple[list[float], list[float]]:
    """The ``mean`` and ``std`` lists of a ``mean=...,std=...`` spec (defaults 0 and 1).

    Raises
    ------
    BaseModelError
        If ``spec`` is not of that form.

    Examples
    --------
    >>> mean_std("mean=127.5,std=127.5")
    ([127.5], [127.5])
    >>> mean_std("mean=1,2,3;std=4")
    ([1.0, 2.0, 3.0], [4.0])
    """
    parts = _KEY.split(spec)
    if parts[0].strip() or len(parts) < 3:
        raise _error(spec, "not a named mode nor mean=...,std=...")
    given: dict[str, list[float]] = {}
    for key, text in zip(parts[1::2], parts[2::2], strict=True):
        if key in given:
            raise _error(spec, f"{key}= given twice")
        given[key] = _numbers(spec, key, text)
    return given.get("mean", [0.0]), given.get("std", [1.0])


def check_preprocess(spec: str) -> None:
    """Raise :class:`BaseModelError` unless ``spec`` is a named mode or a valid mean/std."""
    if spec not in PREPROCESS_MODES:
        mean_std(spec)


def _per_channel(spec: str, key: str, values: list[float], channels: int) -> np.ndarray:
    if len(values) not in (1, channels):
        raise _error(
            spec,
            f"{key}= has {len(values)} values; the base has {channels} channel(s): give 1"
            + (f" or {channels}" if channels > 1 else ""),
        )
    return np.broadcast_to(np.asarray(values, np.float64), (channels,)).copy()


def preprocess_affine(spec: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)``, shapes ``(C, C)`` and ``(C,)``, of a preprocessing spec for ``C`` channels.

    Raises
    ------
    BaseModelError
        If ``spec`` is invalid, or does not fit ``channels`` (``torch`` on a grayscale base,
        three means for one channel).

    Examples
    --------
    >>> weight, bias = preprocess_affine("mean=127.5,std=127.5", 1)
    >>> float(255 * weight[0, 0] + bias[0]), float(bias[0])
    (1.0, -1.0)
    """
    if spec in PREPROCESS_MODES:
        weight, bias = _MODE_AFFINE[spec]
        if channels == 3:
            return weight.copy(), bias.copy()
        scale = weight[0, 0]
        if not (np.allclose(weight, scale * np.eye(3)) and np.allclose(bias, bias[0])):
            raise BaseModelError(
                f"preprocessing {spec!r} has per-colour constants and needs 3 channels; the "
                f"base has {channels}: give its normalisation as mean=M,std=S. "
                f"Received: preprocess={spec!r}"
            )
        return scale * np.eye(channels), np.full(channels, bias[0])
    mean, std = mean_std(spec)
    mean_c = _per_channel(spec, "mean", mean, channels)
    std_c = _per_channel(spec, "std", std, channels)
    return np.diag(1 / std_c), 0.0 - mean_c / std_c  # 0.0 - : no -0.0 (same bytes as 0)


def describe_preprocess(affine: tuple[np.ndarray, np.ndarray], spec: str | None) -> dict:
    """The preprocessing as a base's description (so the cache fingerprint) records it.

    The affine, rounded; for a ``mean=...,std=...`` spec also its per-channel statistics, which
    rebuild the base bit for bit (the rounded affine does not fix its float32 weights).
    """
    weight, bias = affine
    described = {"weight": np.round(weight, 8).tolist(), "bias": np.round(bias, 8).tolist()}
    if spec is not None and spec not in PREPROCESS_MODES:
        mean, std = mean_std(spec)
        described["mean"] = _per_channel(spec, "mean", mean, len(bias)).tolist()
        described["std"] = _per_channel(spec, "std", std, len(bias)).tolist()
    return described


def candidate_specs(described: dict) -> list[str]:
    """Specs that may rebuild a recorded preprocessing (see :func:`describe_preprocess`).

    Its ``mean``/``std`` when recorded, else the named modes whose affine it is; the caller
    checks which candidate reproduces the base.
    """
    if "mean" in described and "std" in described:
        mean = ",".join(repr(float(v)) for v in described["mean"])
        std = ",".join(repr(float(v)) for v in described["std"])
        return [f"mean={mean};std={std}"]
    specs = []
    for mode in PREPROCESS_MODES:
        try:
            affine = preprocess_affine(mode, len(described.get("bias", [])))
        except BaseModelError:
            continue
        recorded = describe_preprocess(affine, None)
        if recorded == {k: described.get(k) for k in ("weight", "bias")}:
            specs.append(mode)
    return specs
