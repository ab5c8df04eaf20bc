"""Runtimes: how a base's forward pass runs, and what one pass over the images computes.

:class:`BatchRunner` runs a model on fixed-size batches (the last one padded, so one
compiled call serves all), casting uint8 to the model's float input inside the graph;
:func:`default_batch_size` sizes batches for the device and the input size.

A :class:`Pass` is one base that is its own runner (one cache), or several layers of one model
computed by one joint model (:func:`features.bases.load_layers`; one cache per layer, each
with the description a single-layer base gives it). :class:`FanOut` splits each batch's
outputs among the caches' writers, so the extraction loop drives them as one writer.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import Base
from bottleneck_transfer.features.bases.load import load_base, load_layers
from bottleneck_transfer.features.choices import COMPUTE_DTYPES

if TYPE_CHECKING:
    import keras


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
    return dataclasses.replace(base, model=model, description=description)


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
    pooling: str | None = None,
    preprocess: str | None = None,
    compute_dtype: str | None = None,
    trust_graph: bool = False,
    seed: int = 0,
    layout: str | None = None,
    max_length: int | None = None,
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
        "layout": layout,
        **({"max_length": max_length} if max_length is not None else {}),
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
        loaded = load_base(
            base,
            layer=layer,
            trust_graph=trust_graph,
            layout=layout,
            max_length=max_length,
            **shaping,
        )
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


#: Images per model call on a CPU at 224 x 224 (other sizes scale by pixel count).
CPU_BATCH = 64


#: Images per model call on an accelerator at 224 x 224 (other sizes scale by pixel count).
ACCELERATOR_BATCH = 256


def accelerator_devices() -> list[str]:
    """The accelerators (``gpu:0``, ``tpu:0``, ...) the Keras backend sees; empty on a CPU."""
    import keras

    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without device listing: assume a CPU
        return []
    return [d for d in devices if not str(d).lower().startswith("cpu")]


def default_batch_size(
    image_size: tuple[int, int], n_items: int | None = None, accelerator: bool | None = None
) -> int:
    """Images per model call: 64 on a CPU, 256 on an accelerator, for 224 x 224 inputs.

    Other input sizes scale by pixel count (a power of two between 16 and 1024), so small
    inputs get bigger batches (less per-call overhead) and big ones smaller (memory); a
    source of fewer than that many images runs as one batch of exactly its size, since the
    last batch is padded to the batch size and padding is wasted compute (27 images in a
    64-batch ran at 0.44 x the limit).

    Examples
    --------
    >>> default_batch_size((224, 224), accelerator=False)
    64
    >>> default_batch_size((28, 28), n_items=100, accelerator=False)
    100
    """
    if accelerator is None:
        accelerator = bool(accelerator_devices())
    at_224 = ACCELERATOR_BATCH if accelerator else CPU_BATCH
    scale = (224 * 224) / (image_size[0] * image_size[1])
    size = int(min(1024, max(16, 2 ** round(np.log2(max(1.0, at_224 * scale))))))
    if n_items:
        size = min(size, n_items)
    return size


_PIXEL_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pixel_model(model: keras.Model) -> keras.Model | None:
    """``model`` taking uint8 pixels and casting them inside its compiled graph.

    Saves a float32 copy of every batch on the host (and 4x the bytes sent to an
    accelerator). Cached per model so the compiled function is traced once per process.
    """
    import keras

    if model in _PIXEL_MODELS:
        return _PIXEL_MODELS[model]
    wrapper = None
    try:
        if len(model.inputs) == 1 and "float" in str(model.inputs[0].dtype):
            inputs = keras.Input(model.input_shape[1:], dtype="uint8", name="pixels_uint8")
            outputs = model(keras.ops.cast(inputs, model.inputs[0].dtype), training=False)
            wrapper = keras.Model(inputs, outputs, name=f"{model.name}_uint8")
    except Exception:  # an unusual model: feed it float32 from the host instead
        wrapper = None
    _PIXEL_MODELS[model] = wrapper
    return wrapper


class BatchRunner:
    """Runs a model on fixed-size batches: pads the last one so the compiled call is reused.

    Takes uint8 pixels (cast to the model's float input inside the graph) or floats.

    Examples
    --------
    >>> run = BatchRunner(base.model, batch_size=64)  # doctest: +SKIP
    >>> run(batch.pixels).shape  # doctest: +SKIP
    (64, 1280)
    """

    def __init__(self, model: keras.Model, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self._pixel_model = pixel_model(model)

    def __call__(self, pixels: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The model's float32 outputs for ``pixels``: an array, or a list for a model with
        several outputs (several layers in one pass)."""
        import keras

        n = len(pixels)
        if n == 0:
            empty = [np.zeros((0, int(t.shape[-1])), np.float32) for t in self.model.outputs]
            return empty if len(empty) > 1 else empty[0]
        if n < self.batch_size:
            batch = np.zeros((self.batch_size, *pixels.shape[1:]), pixels.dtype)
            batch[:n] = pixels
            pixels = batch
        if self._pixel_model is not None and pixels.dtype == np.uint8:
            out = self._pixel_model.predict_on_batch(pixels)
        else:
            out = self.model.predict_on_batch(pixels.astype(np.float32))
        if isinstance(out, (list, tuple)):
            return [np.asarray(keras.ops.convert_to_numpy(o), np.float32)[:n] for o in out]
        return np.asarray(keras.ops.convert_to_numpy(out), np.float32)[:n]
