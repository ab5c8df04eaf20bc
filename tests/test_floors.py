"""CI's floors (.ci/floors.txt) pin every declared dependency to the minimum pyproject.toml
declares, so the run at the floors tests the minimums users are promised."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared() -> dict[str, str]:
    """``{name: minimum}`` of the dependencies and of every extra, from ``name>=version``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] + [
        spec for extra in project["optional-dependencies"].values() for spec in extra
    ]
    floors = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", spec.replace(" ", ""))
        assert match, f"{spec!r}: declare a floor as name>=version"
        floors[match[1].lower()] = match[2]
    return floors


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / ".ci" / "floors.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _release(version: str) -> tuple[int, ...]:
    """``"2.20"`` and ``"2.20.0"`` are the same release."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_every_declared_floor_is_pinned_at_its_minimum():
    declared, pinned = _declared(), _pinned()
    missing = sorted(set(declared) - set(pinned))
    assert not missing, f"pin these in .ci/floors.txt at their declared minimum: {missing}"
    wrong = {
        name: (f">={declared[name]}", f"=={pinned[name]}")
        for name in declared
        if _release(declared[name]) != _release(pinned[name])
    }
    assert not wrong, f"pyproject.toml and .ci/floors.txt disagree: {wrong}"


def test_python_floor_is_the_one_ruff_targets():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    minimum = config["project"]["requires-python"].removeprefix(">=")
    assert config["tool"]["ruff"]["target-version"] == "py" + minimum.replace(".", "")
