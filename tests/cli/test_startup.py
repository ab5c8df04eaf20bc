"""No TensorFlow where no model runs: every command that fits or reads a scikit-learn head,
reads a cache, or prints help works with ``keras`` and ``tensorflow`` unimportable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from heads_fixtures import BASE, blobs, write_cache

# Makes keras and tensorflow unimportable (unless "allow" is the first argument), runs one
# command line in this fresh interpreter, then prints its exit code, the backends it holds and
# the modules no command of these needs that it holds (array libraries, plotting, test tools,
# scikit-learn packages of no head: what skops's list of every estimator imports).
SCRIPT = """
import json, sys
BACKENDS = ("keras", "tensorflow")
UNNEEDED = ("torch", "dask", "jax", "matplotlib", "pytest", "sklearn.gaussian_process")

class Unimportable:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("keras", "tensorflow"):
            raise ImportError(f"{name} is made unimportable by this test")

if sys.argv.pop(1) != "allow":
    sys.meta_path.insert(0, Unimportable())
from bottleneck_transfer.cli import cli
try:
    code = cli.main(sys.argv[1:], prog_name="bottleneck", standalone_mode=False) or 0
except SystemExit as exc:
    code = exc.code or 0
held, unneeded = ([m for m in names if m in sys.modules] for names in (BACKENDS, UNNEEDED))
print(json.dumps({"code": code, "backends": held, "unneeded": unneeded}))
"""

LIBRARY = """
import sys
import bottleneck_transfer
assert not {"keras", "tensorflow"} & set(sys.modules), "import bottleneck_transfer"
from bottleneck_transfer import BottleneckFeatures, compare_heads, train_head, FeatureCache
print(sorted({"keras", "tensorflow"} & set(sys.modules)))
"""


def _run(*args: str, allow: bool = False) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "allow" if allow else "block", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store folder with a small train and test cache, and a head trained on the first."""
    from bottleneck_transfer.heads.training import save_head, train_head

    folder = tmp_path_factory.mktemp("store")
    X, y = blobs(n=160, dim=8, centers=3)
    base = {**BASE, "application": "MobileNetV2", "input_shape": [32, 32, 3]}  # exportable
    write_cache(folder / "train.h5", X[:120], y[:120], source="train", base=base)
    write_cache(folder / "test.h5", X[120:], y[120:], source="test", base=base)
    save_head(train_head(folder / "train.h5", "logreg"), folder / "head.skops")
    return folder


COMMANDS = {
    "train": (["train", "{s}/train.h5", "--head", "logreg", "-o", "{s}/new.skops"], "Trained"),
    "evaluate": (["evaluate", "{s}/head.skops", "{s}/test.h5"], "accuracy"),
    "compare": (["compare", "{s}/train.h5", "--cv", "2", "--heads", "logreg,knn"], "winner"),
    "compare --test": (
        ["compare", "{s}/train.h5", "--test", "{s}/test.h5", "--heads", "logreg,linear-svm"],
        "winner",
    ),
    "info": (["info", "{s}/train.h5"], "120"),
    "info --json": (["info", "{s}/train.h5", "--json"], '"rows": 120'),
    "verify": (["verify", "{s}/train.h5", "--no-source"], "ok    features finite"),
    "cache ls": (["cache", "ls", "--cache-dir", "{s}"], "# 0 entries, 0 bytes"),
    "cache prune": (
        ["cache", "prune", "--cache-dir", "{s}", "--partial", "--dry-run"],
        "",
    ),
    "cache export": (
        ["cache", "export", "{s}/train.h5", "-o", "{s}/train.parquet"],
        "train.parquet",
    ),
    "cache dupes": (["cache", "dupes", "{s}/train.h5"], ""),
    "export --dry-run": (
        ["export", "{s}/train.h5", "-o", "{s}/model.keras", "--dry-run"],
        "Would write {s}/model.keras (keras): head logreg (~108 bytes), base known once built; "
        "input 32x32x3 images, 3 classes (class0, class1, class2) named in "
        "{s}/model.labels.txt. Nothing written.",
    ),
    "export --dry-run --head-file": (
        ["export", "{s}/train.h5", "--head-file", "{s}/head.skops", "-o", "{s}/rbf", "--dry-run"],
        "Would write {s}/rbf (folder): head logreg",
    ),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_runs_without_tensorflow_or_keras(store, name):
    args, expected = COMMANDS[name]
    result, out = _run(*(a.format(s=store) for a in args))
    assert result == {"code": 0, "backends": [], "unneeded": []}, out
    assert expected.format(s=store) in out
    assert not {"model.keras", "model.labels.txt", "rbf"} & {p.name for p in store.iterdir()}


HELP = [
    [],
    *[[name] for name in ("extract", "info", "verify", "compare", "train", "evaluate")],
    *[[name] for name in ("export", "predict", "finetune", "run", "bench")],
    *[["cache", name] for name in ("ls", "prune", "export", "dupes")],
]


@pytest.mark.parametrize("args", HELP, ids=lambda args: " ".join(args) or "bottleneck")
def test_every_help_runs_without_tensorflow_or_keras(args):
    result, out = _run(*args, "--help")
    assert result == {"code": 0, "backends": [], "unneeded": []}
    assert "Usage: bottleneck" in out and "Example" in out


def test_the_library_and_its_lazy_exports_import_no_backend():
    done = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_the_check_sees_a_backend_where_a_model_runs(store):
    # The dense head is a Keras model: unimportable, train fails; allowed, Keras is loaded,
    # its C++ start-up lines (absl, CUDA probes) muted.
    args = ["train", str(store / "train.h5"), "--head", "dense:epochs=1", "--force"]
    runs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT, mode, *args, "-o", str(store / f"{mode}.skops")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        for mode in ("block", "allow")
    ]
    blocked, allowed = runs
    assert blocked.returncode != 0 and "made unimportable" in blocked.stderr
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    *out, last = allowed.stdout.strip().splitlines()
    assert json.loads(last)["backends"] == ["keras", "tensorflow"]
    assert out[0].startswith("Trained dense:epochs=1 on 120 rows")
    assert allowed.stderr.strip() == ""
