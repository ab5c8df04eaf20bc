"""Fine-tune an exported ``.keras`` model: unfreeze the top of the base, train at a low rate.

The last step of the transfer-learning recipe: once a head is trained on frozen features,
unfreeze the top ``N`` layers of the base and train base top + head together with a small
learning rate (default 1e-5, Adam), early stopping on a validation set.

* ``N`` counts the base's layers from the top (nested models flattened, input layers not
  counted), as ``base.layers[-N:]`` in the Keras guide. Among them, ``BatchNormalization``
  layers stay frozen, which in Keras 3 also keeps them in inference mode (moving statistics
  untouched); the base's preprocessing layer is never trained. The head layers are trained.
* Images stream from disk in batches through a :class:`keras.utils.PyDataset` (decoded at
  the base size by extraction's own :func:`features.batches.decode_batch`, in Keras' worker
  threads); they are never all in memory.
  Bad images are skipped and reported.
* A text base's export (raw strings in) trains on a labelled text source (a table's text
  column, a folder of ``.txt`` files): batches of raw strings, read as extraction reads
  texts (one that is not UTF-8 or is empty is skipped and reported). Its top layers are the
  backbone's (transformer layers, pooling); the tokenizer has no weights. ``augment`` is
  refused for it (its views are images').
* Labels are matched by class **name** between the model and the data: a class in the data
  that the model does not know is an error naming it.
* The validation set is a second labelled collection, refused when it holds a training
  image (by content), or (``val_split``) a stratified, seeded share of the training
  collection with copies and declared groups kept whole: one labelled folder is enough
  (:func:`validation_sources`). The metadata records which (counts, a hash of the ids).
* ``augment=True`` passes each training batch through Keras preprocessing layers (random
  flip, rotation, zoom, translation; :func:`augmenter`), seeded per batch and epoch so a run
  is reproducible; validation batches are never augmented.
* Validation loss and accuracy are measured before and after. The weights of the best epoch
  (lowest validation loss) are kept; if no epoch beats the starting model, the starting
  weights are kept (``kept_original``), so the saved model never has a higher validation
  loss than the input model.

The saved model is the same architecture (plain ``keras.saving.load_model``, safe mode), its
base frozen again, with ``finetuned`` added to its metadata.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.deploy.exported import METADATA_LAYER, Exported, load_exported
from bottleneck_transfer.deploy.formats import converter_for
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import ExportError, ImageError, SourceError
from bottleneck_transfer.features.batches import Batch, decode_batch
from bottleneck_transfer.features.decode import DEFAULT_MAX_PIXELS
from bottleneck_transfer.features.sources import (
    Source,
    Split,
    item_hashes,
    open_source,
    split_source,
)
from bottleneck_transfer.features.text_batches import read_texts
from bottleneck_transfer.fingerprint import sha256_text

if TYPE_CHECKING:
    import keras


DEFAULT_LEARNING_RATE = 1e-5
DEFAULT_UNFREEZE = 20


def augmenter(seed: int) -> keras.Sequential:
    """The Keras preprocessing layers ``augment=True`` applies to training batches."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed + 3),
        ],
        name="augment",
    )


def augment_batch(pixels: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
    """One batch through :func:`augmenter`, seeded by ``key`` (seed, epoch, batch index).

    Returns the same dtype (uint8 stays uint8).
    """
    import keras

    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0] % 2**30)
    moved = keras.ops.convert_to_numpy(augmenter(seed)(pixels.astype("float32"), training=True))
    if pixels.dtype == np.uint8:
        return np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return moved.astype(pixels.dtype)


