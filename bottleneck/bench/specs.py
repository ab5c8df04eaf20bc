"""What a benchmark of a shipped pipeline spec measures: the spec's settings, recorded.

A report that measures a spec (``pipelines/*.toml``) holds ``spec`` (its path in the
checkout) and ``settings`` (:func:`spec_settings`); ``bench.readme`` compares them with the
spec as it is now, so a report measured before the spec changed is caught.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The keys of a spec that decide what a benchmark of it measures.
SETTINGS = {
    "data": ("train", "test", "classes", "limit", "test_limit", "val_split"),
    "base": ("name", "weights", "image_size", "pooling", "layer", "preprocess"),
    "heads": ("use", "tune", "metric"),
}


def settings_of(loaded: dict[str, Any], folder: str | Path) -> dict[str, dict[str, Any]]:
    """:data:`SETTINGS` of a loaded spec (``load_spec``, or a run's ``spec.resolved.json``).

    Paths (data files, a base file) are written relative to ``folder`` (the spec's), as in
    the spec, so the result does not depend on where the checkout is. An unset pooling reads
    ``avg`` (what an image base uses; a text base's family default is as stable a value).
    """
    settings = {
        section: {key: _relative(loaded[section][key], Path(folder)) for key in keys}
        for section, keys in SETTINGS.items()
    }
    if settings["base"]["pooling"] is None:  # unset: an image base's avg (reports say so)
        settings["base"]["pooling"] = "avg"
    return settings


def _relative(value: Any, folder: Path) -> Any:
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(os.path.relpath(value, folder.resolve())).as_posix()
    return value


def spec_settings(spec: str | Path) -> dict[str, dict[str, Any]]:
    """:data:`SETTINGS` of the spec file ``spec`` as it is now."""
    from bottleneck_transfer.pipeline.spec import load_spec

    return settings_of(load_spec(spec), Path(spec).parent)
