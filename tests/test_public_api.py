"""The top-level API: the same objects whatever was imported before, each with an example."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import bottleneck_transfer
import pytest

PUBLIC = [name for name in bottleneck_transfer.__all__ if name != "__version__"]
FUNCTIONS = [
    name
    for name in PUBLIC
    if not (
        inspect.isclass(getattr(bottleneck_transfer, name))
        and issubclass(getattr(bottleneck_transfer, name), Exception)
    )
]

CHECK = """
import importlib, inspect, pkgutil, sys
import bottleneck_transfer as bt
if sys.argv[1] == "submodules-first":
    for info in pkgutil.walk_packages(bt.__path__, "bottleneck_transfer."):
        if ".bench" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
for name in [n for n in bt.__all__ if n != "__version__"]:
    value = getattr(bt, name)
    assert not inspect.ismodule(value), (name, value)
    home = importlib.import_module(bt._EXPORTS[name])
    assert value is getattr(home, name), name
    assert getattr(value, "__name__", name) == name, (name, value)
print("ok")
"""


@pytest.mark.parametrize("order", ["submodules-first", "names-first"])
def test_public_names_are_the_same_objects_whatever_was_imported_before(order):
    done = subprocess.run(
        [sys.executable, "-c", CHECK, order], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_public_names_never_collide_with_submodules():
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(bottleneck_transfer.__path__)}
    assert not modules & set(PUBLIC)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_public_function_and_class_documents_an_example(name):
    doc = inspect.getdoc(getattr(bottleneck_transfer, name)) or ""
    assert "Examples\n--------" in doc and ">>> " in doc, f"{name} has no Examples section"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module("bottleneck_transfer").nope  # noqa: B018
