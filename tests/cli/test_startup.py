"""No TensorFlow where no model runs: every command that fits or reads a scikit-learn head,
reads a cache, or prints help works with ``keras`` and ``tensorflow`` unimportable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from heads_fixtures import BASE, blobs, write_cache

# Makes keras and tensorflow unimportable (unless "allow" is the first argument), then runs
# each command line (a JSON list of lists) in this fresh interpreter, one after the other, and
# prints a JSON list: each one's exit code, stdout, error, the backends held after it and the
# modules no command of these needs that are held after it (array libraries, plotting, test
# tools, scikit-learn packages of no head: what skops's list of every estimator imports). One
# interpreter for many commands: a command that imports one fails (and names it) all the
# same, and the suite starts one Python instead of one per command.
SCRIPT = """
import contextlib, io, json, sys, traceback
BACKENDS = ("keras", "tensorflow")
UNNEEDED = ("torch", "dask", "jax", "matplotlib", "pytest", "sklearn.gaussian_process")

class Unimportable:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("keras", "tensorflow"):
            raise ImportError(f"{name} is made unimportable by this test")

if sys.argv[1] != "allow":
    sys.meta_path.insert(0, Unimportable())
from bottleneck_transfer.cli import cli
results = []
for args in json.loads(sys.argv[2]):
    out, error = io.StringIO(), ""
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(args, prog_name="bottleneck", standalone_mode=False) or 0
        except SystemExit as exc:
            code = exc.code or 0
        except BaseException:
            code, error = 1, traceback.format_exc()
    held, unneeded = ([m for m in names if m in sys.modules] for names in (BACKENDS, UNNEEDED))
    results.append({"code": code, "backends": held, "unneeded": unneeded})
    results[-1].update(out=out.getvalue(), error=error)
print(json.dumps(results))
"""

LIBRARY = """
import sys
import bottleneck_transfer
assert not {"keras", "tensorflow"} & set(sys.modules), "import bottleneck_transfer"
from bottleneck_transfer import BottleneckFeatures, compare_heads, train_head, FeatureCache
print(sorted({"keras", "tensorflow"} & set(sys.modules)))
"""


def _launch(commands: list[list[str]], allow: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, "allow" if allow else "block", json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run(commands: list[list[str]], allow: bool = False) -> list[dict]:
    """Each command line's ``{"code", "backends", "out", "error"}``, run by ``SCRIPT``."""
    done = _launch(commands, allow)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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


@pytest.fixture(scope="module")
def command_runs(store) -> dict[str, dict]:
    """Every command of ``COMMANDS`` run in one blocked interpreter, in order, by name."""
    lines = [[a.format(s=store) for a in args] for args, _ in COMMANDS.values()]
    return dict(zip(COMMANDS, _run(lines), strict=True))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_runs_without_tensorflow_or_keras(command_runs, store, name):
    run = command_runs[name]
    assert (run["code"], run["backends"], run["unneeded"]) == (0, [], []), run["out"] + run["error"]
    assert COMMANDS[name][1].format(s=store) in run["out"]
    assert not {"model.keras", "model.labels.txt", "rbf"} & {p.name for p in store.iterdir()}


HELP = [
    [],
    *[[name] for name in ("extract", "info", "verify", "compare", "train", "evaluate")],
    *[[name] for name in ("export", "predict", "finetune", "run", "bench")],
    *[["cache", name] for name in ("ls", "prune", "export", "import", "dupes")],
]


@pytest.fixture(scope="module")
def help_runs() -> list[dict]:
    """Every ``--help`` of ``HELP`` run in one blocked interpreter, in order."""
    return _run([[*args, "--help"] for args in HELP])


@pytest.mark.parametrize(
    "k", range(len(HELP)), ids=[" ".join(args) or "bottleneck" for args in HELP]
)
def test_every_help_runs_without_tensorflow_or_keras(help_runs, k):
    run = help_runs[k]
    assert (run["code"], run["backends"], run["unneeded"]) == (0, [], []), run["out"] + run["error"]
    assert "Usage: bottleneck" in run["out"] and "Example" in run["out"]


def test_the_library_and_its_lazy_exports_import_no_backend():
    done = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_the_check_sees_a_backend_where_a_model_runs(store):
    # The dense head is a Keras model: unimportable, train fails; allowed, Keras is loaded,
    # its C++ start-up lines (absl, CUDA probes) muted.
    args = ["train", str(store / "train.h5"), "--head", "dense:epochs=1", "--force"]
    blocked, allowed = (
        _launch([[*args, "-o", str(store / f"{mode}.skops")]], allow=mode == "allow")
        for mode in ("block", "allow")
    )
    (result,) = json.loads(blocked.stdout.strip().splitlines()[-1])
    assert result["code"] != 0 and "made unimportable" in result["error"] + blocked.stderr
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    (result,) = json.loads(allowed.stdout.strip().splitlines()[-1])
    assert (result["code"], result["backends"]) == (0, ["keras", "tensorflow"]), result["error"]
    assert result["out"].startswith("Trained dense:epochs=1 on 120 rows")
    assert allowed.stderr.strip() == ""
