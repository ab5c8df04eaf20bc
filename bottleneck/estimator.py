"""scikit-learn's estimator protocol without importing scikit-learn.

Importing :mod:`sklearn.base` takes 2-4 s on a 2-core machine (scikit-learn imports SciPy's
``stats`` and pandas on import), longer than everything else ``from bottleneck_transfer
import BottleneckFeatures`` needs. scikit-learn does not require its base classes: an
estimator is any object with ``get_params``, ``set_params`` and ``__sklearn_tags__``
(scikit-learn's developer guide, "Rolling your own estimator"). :class:`LightEstimator`
implements those, ``fit_transform``, ``get_feature_names_out`` and ``set_output`` as
:class:`~sklearn.base.BaseEstimator`, :class:`~sklearn.base.TransformerMixin` and
:class:`~sklearn.base.ClassNamePrefixFeaturesOutMixin` do, and imports scikit-learn only when
scikit-learn itself asks (``clone``, ``Pipeline``, ``GridSearchCV`` already imported it).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import numpy as np

#: The containers ``set_output(transform=...)`` takes, as scikit-learn names them.
OUTPUT_CONTAINERS = ("default", "pandas", "polars")


class LightEstimator:
    """Parameters, tags, output containers and feature names of a scikit-learn transformer.

    A subclass names its parameters as keyword arguments of ``__init__`` and stores each
    unchanged under the same name (scikit-learn's rule), sets ``n_features_out_`` and a
    ``fitted_attribute`` in ``fit``, and defines ``transform``.
    """

    #: The attribute whose presence means "fitted".
    fitted_attribute = "n_features_out_"

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their values (``deep``: nested ones too)."""
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{name}__{k}": v for k, v in value.get_params().items()})
        return params

    def set_params(self, **params: Any) -> LightEstimator:
        """Set parameters by name (``name__sub`` for a nested estimator's). Returns self."""
        valid = self.get_params(deep=False)
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. Valid parameters are: "
                    f"{sorted(valid)!r}."
                )
            if sub:
                valid[name].set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params(deep=False).items()
            if not _same(value, defaults.get(name, inspect.Parameter.empty))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """A transformer's tags; takes strings, not a 2-D array (scikit-learn is imported)."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(),
            input_tags=InputTags(two_d_array=False, string=True),
            requires_fit=True,
        )

    def check_fitted(self) -> None:
        """Raise scikit-learn's ``NotFittedError`` unless ``fit`` has run."""
        if not hasattr(self, self.fitted_attribute):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """``fit(X, y)``, then ``transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``classname0`` … ``classname{D-1}``, as scikit-learn names a projection's outputs."""
        self.check_fitted()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{k}" for k in range(self.n_features_out_)], dtype=object)

    def set_output(self, *, transform: str | None = None) -> LightEstimator:
        """Return ``transform`` output as ``"default"`` arrays, pandas or polars frames."""
        if transform is None:
            return self
        if transform not in OUTPUT_CONTAINERS:
            raise ValueError(
                f"set_output(transform=...) takes one of {OUTPUT_CONTAINERS}. "
                f"Received: transform={transform!r}"
            )
        self._sklearn_output_config = {"transform": transform}
        return self

    def wrap_output(self, features: np.ndarray, X: Any) -> Any:
        """``features`` in the container ``set_output`` (or ``sklearn.set_config``) chose."""
        container = getattr(self, "_sklearn_output_config", {}).get("transform")
        if container is None and "sklearn" in sys.modules:
            container = sys.modules["sklearn"].get_config()["transform_output"]
        if container == "pandas":
            import pandas as pd

            index = X.index if isinstance(X, (pd.Series, pd.DataFrame)) else None
            return pd.DataFrame(features, columns=self.get_feature_names_out(), index=index)
        if container == "polars":
            import polars as pl

            return pl.DataFrame(features, schema=list(self.get_feature_names_out()))
        return features


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except ValueError:  # arrays
        return False
