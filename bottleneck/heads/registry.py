"""The head registry: every head kind is declared once, here, as a :class:`HeadKind`.

A head is a scikit-learn classifier on cached features, built by :func:`make_head` as a
:class:`~sklearn.pipeline.Pipeline` ``[("scale", scaler), ("clf", estimator)]``. A kind
declares its estimator, its scaling, its tuning grid, its export form, its out-of-core form
and the exact classes its saved file may hold. Everything else reads the registry: the CLI's
choices and defaults, spec validation, tuning, training, the trust check of saved heads,
export and the benchmarks. Adding a head is its estimator plus one :func:`register_head`.

The built-in kinds:

``logreg``
    StandardScaler + multinomial :class:`~sklearn.linear_model.LogisticRegression` (the classic
    linear probe), at most 500 L-BFGS iterations. Has ``predict_proba``.
``linear-svm``
    StandardScaler + :class:`~bottleneck_transfer.heads.linear_svm.LinearSVM`, the
    squared-hinge linear SVM of :class:`~sklearn.svm.LinearSVC`, solved by SMO on the Gram
    matrix and a bounded Newton method. A margin classifier without a probabilistic model,
    so it is **calibrated** (see below).
``rbf-svm``
    StandardScaler + :class:`~bottleneck_transfer.heads.estimators.RBFSVC`: an exact kernel SVM
    up to 10,000 training rows, a Nyström map + least-squares classifier above. Calibrated
    like ``linear-svm``; exports as a folder.
``dense``
    StandardScaler + :class:`~bottleneck_transfer.heads.estimators.DenseHead`, a Keras softmax
    layer (optional hidden layer and dropout) with early stopping. Has ``predict_proba``.
``nystroem``
    StandardScaler + :class:`~bottleneck_transfer.heads.estimators.NystroemHead`: a Nyström
    map of the RBF kernel (``n_components`` rows) + logistic regression; the kernel head
    that streams (SGD on the mapped rows), offered where ``rbf-svm`` is refused above the
    memory budget; exports as a folder; not compared by default.
``knn``
    L2 normalisation + :class:`~sklearn.neighbors.KNeighborsClassifier`: cosine neighbours, the
    usual few-shot baseline; exports as a folder; not compared by default. Its
    ``predict_proba`` is the share of the ``k`` neighbours in each class: a frequency
    estimate of the class probabilities, so it is not calibrated by default (its ECE and
    Brier score are reported like every head's; ``knn:calibrate=temperature`` calibrates it).

**Calibration.** A head kind without a probabilistic model declares
:attr:`HeadKind.calibration`, and :func:`make_head` wraps its estimator in
:class:`~bottleneck_transfer.heads.calibrated.HeldOutCalibration`, a
:class:`~sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``: the model is
fitted on all training rows and its calibrator on the held-out decision values of folds *of
those training rows* (:func:`~bottleneck_transfer.heads.calibration.calibration_folds`,
every view of an image on one side), so calibration never sees test rows. Only the first
folds that hold :data:`CALIBRATION_HELD_ROWS` rows are fitted (all :data:`CALIBRATION_FOLDS`
below that many rows): a calibrated head costs 1 + k fits, 2 on 4,800 rows instead of 6.
The method is ``"temperature"``: one parameter ``beta`` for all classes,
``softmax(beta * decision)``; it keeps the classifier's predictions (the arg-max), needs no
per-class data (few-shot heads have 5-50 rows per class, where Platt's ``"sigmoid"`` fits 2
parameters per class and isotonic regression needs about 1,000 rows per class) and exports
exactly (the logits scaled by ``beta``). ``linear-svm`` on the Fashion-MNIST demo features
(5 classes, 5,000 test rows; mean of 5 draws below 12,000 rows), ECE / Brier score of the
softmax of decision values, of temperature on every row's out-of-fold values (5 folds,
6 fits) and on the held-out folds (fits), and of ``logreg``:

======  ================  =============  =================  =============
rows    decision softmax  all folds      held-out folds     logreg
======  ================  =============  =================  =============
100     0.116 / 0.250     0.034 / 0.230  0.034 / 0.230 (6)  0.019 / 0.208
500     0.045 / 0.146     0.019 / 0.141  0.019 / 0.141 (6)  0.016 / 0.135
2,000   0.049 / 0.110     0.009 / 0.104  0.014 / 0.104 (3)  0.009 / 0.098
12,000  0.103 / 0.108     0.007 / 0.085  0.009 / 0.085 (2)  0.009 / 0.082
======  ================  =============  =================  =============

(``python -c "from bottleneck_transfer.bench.calibration import main; main()"``,
:mod:`~bottleneck_transfer.bench.calibration`.) The spec key ``calibrate`` overrides it:
``"linear-svm:calibrate=false"`` gives the uncalibrated head, whose outputs are scores
(``score_*`` columns, never ``prob_*``); ``calibrate=sigmoid|isotonic|temperature`` chooses
a method (for any kind; ``true``: the kind's method, else temperature). A choice between
heads (:func:`~bottleneck_transfer.heads.selection.choice_calibrates`) fits a
temperature-calibrated head uncalibrated when its metric reads predictions only.

**Targets.** A kind declares the target kinds it fits (:attr:`HeadKind.targets`; default
class and binary) and, where that needs another estimator, its factory
(:attr:`HeadKind.target_factories`): ``logreg`` fits multi-label targets as one-vs-rest
logistic regressions, ``dense`` multi-label and regression targets with sigmoid or linear
outputs (:class:`~bottleneck_transfer.heads.target_estimators.DenseOutputHead`), ``knn``
regression as :class:`~sklearn.neighbors.KNeighborsRegressor`; ``ridge``, ``linear-svr`` and
``kernel-ridge`` fit regression only, so :func:`head_names` and :func:`default_heads` (of
class targets by default) leave them out. ``make_head(spec, target=...)`` builds the kind's
estimator for a target (only class and binary heads are calibrated);
:mod:`~bottleneck_transfer.heads.target_compare` compares them.

Specs are ``"NAME"`` or ``"NAME:PARAM=VALUE,PARAM=VALUE"``; the parameters are those of the
``clf`` step, e.g. ``"logreg:C=0.1"`` or ``"dense:hidden=256,dropout=0.2"``.

Examples
--------
>>> from sklearn.linear_model import RidgeClassifier
>>> from sklearn.preprocessing import StandardScaler
>>> ridge = HeadKind(
...     name="ridge",
...     factory=RidgeClassifier,
...     scaler=StandardScaler,
...     search_space=SearchSpace((Axis("alpha", (0.1, 1.0, 10.0)),)),
...     export_form="keras",
...     trusted_types=frozenset({"sklearn.preprocessing._label.LabelBinarizer"}),
...     compared_by_default=False,
... )
>>> register_head(ridge).name  # doctest: +SKIP
'ridge'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bottleneck_transfer.errors import HeadError, did_you_mean
from bottleneck_transfer.features.targets import TARGET_KINDS
from bottleneck_transfer.heads.calibrated import HeldOutCalibration
from bottleneck_transfer.heads.estimators import RBFSVC, DenseHead, NystroemHead
from bottleneck_transfer.heads.linear_svm import LinearSVM
from bottleneck_transfer.heads.target_estimators import DenseOutputHead
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.kernel_approximation import Nystroem
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, Normalizer, StandardScaler
from sklearn.svm import SVC, LinearSVR
from threadpoolctl import threadpool_limits

DEFAULT_HEAD = "logreg"
#: L-BFGS iterations of ``logreg``: 4,800 x 1,280 MobileNetV2 features took 305 (3.4 s, one
#: thread); a fit that needs more is marked as not converged instead of running on.
LOGREG_MAX_ITER = 500
EXPORT_FORMS = ("keras", "folder")
#: How a kind streams above the memory budget (:mod:`~bottleneck_transfer.heads.streaming`).
STREAMING_FORMS = ("sgd", "dense", "knn")
#: The methods of :class:`~sklearn.calibration.CalibratedClassifierCV`.
CALIBRATION_METHODS = ("temperature", "sigmoid", "isotonic")
#: The method of ``calibrate=true`` for a kind that declares none.
DEFAULT_CALIBRATION = "temperature"
#: Folds of the training rows whose held-out decision values fit a calibrator (fewer when a
#: class has fewer images): scikit-learn's default.
CALIBRATION_FOLDS = 5
#: Held-out rows enough for the calibrator: only the first folds that hold this many rows
#: are fitted (a calibrated fit costs one fit per fold more). 4,800 training rows: one fold
#: of 960 rows, 2 fits instead of 6; every fold below 500 rows.
CALIBRATION_HELD_ROWS = 500
#: The spec key that switches calibration off or chooses its method.
CALIBRATE_KEY = "calibrate"
#: The containers every saved head holds, exactly as skops names them: the dict of a head
#: file, the lists and tuples of a Pipeline's steps, JSON values, arrays, dtypes and the
#: NumPy scalars that fitted attributes hold.
SKOPS_CONTAINER_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.tuple",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.bool",
        "numpy.float32",
        "numpy.float64",
        "numpy.int32",
        "numpy.int64",
    }
)
#: The classes of a calibrated head besides its estimator's (any kind may be calibrated).
CALIBRATION_TYPES = frozenset(
    {
        "sklearn.calibration.CalibratedClassifierCV",
        "bottleneck_transfer.heads.calibrated.HeldOutCalibration",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.isotonic.IsotonicRegression",
    }
)


def type_name(cls: type) -> str:
    """The fully qualified name skops gives a class, e.g. ``"sklearn.svm._classes.SVC"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _names(*classes: type) -> frozenset[str]:
    return frozenset(type_name(cls) for cls in classes)


