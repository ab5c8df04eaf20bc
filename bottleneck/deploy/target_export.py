"""Exporting a head of a binary, multi-label or regression cache as one model: a ``.keras``
file or a converted form (ONNX, TFLite, SavedModel; :mod:`.formats`).

The head is fitted as :func:`~bottleneck_transfer.heads.target_compare.fit_fold` fits it in a
comparison: its thresholds chosen on the out-of-fold scores of the cache's rows (by F1, or
``cost_ratio``), then fitted on every row. The model ends in

* ``sigmoid``, one output: a binary head's probability of the positive value (any head with
  an exact Keras form and probabilities: the two-class softmax ``[a, b]`` is
  ``sigmoid(b - a)``); the threshold in the metadata's ``thresholds``;
* ``sigmoid``, one output per tag (one-vs-rest logistic regression, the dense head); a
  threshold per tag;
* ``linear``, one output: the regression value (ridge, linear SVR, the dense head); its name
  and unit in the metadata's ``target``.

Every other key of the metadata is a class export's (:func:`~.export.export`), with
``classes`` naming the output columns (also in the labels file beside it). A converted form
is the same model converted as a class export's, with one output named ``probabilities``
or ``values`` (:data:`~.settings.TARGET_OUTPUT_NAMES`) and no label outputs: the
thresholds in the metadata decide. No folder form (heads without an exact Keras form) and
no quantized TFLite (its check measures top-1 accuracy): :func:`check_target_form`. The
export, loaded back with its own runtime, is checked on source images against the fitted
head on the cached features (:func:`~.parity.check_parity`; regression's tolerance scaled by
the largest value).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.deploy.export_model import (
    ExportResult,
    build_keras_model,
    check_exportable_base,
    form_metadata,
    provenance_metadata,
    save_model,
)
from bottleneck_transfer.deploy.exported import labels_path, write_labels
from bottleneck_transfer.deploy.formats import CONVERTERS, KERAS_RESIZE
from bottleneck_transfer.deploy.keras_head import _dense_layer, _fold_scaler, final_estimator
from bottleneck_transfer.deploy.keras_head import head_layers as class_head_layers
from bottleneck_transfer.deploy.parity import DEFAULT_ATOL, DEFAULT_SAMPLE, check_parity
from bottleneck_transfer.deploy.settings import TARGET_OUTPUT_NAMES, ExportSettings
from bottleneck_transfer.errors import ExportError, HeadError
from bottleneck_transfer.features.bases.onnx_file import is_onnx_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.rebuild import rebuild_base
from bottleneck_transfer.heads.declared import target_metric
from bottleneck_transfer.heads.registry import head_kind, head_names
from bottleneck_transfer.heads.target_compare import TargetData, fit_fold, predict_scores

#: The final activation of each target kind's export.
ACTIVATIONS = {"binary": "sigmoid", "multilabel": "sigmoid", "regression": "linear"}


def _affine(weight: np.ndarray, bias: np.ndarray, transformers: list, dim: int) -> tuple:
    """``weight`` (D, K) and ``bias`` of a linear map on scaled features, on raw ones."""
    mean, scale = _fold_scaler(transformers, dim)
    folded = weight / scale[:, None]
    return folded, bias - (mean / scale) @ weight


def _dense_output_layers(clf: Any, transformers: list, dim: int) -> list:
    """The dense head's layers up to its last pre-activation (logits or the value)."""
    coefs = [np.asarray(c, np.float64) for c in clf.coefs_]
    biases = [np.asarray(b, np.float64) for b in clf.intercepts_]
    first_w, first_b = _affine(coefs[0], biases[0], transformers, dim)
    if len(coefs) == 1:
        return [_dense_layer(first_w, first_b, "head_outputs")]
    return [
        _dense_layer(first_w, first_b, "head_hidden", activation="relu"),
        _dense_layer(coefs[1], biases[1], "head_outputs"),
    ]


def target_layers(head: Any, dim: int, kind: str) -> list:
    """Keras layers giving a fitted head's pre-activation outputs (the export then applies
    :data:`ACTIVATIONS`): the positive's logit, each tag's logit, or the value.

    Raises
    ------
    HeadError
        A head without an exact Keras form, naming the heads that have one.
    """
    from sklearn.multiclass import OneVsRestClassifier

    transformers, clf = final_estimator(head)
    if kind == "binary":
        layers, outputs = class_head_layers(head, dim)
        if outputs != "probabilities":
            raise HeadError("a binary export needs a head with probabilities (calibrate it)")
        return [*layers, _dense_layer(np.array([[-1.0], [1.0]]), np.zeros(1), "head_logit")]
    if hasattr(clf, "coefs_"):
        return _dense_output_layers(clf, transformers, dim)
    if isinstance(clf, OneVsRestClassifier):
        coef = np.concatenate([np.asarray(e.coef_, np.float64) for e in clf.estimators_])
        bias = np.concatenate([np.asarray(e.intercept_, np.float64) for e in clf.estimators_])
    elif kind == "regression" and hasattr(clf, "coef_"):
        coef = np.asarray(clf.coef_, np.float64).reshape(1, -1)
        bias = np.asarray(clf.intercept_, np.float64).reshape(1)
    else:
        raise HeadError(
            f"{type(clf).__name__} has no exact Keras form for a {kind} target; export "
            "logreg or dense (multi-label), ridge, linear-svr or dense (regression)"
        )
    weight, folded_bias = _affine(coef.T, bias, transformers, dim)
    return [_dense_layer(weight, folded_bias, "head_outputs")]


