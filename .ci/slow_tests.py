"""Write tests/slow_tests.txt: the tests that took at least THRESHOLD seconds in a JUnit run.

    python -m pytest -m "" -p no:randomly --junitxml=/tmp/all.xml
    python .ci/slow_tests.py /tmp/all.xml [THRESHOLD]

Listed tests carry the ``slow`` mark (tests/conftest.py): the README's command leaves them
out and CI runs them in its second step (``pytest -m slow``).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "slow_tests.txt"


def node_id(classname: str, name: str) -> str:
    """pytest's node id of a JUnit test case (``a.b.test_c.TestD`` -> ``a/b/test_c.py::TestD``)."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = Path(*parts[:cut]).with_suffix(".py")
        if (ROOT / path).is_file():
            return "::".join([path.as_posix(), *parts[cut:], name])
    raise ValueError(f"no test file for {classname!r}")


def main(junit: str, threshold: float = 3.0) -> None:
    cases = ET.parse(junit).iter("testcase")
    slow = sorted(
        node_id(c.get("classname"), c.get("name"))
        for c in cases
        if float(c.get("time", 0)) >= threshold
    )
    header = f"# Tests over {threshold:g} s on a quiet 2-core machine (.ci/slow_tests.py)\n"
    OUT.write_text(header + "".join(f"{n}\n" for n in slow))
    print(f"{len(slow)} tests -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1], *(float(a) for a in sys.argv[2:3]))