@dataclass(frozen=True)
class Axis:
    """One searched parameter of a head's ``clf`` step.

    Parameters
    ----------
    param : str
        Parameter name, e.g. ``"C"``.
    grid : tuple of float
        Coarse values, evenly spaced in log10 when ``finest_step`` is set.
    finest_step : float or None
        Refine around the best value until the step is at most this many decades;
        None searches the grid only.
    per_feature : bool
        The values are multiples of ``1 / n_features`` (the RBF ``gamma="scale"`` value
        on standardised features).
    """

    param: str
    grid: tuple[float, ...]
    finest_step: float | None = None
    per_feature: bool = False


@dataclass(frozen=True)
class SearchSpace:
    """The axes searched for one head, and whether its trials may run in parallel."""

    axes: tuple[Axis, ...]
    parallel: bool = True


@dataclass(frozen=True)
class HeadKind:
    """One kind of head, declared once.

    Parameters
    ----------
    name : str
        The spec name, e.g. ``"logreg"``.
    factory : callable
        Returns the unfitted ``clf`` estimator with the kind's defaults.
    scaler : type
        The class of the scaling step (built without arguments).
    search_space : SearchSpace
        What :func:`~bottleneck_transfer.heads.tuning.tune_head` searches.
    export_form : {"keras", "folder"}
        ``"keras"``: converted exactly into Dense layers (one ``.keras`` file); ``"folder"``:
        exported as ``base.keras`` + ``head.skops``.
    streaming_loss : str or None
        The :class:`~sklearn.linear_model.SGDClassifier` loss of its ``"sgd"`` streaming
        form, or None.
    streaming : {"sgd", "dense", "knn"} or None
        How it trains when the features exceed the memory budget (or with
        ``--out-of-core``; :mod:`~bottleneck_transfer.heads.streaming`); None: it cannot
        stream and is refused above the budget.
    trusted_types : frozenset of str
        Exact fully qualified names of the classes a fitted head of this kind holds besides
        the factory's own class, the scaler, :data:`SKOPS_CONTAINER_TYPES` and
        :data:`CALIBRATION_TYPES` (its sub-estimators, trees, loss objects). Its saved files
        may hold these and nothing else; see :func:`trusted_type_names`.
    compared_by_default : bool
        Whether ``compare`` and ``run`` use it when no heads are named.
    calibration : {"temperature", "sigmoid", "isotonic"} or None
        How its decision values become probabilities (a kind without a probabilistic
        model); None when its ``predict_proba`` is already a probability model.
    targets : tuple of str
        The target kinds it fits (:data:`~bottleneck_transfer.features.targets.TARGET_KINDS`);
        default class and binary (a classifier).
    target_factories : mapping
        Target kind -> the estimator it fits for that kind when ``factory``'s is not it (e.g.
        one-vs-rest logistic regression for ``multilabel``).

    Examples
    --------
    >>> from sklearn.linear_model import RidgeClassifier
    >>> from sklearn.preprocessing import StandardScaler
    >>> kind = HeadKind(
    ...     name="ridge",
    ...     factory=RidgeClassifier,
    ...     scaler=StandardScaler,
    ...     search_space=SearchSpace((Axis("alpha", (0.1, 1.0, 10.0)),)),
    ...     export_form="keras",
    ... )
    >>> kind.export_form
    'keras'
    """

    name: str
    factory: Callable[[], BaseEstimator]
    scaler: type
    search_space: SearchSpace
    export_form: str
    streaming_loss: str | None = None
    streaming: str | None = None
    trusted_types: frozenset[str] = frozenset()
    compared_by_default: bool = True
    calibration: str | None = None
    targets: tuple[str, ...] = ("class", "binary")
    target_factories: Mapping[str, Callable[[], BaseEstimator]] = field(default_factory=dict)


