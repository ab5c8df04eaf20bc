"""Export a cache's head with its base as one deployable model, and load exports back.

``export(cache, out, head="logreg")`` fits the head on the whole cache (or takes a saved head),
rebuilds the base from the cache's provenance, checks that its weights are the ones the cache
was made with, and writes one of two forms:

**A single ``.keras`` file** (``out`` ends in ``.keras``; heads Keras can express: ``logreg``,
``linear-svm``, ``dense``). The model, layer by layer::

    image       Input (None, None, C) uint8     raw images of any size (one size per call)
    resize      Resizing(H, W, bilinear, antialias=True)  -> uint8, identity at H x W
    to_float    Rescaling(1.0)                  -> float32 0..255
    <base>      the base cut at the cached layer (its own preprocessing inside), frozen
    head_*      Dense layers: the head with its StandardScaler folded into the weights
    bottleneck_metadata   Dense, identity K x K kernel, no bias: carries the metadata
    probabilities         Activation("softmax")

It loads with a plain ``keras.saving.load_model(path)`` (safe mode, no custom objects, no
Lambda layers, backend-agnostic ops only); ``model.predict(uint8_images)`` returns an
``(N, K)`` array. The class names and provenance travel inside the model as JSON::

    import json, keras
    model = keras.saving.load_model("model.keras")
    meta = json.loads(model.get_layer("bottleneck_metadata").bias_initializer.value)
    meta["classes"]   # column k of model.predict(...) is the class meta["classes"][k]

Why there: Keras offers no free-form metadata field. The model ``name`` cannot hold it (on
TensorFlow it becomes a root name scope, which must match ``[A-Za-z0-9.][A-Za-z0-9_.>-]*``:
no spaces, quotes or slashes, so ``predict`` fails), a file added to the ``.keras`` zip is
invisible to ``load_model``, and ``StringLookup`` needs TensorFlow. The carrier layer has no
bias (``use_bias=False``), so its ``bias_initializer`` (a ``Constant`` holding the JSON
string) is stored in the config and never evaluated; its kernel is the identity, which passes
the scores through exactly (each output is one product by 1.0 plus zeros).

What ``probabilities`` are, per head (also ``meta["outputs"]``):

* ``logreg``: ``predict_proba`` exactly: softmax of the logits (multinomial); binary as
  ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``; one-vs-rest models (liblinear, the
  out-of-core SGD log-loss head) as ``softmax(log sigmoid(z))`` = normalised sigmoids, with
  ``log sigmoid(z) = -softplus(-z)`` (Dense+softplus, then a Dense with kernel ``-I``).
* ``dense``: ``predict_proba`` exactly: Dense (+ReLU hidden layer if any) + softmax; dropout
  is a no-op at inference and is left out.
* ``linear-svm`` (``outputs="decision-softmax"``): ``softmax(decision_function)``. A linear
  SVM has no probabilities; these are its one-vs-rest margins squashed to sum to 1. The
  arg-max is exactly the SVM's prediction, the values are *not* calibrated probabilities.

In every case the StandardScaler is folded into the first Dense layer:
``W' = W / scale``, ``b' = b - (mean / scale) @ W`` (computed in float64).

**A folder** (any other ``out``; required for ``rbf-svm`` and ``knn``): ``base.keras`` (the
same front end and base, features out), ``head.skops`` (the fitted scikit-learn head, saved
with skops, never pickle; loaded with an explicit allow-list of trusted types) and
``model.json`` (classes, outputs, head, cache fingerprint, base description, versions).

Before anything is written the export checks itself: it reloads the saved model (safe mode)
and runs it on a sample (default 64) of the cache's own source images, decoded exactly like
extraction; its outputs must equal the head's on the cached features (arg-max equal,
probabilities within ``atol``), else :class:`ExportError` names the first sample that differs.

Resizing: the ``resize`` layer makes the model take any image size, but Keras' bilinear
resize and Pillow's (used by ``bottleneck extract`` and ``predict``) are not bit-identical.
Measured on the scikit-image photos (uint8, 300-640 px) resized to 224/96/32 px: with
``antialias=True`` (used here) the two differ by at most 1 grey level (mean 0.05-0.14);
without antialiasing by a mean of 2-11 levels (up to 193 at edges). JPEGs at least twice the
target size are decoded by extraction at a reduced DCT scale (Pillow ``draft``), so against
a full decode + this layer the difference grows to a mean of 0.35 (96 px) / 0.75 (32 px)
levels, max 33. The parity check feeds Pillow-decoded images at the base size, where the
layer is the identity (bit-exact). :func:`deploy.predict.predict` also decodes with Pillow,
so its predictions are the cache pipeline's; ``model.predict`` on images of other sizes sees
the Keras resize.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import keras
import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.errors import (
    BaseModelError,
    ExportError,
    HeadError,
    ImageError,
    SourceError,
)
from bottleneck_transfer.features.bases import Base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.rebuild import rebuild_base
from bottleneck_transfer.versions import software_versions

FORMAT = "bottleneck-export"
FORMAT_VERSION = 1
METADATA_LAYER = "bottleneck_metadata"
OUTPUT_LAYER = "probabilities"
FOLDER_FILES = ("model.json", "base.keras", "head.skops")
#: Heads that have no exact Keras form; they export as a folder.
FOLDER_HEADS = ("rbf-svm", "knn")
#: Types a ``head.skops`` may contain beyond skops' defaults (module prefixes and exact names).
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
TRUSTED_TYPES = frozenset(
    {"bottleneck_transfer.heads.registry.RBFSVC", "bottleneck_transfer.heads.registry.DenseHead"}
)
DEFAULT_SAMPLE = 64
DEFAULT_ATOL = 1e-4
#: Provenance fields of the base copied into an export's metadata.
_BASE_KEYS = (
    "application",
    "file",
    "file_sha256",
    "weights",
    "weights_sha256",
    "layer",
    "pooling",
    "input_shape",
    "feature_dim",
    "compute_dtype",
)


@dataclass
class Parity:
    """The outcome of the export's self-check on source images."""

    n: int
    max_abs_diff: float
    argmax_agreement: float
    ids: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    """What :func:`export` wrote."""

    path: Path
    kind: str
    head: str
    classes: list[str]
    outputs: str
    parity: Parity | None
    seconds: float
    metadata: dict