class _Outputs:
    """The fitted head's outputs in the export's columns, for the parity check."""

    def __init__(self, head: Any, kind: str) -> None:
        self.head, self.kind = head, kind

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = predict_scores(self.head, features, self.kind)
        return scores.reshape(len(features), -1)


def _metadata(cache: FeatureCache, spec: str, fold: Any, described: dict, base: Any) -> dict:
    target = cache.target
    thresholds = (
        None
        if fold.thresholds is None
        else dict(zip(target.outputs, fold.thresholds.tolist(), strict=True))
    )
    return {
        **provenance_metadata(cache, described, base),
        "classes": target.outputs,
        "target": target.to_dict(),
        "thresholds": thresholds,
        "activation": ACTIVATIONS[target.kind],
        "outputs": "values" if target.kind == "regression" else "probabilities",
        "head": head_kind(spec).name,
        "head_spec": spec,
        "head_params": fold.params,
        "resize": KERAS_RESIZE,
    }


def check_target_form(kind: str, spec: str, form: str, settings: ExportSettings) -> None:
    """Refuse, before any work, what a ``kind`` target's export cannot be: a folder, a
    quantized TFLite model, a head kind without an exact Keras form.

    Raises
    ------
    ExportError
        The folder form or ``--quantize``, saying what to export instead.
    HeadError
        A head kind that exports only as a folder, naming the ones that export.
    """
    if form == "folder":
        raise ExportError(
            f"a {kind} head exports as one model (.keras, .onnx, .tflite or --format "
            "saved-model), not as a folder: give -o a file name with one of those suffixes"
        )
    if settings.quantize is not None:
        raise ExportError(
            f"--quantize is measured as a change of top-1 accuracy, which a {kind} target "
            "has not: export a float .tflite model (leave --quantize out)"
        )
    if head_kind(spec).export_form != "keras":
        raise HeadError(
            f"{head_kind(spec).name} has no exact Keras form for a {kind} target; export "
            f"one of {', '.join(exact_heads(kind))}"
        )


def exact_heads(kind: str) -> list[str]:
    """The head kinds of the registry whose ``kind`` target exports (an exact Keras form)."""
    return [name for name in head_names(kind) if head_kind(name).export_form == "keras"]


def _check_base(cache: FeatureCache, form: str) -> None:
    """Refuse a base ``form`` cannot hold (:func:`~.export_model.check_exportable_base`) and
    an ONNX file base, whose one-graph export holds a class head only."""
    check_exportable_base(cache, form)
    if is_onnx_base(cache.provenance.get("base", {})):
        raise ExportError(
            f"the cache {cache.path} was made with an ONNX file base, whose export holds a "
            f"class head only; a {cache.target.kind} head of it is not exported yet"
        )


def export_target(
    cache: str | Path,
    out: str | Path,
    *,
    head: str = "logreg",
    form: str = "keras",
    settings: ExportSettings | None = None,
    sample: int = DEFAULT_SAMPLE,
    atol: float = DEFAULT_ATOL,
    cost_ratio: float | None = None,
    tune: bool = False,
    metric: str | None = None,
    seed: int = 0,
) -> ExportResult:
    """Export ``head`` fitted on a binary, multi-label or regression cache to ``out``, in
    ``form`` (``keras`` or a converted form of :data:`~.formats.CONVERTERS`; ``out`` checked
    and placed by :func:`~.export.export`); see the module. ``tune`` searches the head's
    coarse grid by ``metric`` (the kind's default: None) on the rows' inner folds, as
    :func:`~bottleneck_transfer.heads.target_compare.compare_targets` does.

    Raises
    ------
    HeadError
        A head that does not fit the target or has no exact Keras form.
    ExportError
        A form or setting :func:`check_target_form` refuses, a base the form cannot hold,
        or the parity check failed.
    """
    started = time.perf_counter()
    out, settings = Path(out), settings or ExportSettings()
    converter = CONVERTERS.get(form)
    with FeatureCache.open(cache) as opened:
        kind = opened.target.kind
        check_target_form(kind, head, form, settings)
        _check_base(opened, form)
        described = opened.provenance.get("base", {})
        data = TargetData.read(opened)
        rows = np.arange(len(data.y))  # fitted on every row, thresholds on their inner folds
        chosen = target_metric(kind, metric)
        fold = fit_fold(
            head, data, (rows, rows), chosen, tune=tune, seed=seed, cost_ratio=cost_ratio
        )
        layers = target_layers(fold.head, opened.dim, kind)
        rebuilt = rebuild_base(described, cache_path=opened.path)
        metadata = _metadata(opened, head, fold, described, rebuilt)
        resize = None
        if converter is not None:
            metadata["resize"] = converter.resize
            outputs = TARGET_OUTPUT_NAMES[kind]
            metadata.update(form_metadata(converter, described["input_shape"], settings, outputs))
            resize = converter.resize_layer(rebuilt.image_size)
        model = build_keras_model(rebuilt, layers, metadata, resize)
        scale = max(1.0, float(np.abs(data.y).max())) if kind == "regression" else 1.0
        parity = None
        with atomic_path(out) as target:
            loaded = save_model(model, target, converter, metadata, settings)
            if sample > 0:
                parity = check_parity(
                    loaded,
                    _Outputs(fold.head, kind),
                    opened,
                    rebuilt,
                    sample=sample,
                    atol=atol * scale,
                )
            if target.is_dir():
                write_labels(target, metadata["classes"])
        labels = labels_path(out) if out.is_dir() else write_labels(out, metadata["classes"])
    return ExportResult(
        path=out,
        kind=form,
        labels=labels,
        head=metadata["head"],
        classes=metadata["classes"],
        outputs=metadata["outputs"],
        parity=parity,
        seconds=time.perf_counter() - started,
        metadata=metadata,
    )