@dataclass(repr=False)
class FinetuneResult(Display):
    """What :func:`finetune` did."""

    path: Path
    val_loss_before: float
    val_accuracy_before: float
    val_loss_after: float
    val_accuracy_after: float
    epochs_run: int
    best_epoch: int
    kept_original: bool
    unfrozen: list[str]
    trainable_weights: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    history: dict = field(default_factory=dict)

    def _display_summary(self) -> dict[str, Any]:
        kept = " (kept the original weights)" if self.kept_original else ""
        return {
            "path": str(self.path),
            "val_accuracy": f"{self.val_accuracy_before:.4f} -> {self.val_accuracy_after:.4f}"
            " (selection scores: on the set that chose the epoch)",
            "val_loss": f"{self.val_loss_before:.4f} -> {self.val_loss_after:.4f}",
            "epochs": f"{self.epochs_run} run, best {self.best_epoch}{kept}",
            "unfrozen": f"{len(self.unfrozen)} base layers",
            "failed": len(self.failed),
            "seconds": self.seconds,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per epoch: the training history (loss, accuracy, val_loss, ...)."""
        epochs = len(next(iter(self.history.values()), []))
        return [
            {"epoch": i + 1, **{key: values[i] for key, values in self.history.items()}}
            for i in range(epochs)
        ]

    def _display_plot(self, ax: Any) -> None:
        """Each accuracy in the history per epoch."""
        for key, values in self.history.items():
            if "accuracy" in key:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize="small")


class _ImageBatches:
    """Batches ``(uint8 pixels, class index)`` decoded from a source on demand: the body of
    :class:`ImageBatches`, a :class:`keras.utils.PyDataset` made on first use
    (:func:`image_batches_type`), so importing this module does not import Keras.

    Parameters
    ----------
    source : Source
        A labelled image collection.
    label_map : ndarray
        Model class index of each source class index.
    image_size, channels
        Decoding geometry (the model's base size).
    batch_size : int
        Images per batch (bad images make a batch shorter).
    shuffle : bool
        Reshuffle the order every epoch (seeded by ``seed``).
    workers : int
        Threads decoding batches ahead of the model.
    augment : bool
        Pass each batch through :func:`augment_batch` (seeded by ``seed``, batch and epoch).
    text : bool
        Batches of raw strings (a text export's input), read as extraction reads texts.
    """

    def __init__(
        self,
        source: Source,
        label_map: np.ndarray,
        image_size: tuple[int, int],
        channels: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        workers: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        augment: bool = False,
        text: bool = False,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.text = text
        self.source = source
        self.items = list(source.items)
        self.label_map = label_map
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.max_pixels = max_pixels
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.items))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return math.ceil(len(self.items) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        items = [self.items[int(position)] for position in chosen]
        if self.text:
            batch = _text_batch(self.source, items)
        else:
            batch = decode_batch(
                self.source, items, self.image_size, self.channels, max_pixels=self.max_pixels
            )
        if batch.failures:
            with self._lock:
                self.failed.update(batch.failures)
        if not batch.items:
            shown = ", ".join(item.id for item in items[:3])
            what = (
                "text of a batch failed to read"
                if self.text
                else "image of a batch failed to decode"
            )
            raise ImageError(f"every {what} ({shown}, ...)")
        labels = np.asarray([self.label_map[item.label] for item in batch.items], np.int32)
        pixels = batch.pixels
        if self.text:  # Keras' dataset adapters take no object arrays: a string tensor
            import tensorflow as tf

            return tf.constant(list(pixels)), labels
        if self.augment:
            pixels = augment_batch(pixels, (self.seed, self.epoch, index))
        return pixels, labels

    def on_epoch_end(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self._rng.shuffle(self._order)


def _text_batch(source: Source, items: list) -> Batch:
    """The texts of ``items`` as an object array of strings (a text export's input), the
    ones that cannot be read left out as failures."""
    texts, good, failures = read_texts(source, items, strict=False)
    strings = np.empty(len(texts), dtype=object)
    strings[:] = texts
    return Batch(strings, good, failures)


@functools.cache
def image_batches_type() -> type:
    """``ImageBatches``: :class:`_ImageBatches` as a :class:`keras.utils.PyDataset`."""
    import keras

    body = {"__module__": __name__, "__doc__": _ImageBatches.__doc__}
    return type("ImageBatches", (_ImageBatches, keras.utils.PyDataset), body)


def __getattr__(name: str) -> Any:
    """``ImageBatches`` (PEP 562): the Keras class, made when it is first asked for."""
    if name == "ImageBatches":
        return image_batches_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def label_map(model_classes: list[str], source: Source, spec: str) -> np.ndarray:
    """Model class index of each source class index, matched by name.

    Raises
    ------
    SourceError
        If the source is unlabelled or has classes the model does not know (named).
    """
    if not source.class_names or any(item.label < 0 for item in source.items):
        raise SourceError(
            f"{spec} has unlabelled images; fine-tuning needs a labelled source "
            "(class folders, a manifest with a label column, labelled arrays)"
        )
    unknown = [name for name in source.class_names if name not in model_classes]
    if unknown:
        raise SourceError(
            f"{spec} has classes the model does not know: {', '.join(map(repr, unknown))}; "
            f"the model's classes are {model_classes} (use --classes to pick a subset)"
        )
    return np.asarray([model_classes.index(name) for name in source.class_names], np.int32)


def _leaves(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    import keras

    if isinstance(layer, keras.Model):
        out: list[keras.layers.Layer] = []
        for child in layer.layers:
            out += _leaves(child)
        return out
    if isinstance(layer, keras.layers.InputLayer):
        return []
    return [layer]


def base_of(model: keras.Model, metadata: dict) -> keras.Model:
    """The nested base model of an export."""
    import keras

    name = metadata.get("base_layer")
    try:
        base = model.get_layer(name)
    except ValueError as exc:
        raise ExportError(f"the export has no base layer {name!r}") from exc
    if not isinstance(base, keras.Model):
        raise ExportError(f"the export's base layer {name!r} is not a model")
    return base


def unfreeze_top(model: keras.Model, metadata: dict, n: int) -> list[keras.layers.Layer]:
    """Freeze the base except its top ``n`` layers (BatchNorm and preprocessing stay frozen).

    Returns the layers made trainable. Head layers are trainable; the metadata layer is not.
    """
    import keras

    base = base_of(model, metadata)
    model.trainable = True
    leaves = _leaves(base)
    preprocess = [layer for layer in base.layers if layer.name == "preprocess"]
    for layer in leaves:
        layer.trainable = False
    candidates = [layer for layer in leaves if not any(layer is p for p in preprocess)]
    top = candidates[len(candidates) - n :] if n > 0 else []
    unfrozen = []
    for layer in top:
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        layer.trainable = True
        unfrozen.append(layer)
    model.get_layer(METADATA_LAYER).trainable = False
    return unfrozen


def _verbose(progress: bool | None) -> int:
    if progress is None:
        return 1 if sys.stdout.isatty() else 0
    return 1 if progress else 0


def validation_sources(
    train: str | Path | Source,
    val: str | Path | Source | None,
    *,
    val_split: float | None,
    classes: str | None = None,
    limit: int | None = None,
    val_limit: int | None = None,
    seed: int = 0,
) -> dict[str, Source]:
    """The training and validation images: never one image on both sides.

    With ``val_split``, a stratified, seeded share of ``train`` held out with copies and
    declared groups kept whole (:func:`~bottleneck_transfer.features.sources.split_source`,
    the holdout every split uses); else ``val``, refused when it holds an image of
    ``train`` (equal content: a copied file is caught under any name).

    Raises
    ------
    SourceError
        If ``val`` shares images with ``train`` (one line naming an example and the count).
    """
    source = (
        train if isinstance(train, Source) else open_source(train, classes=classes, limit=limit)
    )
    if val_split is not None:
        return {
            part: split_source(source, Split(val_split, part, seed)) for part in ("train", "val")
        }
    assert val is not None
    held = val if isinstance(val, Source) else open_source(val, classes=classes, limit=val_limit)
    trained = {h: item.id for h, item in zip(item_hashes(source), source.items, strict=True) if h}
    shared = [
        (item.id, trained[h])
        for h, item in zip(item_hashes(held), held.items, strict=True)
        if h in trained
    ]
    if shared:
        example = f"{shared[0][0]} = {shared[0][1]}"
        raise SourceError(
            f"--val {val} shares {len(shared)} image(s) with the training images (same "
            f"content, e.g. {example}): validate on images the model never trains on, or "
            "hold out a share of TRAIN with --val-split"
        )
    return {"train": source, "val": held}


def _validation_record(
    sources: dict[str, Source], val: str | Path | Source | None, val_split: float | None, seed: int
) -> dict:
    """What the model's metadata says about its validation images."""
    ids = sorted(item.id for item in sources["val"].items)
    record = {
        "images": {role: len(source) for role, source in sources.items()},
        "val_ids_sha256": sha256_text(json.dumps(ids)),
    }
    if val_split is not None:
        return {"val_split": val_split, "seed": seed, "grouped": "copies and --groups", **record}
    where = val.root if isinstance(val, Source) else str(val)
    return {"source": where, "disjoint_from_train": "content sha256", **record}


def _evaluate(model: keras.Model, data: _ImageBatches, verbose: int) -> tuple[float, float]:
    scores = model.evaluate(data, verbose=verbose, return_dict=True)
    return float(scores["loss"]), float(scores["accuracy"])


def finetune(
    model: str | Path,
    train: str | Path | Source,
    *,
    val: str | Path | Source | None = None,
    out: str | Path,
    val_split: float | None = None,
    augment: bool = False,
    unfreeze: int = DEFAULT_UNFREEZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    epochs: int = 10,
    patience: int = 3,
    batch_size: int = 32,
    workers: int | None = None,
    classes: str | None = None,
    limit: int | None = None,
    val_limit: int | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
) -> FinetuneResult:
    """Fine-tune an exported ``.keras`` model on labelled images and save it to ``out``.

    Parameters
    ----------
    model : str or Path
        A single-file export (``bottleneck export ... -o model.keras``).
    train, val : str, Path or Source
        Labelled image collections (class folders, manifests, arrays) whose class names
        are among the model's.
    out : str or Path
        The tuned model (``.keras``).
    val_split : float, optional
        Validate on this stratified, seeded share of ``train`` instead of ``val`` (give one).
    augment : bool
        Random flips, rotations, zooms and shifts of the training images (:func:`augmenter`).
    unfreeze, learning_rate
        Base layers to unfreeze, from the top (0 trains the head only); Adam's learning rate.
    epochs, patience
        At most ``epochs`` passes, stopping after ``patience`` without a lower validation loss.
    batch_size, workers
        Images per step; decoding threads (default: all cores).
    classes, limit, val_limit, seed
        Class subset (both sets), evenly spread samples (as in ``extract``); seeds shuffling
        and Keras.

    Raises
    ------
    ExportError
        ``model`` is missing, not an export, a folder export or a converted one (SavedModel,
        TFLite, ONNX: fine-tune its ``.keras`` export); ``augment`` with a text export.
    SourceError
        A data set is unlabelled or has classes the model does not know.

    Examples
    --------
    >>> result = finetune("model.keras", "photos/train", out="tuned.keras", val_split=0.2)
    >>> result.val_accuracy_after >= result.val_accuracy_before  # else the original is kept
    True
    """
    started = time.perf_counter()
    options = _Options(
        val_split=val_split,
        augment=augment,
        unfreeze=unfreeze,
        learning_rate=learning_rate,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        workers=workers or os.cpu_count() or 1,
        classes=classes,
        limit=limit,
        val_limit=val_limit,
        seed=seed,
        max_pixels=max_pixels,
        progress=progress,
    )
    return _finetune(model, train, val, Path(out), options, started)


@dataclass(frozen=True)
class _Options:
    """How :func:`finetune` picks its images and trains (its keyword arguments)."""

    val_split: float | None
    augment: bool
    unfreeze: int
    learning_rate: float
    epochs: int
    patience: int
    batch_size: int
    workers: int
    classes: str | None
    limit: int | None
    val_limit: int | None
    seed: int
    max_pixels: int
    progress: bool | None


@dataclass(frozen=True)
class _Fit:
    """What training did: validation loss and accuracy before and after, and its epochs."""

    loss_before: float
    accuracy_before: float
    loss_after: float
    accuracy_after: float
    kept_original: bool
    epochs_run: int
    best_epoch: int
    history: dict[str, list[float]]


def _finetune(
    model: str | Path,
    train: str | Path | Source,
    val: str | Path | Source | None,
    out: Path,
    options: _Options,
    started: float,
) -> FinetuneResult:
    """:func:`finetune`: its options checked, the images read, the model trained and saved."""
    _check_options(out, options)
    exported = _tunable(model, options.augment)
    if (val is None) == (options.val_split is None):
        raise SourceError(
            "give a validation set (--val) or a share of the training images to hold out "
            f"(--val-split), one of the two. Received: val={val}, val_split={options.val_split}"
        )
    import keras

    keras.utils.set_random_seed(options.seed)
    sources = validation_sources(
        train,
        val,
        val_split=options.val_split,
        classes=options.classes,
        limit=options.limit,
        val_limit=options.val_limit,
        seed=options.seed,
    )
    given = {"train": train, "val": train if val is None else val}  # named in errors
    data = {
        role: _batches(exported, source, given[role], role, options)
        for role, source in sources.items()
    }
    net = exported.model
    unfrozen = unfreeze_top(net, exported.metadata, options.unfreeze)
    fit = _train(net, data, options)
    validation = _validation_record(sources, val, options.val_split, options.seed)
    metadata = _tuned_metadata(exported, unfrozen, fit, options, validation)
    _save(net, exported, metadata, out)
    failed = {**data["train"].failed, **data["val"].failed}
    return FinetuneResult(
        path=out,
        val_loss_before=fit.loss_before,
        val_accuracy_before=fit.accuracy_before,
        val_loss_after=fit.loss_after,
        val_accuracy_after=fit.accuracy_after,
        epochs_run=fit.epochs_run,
        best_epoch=fit.best_epoch,
        kept_original=fit.kept_original,
        unfrozen=[layer.name for layer in unfrozen],
        trainable_weights=int(sum(np.prod(w.shape) for w in net.trainable_weights)),
        failed=sorted(failed.items()),
        seconds=time.perf_counter() - started,
        history=fit.history,
    )


def _check_options(out: Path, options: _Options) -> None:
    """Refuse an output that is not a ``.keras`` file, or unusable training settings."""
    if out.suffix != ".keras":
        raise ExportError(f"the tuned model must be a .keras file. Received: out={out}")
    if options.unfreeze < 0:
        raise ValueError(f"unfreeze must be >= 0. Received: unfreeze={options.unfreeze}")
    if options.learning_rate <= 0:
        raise ValueError(
            f"learning_rate must be > 0. Received: learning_rate={options.learning_rate}"
        )


def _tunable(model: str | Path, augment: bool) -> Exported:
    """The export to fine-tune: a single ``.keras`` file (a converted form refused before
    its graph is read or run, a folder form once loaded), ``augment`` only for images."""
    converter = converter_for(Path(model).expanduser())
    if converter is not None:
        raise ExportError(
            f"{model} is converted for another runtime (--format {converter.name}) and "
            "cannot be fine-tuned; fine-tune the .keras export of the same head (bottleneck "
            "export CACHE -o NAME.keras)"
        )
    exported = load_exported(model)
    if exported.modality == "text" and augment:
        raise ExportError(
            f"--augment makes image views (flips, rotations, zooms); {exported.path} takes "
            "raw strings (a text base): fine-tune it without --augment"
        )
    if exported.kind != "keras":
        raise ExportError(
            f"{exported.path} is a folder export (a {exported.metadata.get('head')} head saved "
            "with skops): its head cannot be trained by gradient descent, so it cannot be "
            "fine-tuned; export a logreg, linear-svm or dense head to a .keras file instead"
        )
    return exported


def _batches(
    exported: Exported,
    source: Source,
    spec: str | Path | Source,
    role: str,
    options: _Options,
) -> _ImageBatches:
    """The ``role`` (``"train"`` or ``"val"``) batches of ``source`` (given as ``spec``),
    labelled by the model's class indices; only training batches shuffle and augment."""
    where = str(spec if not isinstance(spec, Source) else spec.root)
    return image_batches_type()(
        source,
        label_map(exported.class_names, source, where),
        exported.image_size,
        exported.channels,
        options.batch_size,
        shuffle=role == "train",
        seed=options.seed,
        workers=options.workers,
        max_pixels=options.max_pixels,
        augment=options.augment and role == "train",
        text=exported.modality == "text",
    )


def _train(net: keras.Model, data: dict[str, _ImageBatches], options: _Options) -> _Fit:
    """Train ``net`` with early stopping on the validation batches; keep the best epoch's
    weights, or the starting ones when no epoch has a lower validation loss."""
    import keras

    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=options.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    verbose = _verbose(options.progress)
    loss_before, accuracy_before = _evaluate(net, data["val"], verbose)
    initial = net.get_weights()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=options.patience, restore_best_weights=True
    )
    history = net.fit(
        data["train"],
        validation_data=data["val"],
        epochs=options.epochs,
        callbacks=[stopper],
        verbose=verbose,
    )
    loss_after, accuracy_after = _evaluate(net, data["val"], verbose)
    kept_original = not loss_after <= loss_before
    if kept_original:
        net.set_weights(initial)
        loss_after, accuracy_after = loss_before, accuracy_before
    return _Fit(
        loss_before=loss_before,
        accuracy_before=accuracy_before,
        loss_after=loss_after,
        accuracy_after=accuracy_after,
        kept_original=kept_original,
        epochs_run=len(history.history.get("loss", [])),
        best_epoch=stopper.best_epoch + 1,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
    )


def _tuned_metadata(
    exported: Exported,
    unfrozen: list[keras.layers.Layer],
    fit: _Fit,
    options: _Options,
    validation: dict,
) -> dict:
    """The export's metadata with ``finetuned`` added: how it was tuned and on what."""
    metadata = dict(exported.metadata)
    metadata["finetuned"] = {
        "from": exported.path.name,
        "unfreeze": options.unfreeze,
        "unfrozen_layers": [layer.name for layer in unfrozen],
        "learning_rate": options.learning_rate,
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "kept_original": fit.kept_original,
        "val_loss": [fit.loss_before, fit.loss_after],
        "val_accuracy": [fit.accuracy_before, fit.accuracy_after],
        "validation": validation,
        "augment": (
            [type(layer).__name__ for layer in augmenter(options.seed).layers]
            if options.augment
            else []
        ),
    }
    if metadata.get("outputs") == "decision-softmax" and not fit.kept_original:
        metadata["outputs"] = "probabilities"
    return metadata


def _save(net: keras.Model, exported: Exported, metadata: dict, out: Path) -> None:
    """Save an uncompiled copy (no optimizer state) with the base frozen and new metadata."""
    import keras

    carrier = net.get_layer(METADATA_LAYER)
    carrier.bias_initializer = keras.initializers.Constant(json.dumps(metadata, sort_keys=True))
    base_of(net, metadata).trainable = False
    carrier.trainable = False
    clean = keras.Model(net.inputs, net.outputs, name=net.name)
    with atomic_path(out) as tmp:
        clean.save(tmp)