@dataclass
class Exported:
    """A loaded export: a single Keras model, or a folder's base + scikit-learn head.

    :meth:`predict` maps a uint8 batch ``(N, H, W, C)`` at :attr:`image_size` to ``(N, K)``
    scores in the order of :attr:`classes`.
    """

    path: Path
    kind: str
    metadata: dict
    model: keras.Model
    head: Any = None

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.metadata["input_shape"][:2]
        return int(height), int(width)

    @property
    def channels(self) -> int:
        return int(self.metadata["input_shape"][2])

    @cached_property
    def sized_model(self) -> keras.Model:
        """The model without its ``resize`` layer, for images already at :attr:`image_size`.

        There the resize is the identity (bit-exact), so both give the same outputs; this
        one skips the resize op (about a third of the time of a 28 x 28 base).
        """
        try:
            resize = self.model.get_layer("resize")
        except ValueError:
            return self.model
        return keras.Model(resize.output, self.model.output, name=f"{self.model.name}_sized")

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """Head scores of base features (folder exports)."""
        return head_scores(self.head, features)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Scores ``(N, K)`` of a uint8 batch (one compiled call per batch size)."""
        check_pixels(pixels, self)
        out = keras.ops.convert_to_numpy(self.model.predict_on_batch(pixels))
        if self.kind == "folder":
            return self.scores_from_features(np.asarray(out, np.float32))
        return np.asarray(out, np.float32)


def check_pixels(pixels: np.ndarray, exported: Exported) -> None:
    """Raise :class:`ExportError` when a batch cannot go into the model."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != exported.channels:
        raise ExportError(
            f"{exported.path} takes images of shape (N, H, W, {exported.channels}); "
            f"got an array of shape {pixels.shape}"
        )


