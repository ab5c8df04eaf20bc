"""Export a cache's head with its base as one deployable model.

``export(cache, out, head="logreg")`` fits the head on the whole cache (or takes a saved head),
rebuilds the base from the cache's provenance, checks that its weights are the ones the cache
was made with, and writes one of these forms (``format``, else from ``out``'s suffix):

* ``keras``: **a single ``.keras`` file** (heads Keras can express exactly: ``logreg``,
  ``linear-svm`` with its calibration, ``dense``; conversion in :mod:`deploy.keras_head`;
  format in :mod:`deploy.exported`);
* ``folder`` (any ``out`` without one of the suffixes; required for ``rbf-svm`` and ``knn``):
  ``base.keras`` + ``head.skops`` + ``model.json``;
* ``saved-model`` (a version folder ``out/N``), ``tflite`` (``*.tflite``, a fixed input shape,
  optionally quantized), ``onnx`` (``*.onnx``, named input and outputs): the ``.keras`` model
  converted for those runtimes and the serving and mobile stacks that run them
  (:mod:`deploy.formats`); they need the TensorFlow backend (``onnx`` also the ``[onnx]``
  extra). ``quantize`` is TFLite's post-training quantization (:mod:`deploy.form_tflite`):
  ``int8`` calibrates on training images from the cache's source, and instead of the parity
  check the accuracy change is measured on at least ``QUANTIZED_SAMPLE`` other cached images.

A cache made with an ONNX file base exports as ``onnx`` only: its graph and the head's in one
ONNX graph (:mod:`deploy.onnx_base`); the other forms are refused in one line. A binary,
multi-label or regression cache with a head spec exports through
:func:`~.target_export.export_target`: sigmoid or linear outputs, in every form but the
folder, without ``quantize``.

Before the export appears (one atomic rename), it is reloaded with its own runtime (converted
forms through :func:`deploy.exported.load_exported`, as ``predict`` loads them) and checked
against the head on the cache's own source images (:mod:`deploy.parity`). The class names,
one per line in output order, go beside it: ``labels.txt`` inside a folder, ``<stem>.labels.txt``
beside a file (:func:`deploy.exported.labels_path`).

The metadata says what the outputs are: ``outputs`` is ``"probabilities"`` (a probabilistic or
calibrated head) or ``"decision-softmax"`` (an uncalibrated margin head's scores), and
``calibration`` the head's calibration method (None when uncalibrated).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.deploy import onnx_base
from bottleneck_transfer.deploy.export_model import (
    ExportResult,
    build_base_model,
    build_keras_model,
    check_exportable_base,
    form_metadata,
    input_shape,
    provenance_metadata,
    save_model,
)
from bottleneck_transfer.deploy.exported import (
    LABELS_FILE,
    labels_path,
    load_exported,
    write_labels,
)
from bottleneck_transfer.deploy.form_tflite import CALIBRATION
from bottleneck_transfer.deploy.formats import CONVERTERS, KERAS_RESIZE, Converter
from bottleneck_transfer.deploy.keras_head import final_estimator, head_layers
from bottleneck_transfer.deploy.parity import (
    DEFAULT_ATOL,
    DEFAULT_SAMPLE,
    QUANTIZED_SAMPLE,
    Parity,
    Quantized,
    calibration_pixels,
    check_parity,
    check_quantized,
)
from bottleneck_transfer.deploy.settings import ExportSettings, check_settings
from bottleneck_transfer.display import Display
from bottleneck_transfer.entries import remove_entry
from bottleneck_transfer.errors import BaseModelError, ExportError, HeadError, did_you_mean
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import items_word
from bottleneck_transfer.features.bases.onnx_file import is_onnx_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.cache.reader import target_kind_of
from bottleneck_transfer.features.rebuild import rebuild_base
from bottleneck_transfer.heads.registry import (
    DEFAULT_HEAD,
    fitted_calibration,
    head_kind,
    make_head,
    parse_spec,
)
from bottleneck_transfer.heads.training import (
    LabeledData,
    TrainedHead,
    check_data,
    load_head,
    train_head,
)
from bottleneck_transfer.heads.trust import kind_of, skops_io

if TYPE_CHECKING:
    import keras
    from bottleneck_transfer.features.bases import Base

#: The export forms written by Keras itself, and the suffix each output must have.
KERAS_FORMS = {"keras": ".keras", "folder": ""}


def form_suffixes() -> dict[str, str]:
    """Every export form and the suffix its output must have (``""``: a folder): Keras' own
    forms and each registered converter's (read at call time, so a form is one entry in
    :data:`deploy.formats.CONVERTERS`)."""
    return {**KERAS_FORMS, **{name: c.suffix for name, c in CONVERTERS.items()}}


def _head_kind(head: Any, spec: str | None, form: str) -> str:
    """The registered kind of the head (a folder's ``head.skops`` loads back as that kind)."""
    if spec:
        return head_kind(spec).name
    kind = kind_of(head)
    if kind is None and form == "folder":
        raise HeadError(
            "the head holds classes that no registered head kind declares, so its head.skops "
            "could not be loaded back: register a head kind for it (heads.registry.register_head)"
        )
    return kind or type(final_estimator(head)[1]).__name__


def _check_head_metadata(metadata: dict, cache: FeatureCache, head_file: str) -> None:
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


def _resolve_head(
    head: Any, head_file: str | Path | None, cache: FeatureCache
) -> tuple[Any, str | None, dict]:
    """The fitted head to export, its spec (None for an estimator) and its training metadata.

    A spec is fitted through :func:`~bottleneck_transfer.heads.training.train_head`; an
    unfitted estimator is fitted on the cache behind the same data guards.
    """
    if head_file is not None:
        head = load_head(head_file)
    elif isinstance(head, str):  # by path: read for the fit and scaled in place, one copy
        head = train_head(cache.path, head)
    if isinstance(head, TrainedHead):
        _check_head_metadata(head.metadata, cache, str(head_file or "given"))
        return head.estimator, head.metadata["head"], head.metadata
    if not _is_fitted(head):
        data = LabeledData.from_cache(cache)
        check_data(data)
        try:
            head.fit(data.X, data.y)
        except ValueError as exc:
            raise HeadError(f"cannot fit the head on {cache.path}: {exc}") from exc
    return head, None, {}


def _is_fitted(head: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(head)
        return True
    except (NotFittedError, TypeError):
        return False


def resolve_format(out: Path, format: str | None) -> str:
    """The export form: ``format``, else the one ``out``'s suffix names, else ``"folder"``.

    Raises
    ------
    ExportError
        An unknown ``format``, or one whose output ``out`` cannot be.
    """
    suffixes = form_suffixes()
    implied = next((name for name, suffix in suffixes.items() if suffix == out.suffix), "folder")
    if format is None:
        return implied
    if format not in suffixes:
        raise ExportError(
            f"unknown export format {format!r}{did_you_mean(format, suffixes)}; "
            f"choose one of {', '.join(suffixes)}"
        )
    suffix = suffixes[format]
    if suffix and out.suffix != suffix:
        raise ExportError(f"--format {format} writes a {suffix} file: name it -o NAME{suffix}")
    if not suffix and suffixes[implied]:
        raise ExportError(
            f"--format {format} writes a folder, not a {out.suffix} file: give -o a folder path"
        )
    return format


def _check_out(out: Path, form: str) -> None:
    """Refuse an output path that would overwrite something that is not an export.

    An existing folder is replaced only when it is an export this package wrote, exactly:
    its manifest lists everything in it (see :func:`~bottleneck_transfer.entries.remove_entry`,
    which removes it then); a folder holding anything else is never touched.
    """
    suffix = form_suffixes()[form]
    if suffix and out.is_dir():
        raise ExportError(f"{out} is a folder; give a {suffix} file path or another -o")
    if not suffix and (out.exists() or out.is_symlink()):
        if not out.is_dir() or out.is_symlink():
            raise ExportError(
                f"{out} exists and is not a folder; a {form} export needs a folder path "
                "(or name the output *.keras for a single-file export)"
            )
        left = remove_entry(out, dry_run=True).left if any(out.iterdir()) else []
        if left:
            path, why = left[0]
            raise ExportError(
                f"{out} exists and is not an export folder bottleneck wrote ({path.name}: "
                f"{why}); choose another -o, or remove it yourself"
            )


def _check_form(spec: str | None, form: str, out: Path, format: str | None) -> None:
    """Refuse a single-file form for a head kind that exports only as a folder."""
    if form != "folder" and spec is not None and head_kind(spec).export_form == "folder":
        raise HeadError(
            f"{head_kind(spec).name} has no exact Keras form, so it exports as a folder "
            f"(base.keras + head.skops + model.json): use -o {out.with_suffix('')} "
            f"instead of {out}" + (f" --format {format}" if format else "")
        )


@dataclass(repr=False)
class ExportPlan(Display):
    """What :func:`export` would write (:func:`plan_export`): nothing fitted, built or written.

    ``head_bytes`` estimates the head's float32 parameters (a head file: its size);
    ``base_bytes`` is the size of the base's model and weights files where the cache names
    files that exist, else None (a Keras application: known once built).
    """

    path: Path
    kind: str
    labels: Path
    head: str
    classes: list[str]
    input_shape: list[int]
    head_bytes: int
    base_bytes: int | None
    #: What the export takes: ``"images"``, or ``"texts"`` (raw strings, a text base's).
    unit: str = "images"

    @property
    def input_text(self) -> str:
        """The input in words: ``28x28x1 images`` or ``texts of up to 128 tokens``."""
        if self.unit == "texts":
            return f"texts of up to {self.input_shape[0]} tokens"
        return f"{'x'.join(str(n) for n in self.input_shape)} images"

    def _display_summary(self) -> dict[str, Any]:
        base = "known once built" if self.base_bytes is None else f"{self.base_bytes:,} bytes"
        return {
            "would write": f"{self.path} ({self.kind})",
            "head": self.head,
            "input": self.input_text,
            "classes": f"{len(self.classes)} (names in {self.labels})",
            "size": f"head ~{self.head_bytes:,} bytes, base {base}",
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        return [{"output": i, "class": name} for i, name in enumerate(self.classes)]

    def to_dict(self) -> dict[str, Any]:
        """What ``bottleneck export --dry-run --json`` prints."""
        return {
            "dry_run": True,
            "path": str(self.path),
            "kind": self.kind,
            "labels": str(self.labels),
            "head": self.head,
            "classes": self.classes,
            "input_shape": self.input_shape,
            "head_bytes": self.head_bytes,
            "base_bytes": self.base_bytes,
        }

    def line(self) -> str:
        """One line for ``bottleneck export --dry-run``: what would be written."""
        base = "known once built" if self.base_bytes is None else f"{self.base_bytes:,} bytes"
        return (
            f"Would write {self.path} ({self.kind}): head {self.head} (~{self.head_bytes:,} "
            f"bytes), base {base}; input {self.input_text}, {len(self.classes)} classes "
            f"({', '.join(self.classes)}) named in {self.labels}. Nothing written."
        )


def adds_a_version(out: str | Path, format: str | None) -> bool:
    """Whether a SavedModel export to ``out`` adds a version folder (nothing is replaced)."""
    return format == "saved-model" and any(p.name.isdigit() for p in Path(out).glob("[0-9]*"))


def _head_bytes(spec: str, rows: int, dim: int, n_classes: int) -> int:
    """float32 bytes of a ``spec`` head fitted on ``rows`` x ``dim`` features: its layers
    for the kinds Keras expresses, at most the training rows for the others (k-NN keeps
    them, an SVM at most all of them as support vectors)."""
    if head_kind(spec).export_form == "folder":
        return 4 * rows * (dim + 1)
    hidden = parse_spec(spec)[1].get("hidden", 0)
    widths = [dim, *([hidden] if hidden else []), n_classes]
    return 4 * sum((a + 1) * b for a, b in itertools.pairwise(widths))


def _file_bytes(*paths: str | Path | None) -> int | None:
    sizes = [Path(p).stat().st_size for p in paths if p is not None and Path(p).is_file()]
    return sum(sizes) if sizes else None


def plan_export(
    cache: str | Path,
    out: str | Path,
    *,
    head: str = DEFAULT_HEAD,
    head_file: str | Path | None = None,
    base: str | Path | None = None,
    weights: str | Path | None = None,
    format: str | None = None,
    batch: int = 1,
    quantize: str | None = None,
) -> ExportPlan:
    """What :func:`export` would write, checked as it checks (form, output path, the head's
    kind and classes, the base's kind), without fitting, building, loading a backend or
    writing anything (``bottleneck export --dry-run``).

    Examples
    --------
    >>> plan_export("caches/fm-train.h5", "model.keras").kind  # doctest: +SKIP
    'keras'
    """
    out = Path(out)
    form = resolve_format(out, format)
    converter = CONVERTERS.get(form)
    settings = ExportSettings(batch, quantize)
    check_settings(settings, form, converter.settings if converter else ())
    spec = head if head_file is None else None
    target = target_kind_of(cache) if head_file is None else "class"
    if target == "class":
        _check_form(spec, form, out, format)
    else:  # a binary, multi-label or regression head (deploy.target_export)
        from bottleneck_transfer.deploy.target_export import check_target_form

        make_head(head, target=target)  # a head that does not fit the target: refused
        check_target_form(target, head, form, settings)
    out = _place(out, form)
    with FeatureCache.open(cache) as opened:
        check_exportable_base(opened, form)
        classes = list(opened.class_names if target == "class" else opened.target.outputs)
        if head_file is not None:
            trained = load_head(head_file)
            _check_head_metadata(trained.metadata, opened, str(head_file))
            spec = trained.metadata["head"]
            classes = [classes[int(c)] for c in np.asarray(trained.estimator.classes_)]
            _check_form(spec, form, out, format)
            head_bytes = Path(head_file).stat().st_size
        else:
            head_bytes = _head_bytes(spec, len(opened), opened.dim, len(classes))
        described = opened.provenance.get("base", {})
        shape = input_shape(described)
        if shape is None:
            raise ExportError(
                f"the cache {opened.path} records no base input shape, so no base can be "
                "rebuilt to export: export from a cache `bottleneck extract` made"
            )
    return ExportPlan(
        path=out,
        kind=form,
        labels=labels_path(out) if form_suffixes()[form] else out / LABELS_FILE,
        head=head_kind(spec).name,
        classes=classes,
        input_shape=list(shape),
        head_bytes=head_bytes,
        base_bytes=_file_bytes(base or described.get("file"), weights or described.get("weights")),
        unit=items_word(described),
    )


def export(
    cache: str | Path,
    out: str | Path,
    *,
    head: Any = DEFAULT_HEAD,
    head_file: str | Path | None = None,
    base: str | Path | None = None,
    weights: str | Path | None = None,
    sample: int = DEFAULT_SAMPLE,
    atol: float = DEFAULT_ATOL,
    format: str | None = None,
    batch: int = 1,
    quantize: str | None = None,
) -> ExportResult:
    """Export ``head`` on the cache's base as one model (``.keras`` or converted) or a folder.

    Parameters
    ----------
    cache : str or Path
        The training cache. The head is fitted on all its labelled rows.
    out : str or Path
        A ``.keras``, ``.tflite`` or ``.onnx`` file (heads Keras can express) or a folder
        (any head; a SavedModel with ``format="saved-model"``).
    head : str, TrainedHead or estimator
        A head spec (``"logreg"``, ``"linear-svm:C=0.1"``, ``"dense:hidden=64"``, ``"knn"``)
        fitted on the whole cache; a head :func:`~.heads.training.train_head` returned; or a
        scikit-learn classifier (fitted or not).
    head_file : str or Path, optional
        A head saved by ``bottleneck train``, trained on the cache's base and classes.
    base, weights : str or Path, optional
        The base model file (verified by sha256) and weights file the cache was made with.
    sample, atol : int, float
        Source images to check the export on (0 skips the check); the largest allowed
        difference between the export's and the head's scores.
    format : {"keras", "folder", "saved-model", "tflite", "onnx"}, optional
        The export form (see the module); by default the one ``out``'s suffix names, else
        ``"folder"``.
    batch, quantize
        TFLite: the fixed batch size of its input; post-training quantization
        (``"dynamic"``, ``"float16"``, ``"int8"``; see the module).

    Raises
    ------
    HeadError
        Unknown head, head not expressible in Keras, or a head file from other data.
    BaseModelError
        The base cannot be rebuilt or has other weights than the cache's.
    ExportError
        The self-check failed (naming the sample), ``out`` or ``format`` is unusable, or the
        format needs another backend.
    MissingDependencyError
        ``format="onnx"`` without ``tf2onnx``, ``onnx`` or ``onnxruntime``.

    Examples
    --------
    >>> result = export("caches/fm-train.h5", "model.keras", head="logreg")
    >>> result.parity.ok
    True
    >>> export("caches/fm-train.h5", "model_dir", head="knn")  # a folder form  # doctest: +SKIP
    """
    started = time.perf_counter()
    request = _Request(
        cache=cache,
        out=Path(out),
        head=head,
        head_file=head_file,
        base=base,
        weights=weights,
        sample=sample,
        atol=atol,
        format=format,
        settings=ExportSettings(batch=batch, quantize=quantize),
    )
    if request.converter is not None:
        request.converter.check_available()
    if isinstance(head, str) and head_file is None and target_kind_of(cache) != "class":
        return _export_target(request)
    return _export_classes(request, started)


@dataclass
class _Request:
    """What :func:`export` is asked for, its form resolved from ``out`` and ``format`` and
    its settings checked against that form."""

    cache: str | Path
    out: Path
    head: Any
    head_file: str | Path | None
    base: str | Path | None
    weights: str | Path | None
    sample: int
    atol: float
    format: str | None
    settings: ExportSettings
    form: str = field(init=False)
    converter: Converter | None = field(init=False)

    def __post_init__(self) -> None:
        self.form = resolve_format(self.out, self.format)
        self.converter = CONVERTERS.get(self.form)
        takes = self.converter.settings if self.converter else ()
        check_settings(self.settings, self.form, takes)


@dataclass
class _Model:
    """What a class export writes: the fitted head, the rebuilt base, the model built on
    them (with the converter that writes it) and its metadata."""

    estimator: Any
    classes: list[str]
    #: The head's registered kind.
    head_kind: str
    rebuilt: Base
    #: A ``keras.Model``, or an ONNX file base's merged ``onnx.ModelProto``.
    model: Any
    converter: Converter | onnx_base.OnnxBaseWriter | None
    metadata: dict
    settings: ExportSettings
    #: Training images that calibrate ``int8`` quantization (0: none).
    calibrate: int


def _export_target(request: _Request) -> ExportResult:
    """A binary, multi-label or regression cache's export (:mod:`.target_export`)."""
    from bottleneck_transfer.deploy.target_export import check_target_form, export_target

    check_target_form(target_kind_of(request.cache), request.head, request.form, request.settings)
    return export_target(
        request.cache,
        _place(request.out, request.form),
        head=request.head,
        form=request.form,
        settings=request.settings,
        sample=request.sample,
        atol=request.atol,
    )


def _export_classes(request: _Request, started: float) -> ExportResult:
    """A class cache's export: checked, built, written, reloaded and checked again."""
    head = request.head
    spec = head if isinstance(head, str) and request.head_file is None else None
    if isinstance(head, TrainedHead):
        spec = head.metadata["head"]
    _check_form(spec, request.form, request.out, request.format)
    out = _place(request.out, request.form)
    with FeatureCache.open(request.cache) as opened:
        check_exportable_base(opened, request.form)
        made = _build(request, opened)
        with atomic_path(out) as target:
            parity, quantized = _write(target, request, opened, made)
        labels = labels_path(out) if out.is_dir() else write_labels(out, made.classes)
    return ExportResult(
        path=out,
        kind=request.form,
        labels=labels,
        head=made.head_kind,
        classes=made.classes,
        outputs=made.metadata["outputs"],
        parity=parity,
        seconds=time.perf_counter() - started,
        metadata=made.metadata,
        quantized=quantized,
    )


def _head_classes(estimator: Any, cache: FeatureCache) -> list[str]:
    """The cache's class names of the head's output columns, checked to be the cache's."""
    classes_ = np.asarray(estimator.classes_)
    if classes_.dtype.kind not in "iu" or classes_.min() < 0:
        raise HeadError(f"the head's classes {classes_.tolist()} are not the cache's labels")
    if classes_.max() >= len(cache.class_names):
        raise HeadError(
            f"the head predicts class index {int(classes_.max())}, the cache {cache.path} "
            f"has {len(cache.class_names)} classes"
        )
    return [cache.class_names[int(c)] for c in classes_]


def _build(request: _Request, opened: FeatureCache) -> _Model:
    """Fit (or load) the head, rebuild the base and build the model to write."""
    estimator, spec, trained = _resolve_head(request.head, request.head_file, opened)
    kind_name = _head_kind(estimator, spec, request.form)
    classes = _head_classes(estimator, opened)
    layers, outputs = _head_outputs(estimator, opened.dim, request.form)
    described = opened.provenance.get("base", {})
    rebuilt = _rebuilt_base(request, opened, described)
    metadata = {
        **provenance_metadata(opened, described, rebuilt),
        "classes": classes,
        "head": kind_name,
        "head_spec": spec,
        "head_params": trained.get("params"),
        "calibration": fitted_calibration(estimator),
    }
    metadata["outputs"] = outputs
    converter = request.converter
    metadata["resize"] = KERAS_RESIZE if converter is None else converter.resize
    if converter is not None:
        metadata.update(form_metadata(converter, described["input_shape"], request.settings))
    settings = request.settings
    calibrate = min(CALIBRATION, len(opened) // 2) if settings.quantize == "int8" else 0
    if calibrate:
        settings = replace(settings, calibration=calibration_pixels(opened, rebuilt, calibrate))
    if hub.requirements(described):  # e.g. keras-hub: Keras imports it to load the model
        metadata["requires"] = hub.requirements(described)
    if rebuilt.encoder is not None:
        _text_metadata(metadata)
    model, converter = _model(request, described, rebuilt, layers, metadata)
    return _Model(
        estimator, classes, kind_name, rebuilt, model, converter, metadata, settings, calibrate
    )


def _head_outputs(estimator: Any, dim: int, form: str) -> tuple[list, str]:
    """The head's Keras layers (none for the folder form, which saves the estimator) and
    what its outputs are (``"probabilities"`` or ``"decision-softmax"``)."""
    if form != "folder":
        return head_layers(estimator, dim)
    outputs = "probabilities" if hasattr(estimator, "predict_proba") else "decision-softmax"
    return [], outputs


def _rebuilt_base(request: _Request, opened: FeatureCache, described: dict) -> Base:
    """The cache's base rebuilt from its provenance ``described``, with the cache's width."""
    rebuilt = rebuild_base(
        described, base_path=request.base, weights=request.weights, cache_path=opened.path
    )
    if rebuilt.dim != opened.dim:
        raise BaseModelError(
            f"the rebuilt base gives {rebuilt.dim} features, the cache {opened.dim}"
        )
    return rebuilt


def _model(
    request: _Request, described: dict, rebuilt: Base, layers: list, metadata: dict
) -> tuple[Any, Converter | onnx_base.OnnxBaseWriter | None]:
    """The model to write and what writes it: an ONNX file base's one graph (base and head,
    :mod:`deploy.onnx_base`), the single-file Keras model, or the folder's base model."""
    if is_onnx_base(described):
        metadata["resize"] = onnx_base.RESIZE
        return onnx_base.merged(rebuilt, layers), onnx_base.OnnxBaseWriter()
    converter = request.converter
    if request.form == "folder":
        return build_base_model(rebuilt), converter
    resize = None if converter is None else converter.resize_layer(rebuilt.image_size)
    return build_keras_model(rebuilt, layers, metadata, resize), converter


def _write(
    target: Path, request: _Request, opened: FeatureCache, made: _Model
) -> tuple[Parity | None, Quantized | None]:
    """Write the export to ``target``, load it back with its own runtime and check it
    against the head on the cache's source images (a quantized one: its accuracy change)."""
    metadata = made.metadata
    if request.form == "folder":
        _write_folder(target, made.model, made.estimator, metadata)
        loaded = load_exported(target)
    else:
        loaded = save_model(made.model, target, made.converter, metadata, made.settings)
    parity: Parity | None = None
    quantized: Quantized | None = None
    if request.sample > 0 and made.settings.quantize:
        quantized = check_quantized(
            loaded,
            made.estimator,
            opened,
            made.rebuilt,
            quantize=made.settings.quantize,
            calibration=made.calibrate,
            sample=max(request.sample, QUANTIZED_SAMPLE),
        )
    elif request.sample > 0:
        parity = check_parity(
            loaded, made.estimator, opened, made.rebuilt, sample=request.sample, atol=request.atol
        )
    if request.form == "folder" and parity is not None:
        metadata["parity"] = parity.to_dict()
        (target / "model.json").write_text(
            json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8"
        )
    if target.is_dir():
        write_labels(target, made.classes)
    return parity, quantized


def _text_metadata(metadata: dict) -> None:
    """A text export's metadata: no resize; its tokenizing and pooling layers are this
    package's (registered Keras layers) and run on TensorFlow, which it checks first."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"a text base's export takes raw strings, which only the TensorFlow backend runs "
            f"(this process runs {keras.backend.backend()}): rerun with KERAS_BACKEND=tensorflow"
        )
    metadata["resize"] = None
    metadata["requires"] = [*metadata.get("requires", []), "bottleneck-transfer"]


def _place(out: Path, form: str) -> Path:
    """Where the export to ``-o out`` goes (a SavedModel: ``out/N``), checked by
    :func:`_check_out`."""
    converter = CONVERTERS.get(form)
    placed = out if converter is None else converter.place(out)
    _check_out(placed, form)
    return placed


def _write_folder(target: Path, model: keras.Model, estimator: Any, metadata: dict) -> None:
    sio = skops_io()
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
