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
    matrix and a bounded Newton method. A margin classifier: ``decision_function`` but
    deliberately **no** ``predict_proba``, so its log-loss is reported as "not defined".
``rbf-svm``
    StandardScaler + :class:`~bottleneck_transfer.heads.estimators.RBFSVC`: an exact kernel SVM
    up to 10,000 training rows, a Nyström map + least-squares classifier above. No
    ``predict_proba``; exports as a folder.
``dense``
    StandardScaler + :class:`~bottleneck_transfer.heads.estimators.DenseHead`, a Keras softmax
    layer (optional hidden layer and dropout) with early stopping. Has ``predict_proba``.
``knn``
    L2 normalisation + :class:`~sklearn.neighbors.KNeighborsClassifier`: cosine neighbours, the
    usual few-shot baseline; exports as a folder; not compared by default.

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bottleneck_transfer.errors import HeadError, did_you_mean
from bottleneck_transfer.heads.estimators import RBFSVC, DenseHead
from bottleneck_transfer.heads.linear_svm import LinearSVM
from sklearn.base import BaseEstimator
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, Normalizer, StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

DEFAULT_HEAD = "logreg"
#: L-BFGS iterations of ``logreg``: 4,800 x 1,280 MobileNetV2 features took 305 (3.4 s, one
#: thread); a fit that needs more is marked as not converged instead of running on.
LOGREG_MAX_ITER = 500
EXPORT_FORMS = ("keras", "folder")
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
        The :class:`~sklearn.linear_model.SGDClassifier` loss of its out-of-core form
        (``train --out-of-core``), or None when it has none.
    trusted_types : frozenset of str
        Exact fully qualified names of the classes a fitted head of this kind holds besides
        the factory's own class, the scaler and :data:`SKOPS_CONTAINER_TYPES` (its
        sub-estimators, trees, loss objects). Its saved files may hold these and nothing
        else; see :func:`trusted_type_names`.
    compared_by_default : bool
        Whether ``compare`` and ``run`` use it when no heads are named.

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
    trusted_types: frozenset[str] = frozenset()
    compared_by_default: bool = True


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
    _KINDS[kind.name] = kind
    return kind


def unregister_head(name: str) -> None:
    """Remove a head kind (for kinds registered for a while, e.g. in a test)."""
    _KINDS.pop(name, None)


def head_names() -> tuple[str, ...]:
    """Names of the registered head kinds, in registration order."""
    return tuple(_KINDS)


def default_heads() -> tuple[str, ...]:
    """The heads ``compare`` and ``run`` use when none are named."""
    return tuple(name for name, kind in _KINDS.items() if kind.compared_by_default)


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
    return SKOPS_CONTAINER_TYPES | own | kind.trusted_types


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
    """The parameters a head accepts in its spec."""
    return sorted(head_kind(name).factory().get_params(deep=False))


def make_head(spec: str | None = None, **params: Any) -> Pipeline:
    """Build an unfitted head from a spec such as ``"logreg:C=0.1"``.

    Parameters
    ----------
    spec : str, optional
        ``"NAME"`` or ``"NAME:PARAM=VALUE,..."``; defaults to ``"logreg"``.
    **params
        More parameters of the ``clf`` step; they override those in ``spec``.

    Returns
    -------
    head : Pipeline
        ``Pipeline([("scale", scaler), ("clf", estimator)])``.

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
    merged = {**parse_spec(spec)[1], **params}
    estimator = kind.factory()
    valid = sorted(estimator.get_params(deep=False))
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
    return Pipeline([("scale", kind.scaler()), ("clf", estimator)])


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
    """Set ``random_state`` on every step that has one; returns ``head``."""
    for _, step in head.steps:
        if "random_state" in step.get_params(deep=False):
            step.set_params(random_state=seed)
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
        trusted_types=_STREAMING | {"sklearn._loss._loss.CyHalfBinomialLoss"},
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
        trusted_types=_STREAMING | {"sklearn.linear_model._sgd_fast.Hinge"},
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
    )
)
register_head(
    HeadKind(
        name="knn",
        factory=lambda: KNeighborsClassifier(n_neighbors=5),
        scaler=Normalizer,
        search_space=SearchSpace((Axis("n_neighbors", (1, 3, 5, 10, 20)),)),
        export_form="folder",
        trusted_types=_names(KDTree, BallTree)
        | {"sklearn.metrics._dist_metrics.EuclideanDistance64"},
        compared_by_default=False,
    )
)