# ----------------------------------------------------------------------------- heads


def head_scores(head: Any, features: np.ndarray) -> np.ndarray:
    """The head's scores in ``classes_`` order: ``predict_proba``, else softmax(decision)."""
    if hasattr(head, "predict_proba"):
        return np.asarray(head.predict_proba(features), np.float64)
    decision = np.asarray(head.decision_function(features), np.float64)
    if decision.ndim == 1:
        decision = np.stack([np.zeros_like(decision), decision], axis=1)
    decision -= decision.max(axis=1, keepdims=True)
    exp = np.exp(decision)
    return exp / exp.sum(axis=1, keepdims=True)


def _final_estimator(head: Any) -> tuple[list[Any], Any]:
    steps = getattr(head, "steps", None)
    if steps is None:
        return [], head
    return [step for _, step in steps[:-1]], steps[-1][1]


def _fold_scaler(transformers: list[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the StandardScaler steps as one affine map ``(x - mean) / scale``."""
    from sklearn.preprocessing import StandardScaler

    mean = np.zeros(dim)
    scale = np.ones(dim)
    for step in transformers:
        if step is None or step == "passthrough":
            continue
        if not isinstance(step, StandardScaler):
            raise HeadError(
                f"a {type(step).__name__} step has no exact Keras form (only StandardScaler "
                "is folded into the weights); export this head as a folder (-o DIR)"
            )
        step_mean = step.mean_ if step.mean_ is not None else np.zeros(dim)
        step_scale = step.scale_ if step.scale_ is not None else np.ones(dim)
        # x' = ((x - mean) / scale - step_mean) / step_scale
        mean = mean + step_mean * scale
        scale = scale * step_scale
    return mean, scale


def _dense_layer(weight: np.ndarray, bias: np.ndarray | None, name: str, activation=None):
    layer = keras.layers.Dense(
        weight.shape[1], activation=activation, use_bias=bias is not None, name=name
    )
    layer.build((None, weight.shape[0]))
    values = [weight.astype(np.float32)]
    if bias is not None:
        values.append(bias.astype(np.float32))
    layer.set_weights(values)
    return layer


def head_layers(head: Any, dim: int) -> tuple[list[keras.layers.Layer], str]:
    """Convert a fitted head to Keras layers that output *scores* (pre-softmax).

    Returns the layers (apply in order to ``(N, dim)`` features) and what the softmax of
    the scores means: ``"probabilities"`` (equals ``predict_proba``) or
    ``"decision-softmax"`` (softmax of decision values; arg-max equals ``predict``).

    Raises
    ------
    HeadError
        If the head has no exact Keras form (e.g. an RBF SVM or k-NN): export a folder.
    """
    transformers, clf = _final_estimator(head)
    name = type(clf).__name__
    mean, scale = _fold_scaler(transformers, dim)
    if hasattr(clf, "coefs_") and hasattr(clf, "intercepts_"):
        # DenseHead (and MLP-like heads): Dense+ReLU hidden layers, then the softmax layer.
        coefs = [np.asarray(c, np.float64) for c in clf.coefs_]
        intercepts = [np.asarray(b, np.float64) for b in clf.intercepts_]
        activation = getattr(clf, "activation", "relu")
        if activation != "relu" or len(coefs) > 2 or coefs[-1].shape[1] < 2:
            raise HeadError(f"{name} with {len(coefs)} layers ({activation}) is not supported")
        if getattr(clf, "out_activation_", "softmax") != "softmax":
            raise HeadError(f"{name} with output {clf.out_activation_} is not supported")
        first_w = coefs[0] / scale[:, None]
        first_b = intercepts[0] - (mean / scale) @ coefs[0]
        if len(coefs) == 1:
            return [_dense_layer(first_w, first_b, "head_logits")], "probabilities"
        return [
            _dense_layer(first_w, first_b, "head_hidden", activation="relu"),
            _dense_layer(coefs[1], intercepts[1], "head_logits"),
        ], "probabilities"
    if not (hasattr(clf, "coef_") and hasattr(clf, "intercept_")):
        raise HeadError(
            f"{name} has no exact Keras form (not a linear or dense head); "
            "export it as a folder: -o DIR instead of a .keras file"
        )
    coef = np.asarray(clf.coef_, np.float64)
    intercept = np.broadcast_to(np.asarray(clf.intercept_, np.float64), (coef.shape[0],))
    weight = (coef / scale[None, :]).T
    bias = intercept - weight.T @ mean
    n_classes = len(clf.classes_)
    if coef.shape[0] == 1 and n_classes == 2:
        # Binary: one decision value z; scores [0, z] give softmax = [1 - sigmoid(z), sigmoid(z)].
        weight = np.concatenate([np.zeros_like(weight), weight], axis=1)
        bias = np.concatenate([[0.0], bias])
    elif coef.shape[0] != n_classes:
        raise HeadError(f"{name}: coef_ has {coef.shape[0]} rows for {n_classes} classes")
    proba = _proba_form(clf, n_classes)
    if proba == "ovr":
        # One-vs-rest probabilities sigmoid(z_k) / sum_j sigmoid(z_j) are exactly
        # softmax(log sigmoid(z)), and log sigmoid(z) = -softplus(-z).
        return [
            _dense_layer(-weight, -bias, "head_negated_logits", activation="softplus"),
            _dense_layer(-np.eye(n_classes), None, "head_log_sigmoid"),
        ], "probabilities"
    outputs = "probabilities" if proba == "softmax" else "decision-softmax"
    return [_dense_layer(weight, bias, "head_logits")], outputs


def _proba_form(clf: Any, n_classes: int) -> str | None:
    """How a linear classifier's ``predict_proba`` follows from its decision values.

    ``"softmax"`` (multinomial logistic regression; any binary logistic model, whose
    ``[1 - sigmoid(z), sigmoid(z)]`` is ``softmax([0, z])``), ``"ovr"`` (normalised
    one-vs-rest sigmoids: liblinear logistic regression, SGD with log loss) or ``None``
    (no ``predict_proba``: SVMs, ridge). Anything else raises :class:`HeadError`.
    """
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    if not hasattr(clf, "predict_proba"):
        return None
    if isinstance(clf, LogisticRegression):
        return "ovr" if clf.solver == "liblinear" and n_classes > 2 else "softmax"
    if isinstance(clf, SGDClassifier) and clf.loss == "log_loss":
        return "ovr" if n_classes > 2 else "softmax"
    raise HeadError(
        f"{type(clf).__name__}'s predict_proba has no exact Keras form; export a folder (-o DIR)"
    )


def _head_kind(head: Any, spec: str | None) -> str:
    if spec:
        return spec.split(":", 1)[0].strip()
    _, clf = _final_estimator(head)
    return type(clf).__name__


# ----------------------------------------------------------------------------- building


def _front_end(base: Base) -> tuple[Any, Any]:
    """uint8 images of any size -> resize -> float32 -> base features."""
    height, width = base.image_size
    inputs = keras.Input(shape=(None, None, base.channels), dtype="uint8", name="image")
    x = keras.layers.Resizing(
        height, width, interpolation="bilinear", antialias=True, name="resize"
    )(inputs)
    x = keras.layers.Rescaling(1.0, name="to_float")(x)
    base.model.trainable = False
    return inputs, base.model(x)


def metadata_layer(metadata: dict, n_classes: int) -> keras.layers.Layer:
    """The identity Dense layer whose unused ``bias_initializer`` holds ``metadata`` as JSON."""
    layer = keras.layers.Dense(
        n_classes,
        use_bias=False,
        kernel_initializer="identity",
        bias_initializer=keras.initializers.Constant(json.dumps(metadata, sort_keys=True)),
        trainable=False,
        name=METADATA_LAYER,
    )
    layer.build((None, n_classes))
    layer.set_weights([np.eye(n_classes, dtype=np.float32)])
    return layer


def build_keras_model(base: Base, layers: list[keras.layers.Layer], metadata: dict) -> keras.Model:
    """The single-file export model (see the module docstring)."""
    inputs, x = _front_end(base)
    for layer in layers:
        x = layer(x)
    x = metadata_layer(metadata, len(metadata["classes"]))(x)
    outputs = keras.layers.Activation("softmax", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="bottleneck_export")


def build_base_model(base: Base) -> keras.Model:
    """The folder export's ``base.keras``: uint8 images -> features."""
    inputs, features = _front_end(base)
    return keras.Model(inputs, features, name="bottleneck_base")


# ----------------------------------------------------------------------------- loading


def read_metadata(model: keras.Model, path: str | Path) -> dict:
    """The metadata JSON of an exported ``.keras`` model, or :class:`ExportError`."""
    try:
        layer = model.get_layer(METADATA_LAYER)
        metadata = json.loads(layer.bias_initializer.value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ExportError(
            f"{path} is a Keras model but not a bottleneck export (no readable "
            f"{METADATA_LAYER!r} layer); export one with `bottleneck export`"
        ) from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExportError(f"{path} is a Keras model but not a bottleneck export")
    return metadata


def _check_metadata(metadata: dict, path: Path) -> dict:
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportError(
            f"{path} is a bottleneck export of format version {version}; this bottleneck "
            f"reads version {FORMAT_VERSION}"
        )
    for key in ("classes", "input_shape"):
        if key not in metadata:
            raise ExportError(f"{path}: the export's metadata has no {key!r}")
    return metadata


def _load_keras(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ExportError(
            f"cannot load {path} as a Keras model in safe mode: {type(exc).__name__}: {exc}"
        ) from exc


def load_head(path: str | Path) -> Any:
    """Load a ``.skops`` head, trusting only scikit-learn/NumPy/SciPy and our head types."""
    import skops.io as sio

    path = Path(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ExportError(f"{path} is not a readable skops file: {exc}") from exc
    refused = [t for t in untrusted if not (t.startswith(TRUSTED_PREFIXES) or t in TRUSTED_TYPES)]
    if refused:
        raise ExportError(
            f"{path} contains types outside the allow-list ({', '.join(refused)}); "
            "refusing to load it"
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ExportError(f"cannot load the head {path}: {exc}") from exc


def load_exported(path: str | Path) -> Exported:
    """Load an export: a ``.keras`` file or an export folder.

    Raises
    ------
    ExportError
        If ``path`` is missing, is not a Keras model, or is a Keras model / folder that is
        not a bottleneck export, naming the file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ExportError(f"model not found: {path}")
    if path.is_dir():
        missing = [name for name in FOLDER_FILES if not (path / name).is_file()]
        if missing:
            raise ExportError(
                f"{path} is a folder but not a bottleneck export (missing {', '.join(missing)})"
            )
        try:
            metadata = json.loads((path / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{path / 'model.json'} is not readable JSON: {exc}") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ExportError(f"{path / 'model.json'} is not a bottleneck export's model.json")
        _check_metadata(metadata, path)
        model = _load_keras(path / "base.keras")
        head = load_head(path / "head.skops")
        return Exported(path, "folder", metadata, model, head)
    if path.suffix != ".keras":
        raise ExportError(
            f"{path} is not a bottleneck export: give a .keras file or an export folder"
        )
    model = _load_keras(path)
    metadata = _check_metadata(read_metadata(model, path), path)
    return Exported(path, "keras", metadata, model)


# ----------------------------------------------------------------------------- parity


def _sample_rows(n: int, sample: int) -> np.ndarray:
    if sample >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, sample).round().astype(int))


def _source_pixels(cache: FeatureCache, rows: np.ndarray, base: Base) -> tuple[list, np.ndarray]:
    """Decode the source images of cache ``rows`` exactly as extraction did."""
    from bottleneck_transfer.features.sources import reopen_source

    try:
        source = reopen_source(cache.provenance.get("source", {}))
    except SourceError as exc:
        raise ExportError(
            f"cannot reopen the source of {cache.path} to check the export ({exc}); "
            "make it reachable again, or skip the check with --sample 0"
        ) from exc
    by_id = {item.id: item for item in source.items}
    ids = cache.ids
    chosen = [int(r) for r in rows if ids[int(r)] in by_id]
    if not chosen:
        raise ExportError(
            f"none of the sampled images of {cache.path} are in its source any more; "
            "skip the check with --sample 0"
        )
    pixels = np.zeros((len(chosen), *base.image_size, base.channels), np.uint8)
    for k, row in enumerate(chosen):
        try:
            pixels[k] = source.load(by_id[ids[row]], base.image_size, base.channels)
        except ImageError as exc:
            raise ExportError(
                f"cannot check the export on sample {ids[row]}: {exc} (the source changed "
                "since extraction?); skip the check with --sample 0"
            ) from exc
    return chosen, pixels


def check_parity(
    exported: Exported,
    head: Any,
    cache: FeatureCache,
    base: Base,
    *,
    sample: int = DEFAULT_SAMPLE,
    atol: float = DEFAULT_ATOL,
    batch_size: int = 32,
) -> Parity:
    """Run the export on source images and compare with ``head(cached features)``.

    Raises
    ------
    ExportError
        Naming the first sample whose arg-max differs (beyond a tie within ``atol``) or
        whose scores differ by more than ``atol``.
    """
    rows, pixels = _source_pixels(cache, _sample_rows(len(cache), sample), base)
    ids = cache.ids
    expected = head_scores(head, cache.features[rows])
    got = np.concatenate(
        [exported.predict(pixels[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    ).astype(np.float64)
    if got.shape != expected.shape:
        raise ExportError(
            f"the export outputs {got.shape[1:]} scores, the head {expected.shape[1:]}"
        )
    diff = np.abs(got - expected).max(axis=1)
    top = np.sort(expected, axis=1)
    gap = top[:, -1] - top[:, -2] if expected.shape[1] > 1 else np.ones(len(rows))
    argmax_bad = (got.argmax(1) != expected.argmax(1)) & (gap > atol)
    bad = np.flatnonzero((diff > atol) | argmax_bad)
    if bad.size:
        k = int(bad[0])
        raise ExportError(
            f"parity check failed on sample {ids[rows[k]]} (cache row {rows[k]}): the export "
            f"gives class {got[k].argmax()} with scores {np.round(got[k], 6).tolist()}, the "
            f"head on the cached features gives class {expected[k].argmax()} with "
            f"{np.round(expected[k], 6).tolist()} (max difference {diff[k]:.2e} > atol {atol}); "
            f"{bad.size} of {len(rows)} samples differ"
        )
    return Parity(
        n=len(rows),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        argmax_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))) if len(rows) else 1.0,
        ids=[ids[r] for r in rows],
    )


# ----------------------------------------------------------------------------- export


def _load_head_file(path: str | Path) -> tuple[Any, dict]:
    """A head saved by ``bottleneck train``: the estimator and its metadata."""
    from bottleneck_transfer.heads import training

    path = Path(path)
    if not path.exists():
        raise HeadError(f"head file not found: {path}")
    loaded = training.load_head(path)
    if isinstance(loaded, tuple):
        return loaded[0], dict(loaded[1] or {})
    estimator = getattr(loaded, "estimator", getattr(loaded, "head", loaded))
    metadata = getattr(loaded, "metadata", {}) or {}
    return estimator, dict(metadata)


def _check_head_metadata(metadata: dict, cache: FeatureCache, head_file: Path) -> None:
    base = (metadata.get("identity") or {}).get("base") or metadata.get("base")
    if base is not None and base != cache.identity.get("base"):
        raise HeadError(
            f"the head {head_file} was trained on features of another base than the cache "
            f"{cache.path} (identity['base'] differs); export with the cache it was trained on"
        )
    names = metadata.get("class_names") or metadata.get("classes")
    if names is not None and list(names) != list(cache.class_names):
        raise HeadError(
            f"the head {head_file} knows the classes {list(names)}, the cache {cache.path} "
            f"has {cache.class_names}"
        )


def _fit_head(head: Any, cache: FeatureCache) -> tuple[Any, str | None]:
    labels = cache.labels
    rows = np.flatnonzero(labels >= 0)
    if rows.size == 0:
        raise HeadError(f"{cache.path} has no labelled rows to fit a head on")
    y = labels[rows]
    if len(np.unique(y)) < 2:
        raise HeadError(f"{cache.path} has only one class ({cache.class_names[y[0]]}); need 2+")
    spec = None
    if isinstance(head, str):
        from bottleneck_transfer.heads.registry import make_head

        spec = head
        head = make_head(head)
        if hasattr(head, "steps"):
            from bottleneck_transfer.heads.registry import set_random_state

            set_random_state(head, 0)
    features = cache.features
    X = features if rows.size == len(labels) else features[rows]
    try:
        head.fit(X, y)
    except ValueError as exc:
        raise HeadError(f"cannot fit the head on {cache.path}: {exc}") from exc
    return head, spec


def _is_fitted(head: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(head)
        return True
    except (NotFittedError, TypeError):
        return False


def _check_out(out: Path, as_keras: bool) -> None:
    """Refuse an output path that would overwrite something that is not an export."""
    if as_keras and out.is_dir():
        raise ExportError(f"{out} is a folder; give a .keras file path or another -o")
    if not as_keras and out.exists():
        if not out.is_dir():
            raise ExportError(
                f"{out} exists and is a file; a folder export needs a folder path "
                "(or name the output *.keras for a single-file export)"
            )
        if any(out.iterdir()) and not (out / "model.json").is_file():
            raise ExportError(f"{out} exists and is not an export folder; choose another -o")


def export(
    cache: str | Path,
    out: str | Path,
    *,
    head: Any = "logreg",
    head_file: str | Path | None = None,
    base: str | Path | None = None,
    weights: str | Path | None = None,
    sample: int = DEFAULT_SAMPLE,
    atol: float = DEFAULT_ATOL,
) -> ExportResult:
    """Export ``head`` on the cache's base as one model (``.keras``) or a folder.

    Parameters
    ----------
    cache : str or Path
        The training cache. The head is fitted on all its labelled rows.
    out : str or Path
        A ``.keras`` file (heads Keras can express) or a folder (any head).
    head : str or estimator
        A head spec (``"logreg"``, ``"linear-svm:C=0.1"``, ``"dense:hidden=64"``,
        ``"rbf-svm"``, ``"knn"``) or a scikit-learn classifier (fitted or not).
    head_file : str or Path, optional
        A head saved by ``bottleneck train`` instead of fitting one; it must have been
        trained on features of the cache's base, with the cache's classes.
    base : str or Path, optional
        The base model file, for caches made from a model file (verified by sha256).
    weights : str or Path, optional
        The weights file, for caches made with ``--weights FILE``.
    sample : int
        Source images to check the export on (0 skips the check).
    atol : float
        Largest allowed difference between the export's and the head's scores.

    Raises
    ------
    HeadError
        Unknown head, head not expressible as ``.keras``, or a head file from other data.
    BaseModelError
        The base cannot be rebuilt or has other weights than the cache's.
    ExportError
        The self-check failed (naming the sample), or ``out`` is unusable.
    """
    started = time.perf_counter()
    out = Path(out)
    as_keras = out.suffix == ".keras"
    spec = head if isinstance(head, str) and head_file is None else None
    if as_keras and spec is not None and spec.split(":", 1)[0].strip() in FOLDER_HEADS:
        raise HeadError(
            f"{spec.split(':', 1)[0]} has no exact Keras form, so it exports as a folder "
            f"(base.keras + head.skops + model.json): use -o {out.with_suffix('')} "
            f"instead of {out}"
        )
    _check_out(out, as_keras)
    with FeatureCache.open(cache) as opened:
        if head_file is not None:
            estimator, head_meta = _load_head_file(head_file)
            _check_head_metadata(head_meta, opened, Path(head_file))
            spec = head_meta.get("spec") or head_meta.get("head")
        elif isinstance(head, str) or not _is_fitted(head):
            estimator, spec = _fit_head(head, opened)
        else:
            estimator = head
        kind_name = _head_kind(estimator, spec)
        classes_ = np.asarray(estimator.classes_)
        if classes_.dtype.kind not in "iu" or classes_.min() < 0:
            raise HeadError(f"the head's classes {classes_.tolist()} are not the cache's labels")
        if classes_.max() >= len(opened.class_names):
            raise HeadError(
                f"the head predicts class index {int(classes_.max())}, the cache {opened.path} "
                f"has {len(opened.class_names)} classes"
            )
        classes = [opened.class_names[int(c)] for c in classes_]
        if as_keras:
            layers, outputs = head_layers(estimator, opened.dim)
        else:
            outputs = "probabilities" if hasattr(estimator, "predict_proba") else "decision-softmax"
        described = opened.provenance.get("base", {})
        rebuilt = rebuild_base(described, base_path=base, weights=weights, cache_path=opened.path)
        if rebuilt.dim != opened.dim:
            raise BaseModelError(
                f"the rebuilt base gives {rebuilt.dim} features, the cache {opened.dim}"
            )
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "classes": classes,
            "head": kind_name,
            "head_spec": spec,
            "input_shape": described["input_shape"],
            "fingerprint": opened.fingerprint,
            "base": {k: described[k] for k in _BASE_KEYS if k in described},
            "base_layer": rebuilt.model.name,
            "cache": opened.path.name,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "versions": software_versions(),
        }
        metadata["outputs"] = outputs
        if as_keras:
            model = build_keras_model(rebuilt, layers, metadata)
        else:
            model = build_base_model(rebuilt)
        parity: Parity | None = None

        def write(target: Path) -> None:
            nonlocal parity
            if as_keras:
                model.save(target)
                loaded = Exported(target, "keras", metadata, _load_keras(target))
            else:
                _write_folder(target, model, estimator, metadata)
                loaded = load_exported(target)
            if sample > 0:
                parity = check_parity(loaded, estimator, opened, rebuilt, sample=sample, atol=atol)
            if not as_keras and parity is not None:
                metadata["parity"] = _parity_json(parity)
                (target / "model.json").write_text(
                    json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8"
                )

        with atomic_path(out) as target:
            write(target)
    return ExportResult(
        path=out,
        kind="keras" if as_keras else "folder",
        head=kind_name,
        classes=classes,
        outputs=metadata["outputs"],
        parity=parity,
        seconds=time.perf_counter() - started,
        metadata=metadata,
    )


def _parity_json(parity: Parity) -> dict:
    return {
        "n": parity.n,
        "max_abs_diff": parity.max_abs_diff,
        "argmax_agreement": parity.argmax_agreement,
    }


def _write_folder(target: Path, model: keras.Model, estimator: Any, metadata: dict) -> None:
    import skops.io as sio

    target.mkdir(parents=True)
    model.save(target / "base.keras")
    try:
        sio.dump(estimator, target / "head.skops")
    except Exception as exc:
        raise ExportError(f"cannot save the head with skops: {exc}") from exc
    untrusted = sio.get_untrusted_types(file=target / "head.skops")
    metadata["skops_trusted_types"] = sorted(untrusted)
    (target / "model.json").write_text(
        json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8"
    )