_KINDS: dict[str, HeadKind] = {}


def register_head(kind: HeadKind) -> HeadKind:
    """Add a head kind to the registry; returns it.

    Raises
    ------
    HeadError
        If the name is taken or not a plain name, or the export form is unknown.

    Examples
    --------
    >>> from sklearn.linear_model import RidgeClassifier
    >>> from sklearn.preprocessing import StandardScaler
    >>> space = SearchSpace((Axis("alpha", (0.1, 1.0, 10.0)),))
    >>> register_head(HeadKind("ridge", RidgeClassifier, StandardScaler, space, "keras")).name
    'ridge'
    >>> make_head("ridge:alpha=3.0")  # doctest: +SKIP
    """
    if kind.name in _KINDS:
        raise HeadError(f"a head kind named {kind.name!r} is already registered")
    if not kind.name or any(c in kind.name for c in ":,=@ "):
        raise HeadError(
            f"a head kind's name may not be empty or hold ':', ',', '=', '@' or spaces. "
            f"Received: name={kind.name!r}"
        )
    if kind.export_form not in EXPORT_FORMS:
        raise HeadError(
            f"export_form must be one of {', '.join(EXPORT_FORMS)}. "
            f"Received: export_form={kind.export_form!r}"
        )
    if kind.streaming not in (None, *STREAMING_FORMS):
        raise HeadError(
            f"streaming must be one of {', '.join(STREAMING_FORMS)} or None. "
            f"Received: streaming={kind.streaming!r}"
        )
    if kind.calibration is not None and kind.calibration not in CALIBRATION_METHODS:
        raise HeadError(
            f"calibration must be one of {', '.join(CALIBRATION_METHODS)} or None. "
            f"Received: calibration={kind.calibration!r}"
        )
    unknown = sorted({*kind.targets, *kind.target_factories} - set(TARGET_KINDS))
    if unknown or not set(kind.target_factories) <= set(kind.targets):
        raise HeadError(
            f"targets must be among {', '.join(TARGET_KINDS)}, target_factories among the "
            f"kind's targets. Received: targets={kind.targets!r}, "
            f"target_factories={sorted(kind.target_factories)!r}"
        )
    _KINDS[kind.name] = kind
    return kind


