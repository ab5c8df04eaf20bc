"""The import name collides with nothing: NumPy's `bottleneck` and pandas work beside us."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import warnings
warnings.simplefilter("error")
import pandas, bottleneck, bottleneck_transfer
assert bottleneck.__file__ != bottleneck_transfer.__file__, bottleneck.__file__
assert hasattr(bottleneck, "nanmean"), bottleneck.__file__
assert float(bottleneck.nanmean([1.0, float("nan"), 3.0])) == 2.0
assert pandas.Series([1.0, None, 3.0]).mean() == 2.0
assert callable(bottleneck_transfer.extract)
print("ok", bottleneck.__file__)
"""


@pytest.mark.parametrize("cwd", ["repository root", "elsewhere"])
def test_pandas_and_numpy_bottleneck_work_beside_this_package(cwd, tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("bottleneck")  # NumPy's, from the test extras
    where = REPO if cwd == "repository root" else tmp_path
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=where, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
    assert str(REPO / "bottleneck") not in done.stdout


def test_the_source_folder_is_not_importable_as_bottleneck_without_the_real_one(tmp_path):
    """With no NumPy `bottleneck` installed, `import bottleneck` from the repo root says so."""
    code = (
        "import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "try:\n    import bottleneck\n"
        "except ModuleNotFoundError as e:\n    print('missing', e.name)\n"
        "else:\n    print('found', bottleneck.__file__)\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "missing bottleneck", done.stdout + done.stderr[-1500:]


def test_distribution_and_command_names():
    import importlib.metadata

    dist = importlib.metadata.distribution("bottleneck-transfer")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"bottleneck": "bottleneck_transfer.cli:main"}