def unregister_head(name: str) -> None:
    """Remove a head kind (for kinds registered for a while, e.g. in a test)."""
    _KINDS.pop(name, None)


def head_names(target: str | None = "class") -> tuple[str, ...]:
    """Names of the registered head kinds that fit ``target`` (None: every kind), in
    registration order."""
    return tuple(name for name, kind in _KINDS.items() if target in (None, *kind.targets))


def default_heads(target: str = "class") -> tuple[str, ...]:
    """The heads ``compare`` and ``run`` use for ``target`` when none are named."""
    return tuple(
        name for name, kind in _KINDS.items() if kind.compared_by_default and target in kind.targets
    )


def head_kind(name_or_spec: str) -> HeadKind:
    """The registered kind of a name or spec (``"logreg"``, ``"logreg:C=0.1"``).

    Raises
    ------
    HeadError
        For an unknown name, listing the valid ones.
    """
    name = parse_spec(name_or_spec)[0]
    if name not in _KINDS:
        raise HeadError(
            f"unknown head {name!r}.{did_you_mean(name, list(_KINDS))} Valid heads: "
            f"{', '.join(_KINDS)}. Received: head={name!r}"
        )
    return _KINDS[name]


def trusted_type_names(kind: HeadKind) -> frozenset[str]:
    """Every class a saved head of ``kind`` may hold, by exact name; nothing else loads."""
    own = _names(Pipeline, kind.scaler, type(kind.factory()))
    return SKOPS_CONTAINER_TYPES | CALIBRATION_TYPES | own | kind.trusted_types


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"NAME:PARAM=VALUE,..."`` into the head name and typed parameter values.

    Values become ``bool`` (true/false), ``None`` (none), ``int``, ``float`` or stay strings.

    Raises
    ------
    HeadError
        If a parameter is not of the form ``NAME=VALUE``.
    """
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    for item in (part.strip() for part in rest.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HeadError(
                f"bad head parameter {item!r}: expected NAME=VALUE, e.g. 'logreg:C=0.1'. "
                f"Received: head={spec!r}"
            )
        params[key.strip()] = _parse_value(value.strip())
    return name.strip(), params


def head_params(name: str) -> list[str]:
    """The parameters a head accepts in its spec (its estimator's, and ``calibrate``)."""
    return sorted([*head_kind(name).factory().get_params(deep=False), CALIBRATE_KEY])


def calibration_method(spec: str) -> str | None:
    """The calibration of the head a spec names: its ``calibrate`` key, else its kind's.

    ``calibrate=false`` gives None, ``true`` the kind's method (else
    :data:`DEFAULT_CALIBRATION`), a method name that method.

    Raises
    ------
    HeadError
        For another ``calibrate`` value, naming the valid ones.

    Examples
    --------
    >>> calibration_method("linear-svm"), calibration_method("linear-svm:calibrate=false")
    ('temperature', None)
    >>> calibration_method("logreg"), calibration_method("knn:calibrate=sigmoid")
    (None, 'sigmoid')
    """
    kind = head_kind(spec)
    params = parse_spec(spec)[1]
    if CALIBRATE_KEY not in params:
        return kind.calibration
    value = params[CALIBRATE_KEY]
    if value is False or value is None:
        return None
    if value is True:
        return kind.calibration or DEFAULT_CALIBRATION
    if value not in CALIBRATION_METHODS:
        raise HeadError(
            f"{CALIBRATE_KEY} must be true, false or one of {', '.join(CALIBRATION_METHODS)}. "
            f"Received: head={spec!r}"
        )
    return value


def without_calibration(spec: str) -> str:
    """``spec`` with ``calibrate=false`` (what ``--no-calibrate`` does); a spec of a head
    that is not calibrated is returned as it is.

    Examples
    --------
    >>> without_calibration("linear-svm:C=0.1"), without_calibration("logreg")
    ('linear-svm:C=0.1,calibrate=false', 'logreg')
    """
    if calibration_method(spec) is None:
        return spec
    name, params = parse_spec(spec)
    params = {**params, CALIBRATE_KEY: False}
    return f"{name}:" + ",".join(
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in params.items()
    )


def fitted_calibration(head: BaseEstimator) -> str | None:
    """The calibration method of a (fitted or unfitted) head, None when uncalibrated."""
    clf = head.steps[-1][1] if isinstance(head, Pipeline) else head
    return clf.method if isinstance(clf, CalibratedClassifierCV) else None


def classifier(head: BaseEstimator) -> BaseEstimator:
    """The classifier of a head: the ``clf`` step, inside its calibration when calibrated.

    For a fitted calibrated head this is the model fitted on all training rows (the
    calibration's ``ensemble=False`` fit); unfitted, its unfitted estimator.
    """
    clf = head.steps[-1][1] if isinstance(head, Pipeline) else head
    if not isinstance(clf, CalibratedClassifierCV):
        return clf
    fitted = getattr(clf, "calibrated_classifiers_", None)
    return fitted[0].estimator if fitted else clf.estimator


def make_head(
    spec: str | None = None, *, calibrate: bool = True, target: str = "class", **params: Any
) -> Pipeline:
    """Build an unfitted head from a spec such as ``"logreg:C=0.1"``.

    Parameters
    ----------
    spec : str, optional
        ``"NAME"`` or ``"NAME:PARAM=VALUE,..."``; defaults to ``"logreg"``. The key
        ``calibrate`` (:func:`calibration_method`) is not the estimator's.
    calibrate : bool, default=True
        Wrap the estimator in its calibration (:func:`calibration_method`); False gives the
        bare estimator whatever the spec says (tuning searches the estimator's parameters).
        Only class and binary targets are calibrated.
    target : str, default="class"
        The target kind it is for: the kind's estimator for it (``target_factories``).
    **params
        More parameters of the ``clf`` step; they override those in ``spec``.

    Returns
    -------
    head : Pipeline
        ``Pipeline([("scale", scaler), ("clf", estimator)])``; for a calibrated head the
        ``clf`` step is :class:`~bottleneck_transfer.heads.calibrated.HeldOutCalibration`
        ``(estimator, method=..., cv=5)``, a ``CalibratedClassifierCV`` with
        ``ensemble=False`` (:func:`classifier` reaches the estimator inside).

    Raises
    ------
    HeadError
        For an unknown head, an unknown parameter or an invalid value, naming the valid ones.

    Examples
    --------
    >>> make_head("logreg:C=0.1")[-1].C
    0.1
    """
    spec = spec or DEFAULT_HEAD
    kind = head_kind(spec)
    method = calibration_method(spec)
    merged = {**parse_spec(spec)[1], **params}
    merged.pop(CALIBRATE_KEY, None)
    estimator = target_estimator(kind, target)
    if isinstance(estimator, OneVsRestClassifier):  # the spec names the inner estimator's
        merged = {f"estimator__{key}": value for key, value in merged.items()}
    valid = sorted(estimator.get_params(deep=isinstance(estimator, OneVsRestClassifier)))
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise HeadError(
            f"head {kind.name!r} has no parameter {unknown[0]!r}; valid parameters: "
            f"{', '.join(valid)}. Received: head={spec!r}"
        )
    estimator.set_params(**merged)
    try:
        estimator._validate_params()
    except ValueError as exc:
        raise HeadError(f"head {kind.name!r}: {exc} Received: head={spec!r}") from exc
    if calibrate and method is not None and target in ("class", "binary"):
        estimator = HeldOutCalibration(
            estimator, method=method, cv=CALIBRATION_FOLDS, ensemble=False
        )
    return Pipeline([("scale", kind.scaler()), ("clf", estimator)])


def target_estimator(kind: HeadKind, target: str) -> BaseEstimator:
    """A new estimator of ``kind`` for ``target``.

    Raises
    ------
    HeadError
        If the kind does not fit that target, naming the kinds that do.
    """
    if target not in kind.targets:
        raise HeadError(
            f"head {kind.name!r} does not fit {target} targets (it fits "
            f"{', '.join(kind.targets)}); heads for {target} targets: "
            f"{', '.join(head_names(target))}"
        )
    return kind.target_factories.get(target, kind.factory)()


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of head specs: ``"logreg,dense:hidden=64,dropout=0.2"``.

    An item with ``=`` and no ``:`` continues the parameters of the previous head.

    Raises
    ------
    HeadError
        If the list is empty or starts with a parameter.
    """
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not specs:
                raise HeadError(f"head list starts with a parameter: {item!r}. Received: {text!r}")
            specs[-1] += "," + item
        else:
            specs.append(item)
    if not specs:
        raise HeadError(f"no heads given; valid heads: {', '.join(_KINDS)}")
    return specs


def set_random_state(head: Pipeline, seed: int) -> Pipeline:
    """Set ``random_state`` on every step that has one, nested ones too; returns ``head``."""
    for _, step in head.steps:
        step.set_params(
            **{
                key: seed
                for key in step.get_params(deep=True)
                if key.rsplit("__", 1)[-1] == "random_state"
            }
        )
    return head


def has_proba(head: BaseEstimator) -> bool:
    """Whether a (fitted or unfitted) head provides ``predict_proba``."""
    return hasattr(head, "predict_proba")


def single_threaded() -> threadpool_limits:
    """Context manager limiting BLAS and OpenMP to one thread while heads fit and predict.

    On cached features (thousands of rows, hundreds of columns) threads gain little, and when
    other processes share the cores their spin-waiting is ruinous: on this 2-core machine
    under load, lbfgs logistic regression on 12,000 x 128 took 2-14 s with 2 threads and
    0.3-0.6 s with one. Parallelism comes from joblib across tuning trials instead. Keras
    keeps its own thread pool.
    """
    return threadpool_limits(limits=1)


_STREAMING = _names(SGDClassifier)
register_head(
    HeadKind(
        name="logreg",
        factory=lambda: LogisticRegression(max_iter=LOGREG_MAX_ITER),
        scaler=StandardScaler,
        search_space=SearchSpace((Axis("C", (1e-4, 1e-2, 1.0, 1e2, 1e4), finest_step=1 / 8),)),
        export_form="keras",
        streaming_loss="log_loss",
        streaming="sgd",
        trusted_types=_STREAMING | {"sklearn._loss._loss.CyHalfBinomialLoss"},
        targets=("class", "binary", "multilabel"),
        target_factories={
            "multilabel": lambda: OneVsRestClassifier(LogisticRegression(max_iter=LOGREG_MAX_ITER))
        },
    )
)
register_head(
    HeadKind(
        name="linear-svm",
        factory=LinearSVM,
        scaler=StandardScaler,
        search_space=SearchSpace((Axis("C", (1e-4, 1e-2, 1.0, 1e2), finest_step=1 / 8),)),
        export_form="keras",
        streaming_loss="hinge",
        streaming="sgd",
        trusted_types=_STREAMING | {"sklearn.linear_model._sgd_fast.Hinge"},
        calibration="temperature",
    )
)
register_head(
    HeadKind(
        name="rbf-svm",
        factory=RBFSVC,
        scaler=StandardScaler,
        search_space=SearchSpace(
            (
                Axis("C", (0.1, 1.0, 10.0, 100.0), finest_step=1 / 4),
                Axis("gamma", (0.25, 1.0, 4.0), finest_step=1 / 4, per_feature=True),
            )
        ),
        export_form="folder",
        trusted_types=_names(SVC, Nystroem, RidgeClassifier, LabelBinarizer),
        calibration="temperature",
    )
)
register_head(
    HeadKind(
        name="dense",
        factory=DenseHead,
        scaler=StandardScaler,
        search_space=SearchSpace(
            (Axis("learning_rate", (1e-3, 1e-2)), Axis("weight_decay", (1e-4, 1e-2))),
            parallel=False,
        ),
        export_form="keras",
        streaming="dense",
        targets=TARGET_KINDS,
        target_factories={
            "multilabel": lambda: DenseOutputHead(output="sigmoid"),
            "regression": lambda: DenseOutputHead(output="linear"),
        },
    )
)
register_head(
    HeadKind(
        name="nystroem",
        factory=NystroemHead,
        scaler=StandardScaler,
        search_space=SearchSpace(
            (
                Axis("C", (0.01, 1.0, 100.0), finest_step=1 / 4),
                Axis("gamma", (0.25, 1.0, 4.0), finest_step=1 / 4, per_feature=True),
            )
        ),
        export_form="folder",
        streaming_loss="log_loss",
        streaming="sgd",
        trusted_types=_names(Nystroem, LogisticRegression, SGDClassifier)
        | {"sklearn._loss._loss.CyHalfMultinomialLoss", "sklearn._loss._loss.CyHalfBinomialLoss"},
        compared_by_default=False,
    )
)
register_head(
    HeadKind(
        name="knn",
        factory=lambda: KNeighborsClassifier(n_neighbors=5),
        scaler=Normalizer,
        search_space=SearchSpace((Axis("n_neighbors", (1, 3, 5, 10, 20)),)),
        export_form="folder",
        streaming="knn",
        trusted_types=_names(KDTree, BallTree)
        | {"sklearn.metrics._dist_metrics.EuclideanDistance64"},
        compared_by_default=False,
        targets=("class", "binary", "regression"),
        target_factories={"regression": lambda: KNeighborsRegressor(n_neighbors=5)},
    )
)
# Regression-only kinds (``head_names()``, the class-target kinds, leaves them out).
register_head(
    HeadKind(
        name="ridge",
        factory=Ridge,
        scaler=StandardScaler,
        search_space=SearchSpace((Axis("alpha", (1e-2, 1.0, 1e2, 1e4), finest_step=1 / 4),)),
        export_form="keras",
        targets=("regression",),
    )
)
register_head(
    HeadKind(
        name="linear-svr",
        factory=lambda: LinearSVR(loss="squared_epsilon_insensitive", dual=False),
        scaler=StandardScaler,
        search_space=SearchSpace((Axis("C", (1e-3, 1e-1, 10.0), finest_step=1 / 4),)),
        export_form="keras",
        targets=("regression",),
    )
)
register_head(
    HeadKind(
        name="kernel-ridge",
        factory=lambda: KernelRidge(kernel="rbf", gamma=None),
        scaler=StandardScaler,
        search_space=SearchSpace(
            (
                Axis("alpha", (0.01, 0.1, 1.0), finest_step=1 / 4),
                Axis("gamma", (0.25, 1.0, 4.0), finest_step=1 / 4, per_feature=True),
            )
        ),
        export_form="folder",
        targets=("regression",),
    )
)
