"""The compare that must never hang: ``bottleneck compare CACHE --cv 5`` on 6,000 x 1,280.

The design's target: the default five-fold compare of the four default heads on a
6,000 x 1,280 cache in at most 60 s on a 2-core machine, whatever the features. Each kind of
synthetic features is written as a cache and compared by a fresh ``bottleneck compare``
process (imports included, as a user runs it); the wall and CPU seconds are recorded with
the rows that stopped at their iteration bound, and the wall time as a ratio to the sum of
the single fits it ran (each head's mean fit seconds times the folds, every fit
single-threaded): below 1 when folds and heads ran in parallel, and what is left above the
fits' share is imports, worker start-up, the choice of the winner (its own fits on the
folds' training rows) and scoring. ``load`` is the 1-minute load average before and after
(wall seconds mean little on a loaded machine; ``cpu_seconds`` less so). One kind, printed::

    python -c "from bottleneck_transfer.bench.compare6k import main; main()" structured
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Rows, features and classes of the synthetic caches (MobileNetV2's 1,280 features).
SHAPE = (6000, 1280, 10)
KINDS = ("structured", "collinear", "noise")
#: The design's target for the default five-fold compare, in seconds.
TARGET_SECONDS = 60.0
_COMMAND = "from bottleneck_transfer.cli.app import main; main()"


def synthetic_features(
    kind: str, rows: int = SHAPE[0], dim: int = SHAPE[1], classes: int = SHAPE[2]
) -> tuple[np.ndarray, np.ndarray]:
    """float32 features ``(rows, dim)`` with class structure, and int32 labels.

    ``structured``: ReLU of a 64-d latent with class shifts, plus noise in every column
    (pooled CNN output, full rank). ``collinear``: ReLU features of a 16-d latent in a quarter
    of the columns, each three times over, an eighth linear combinations of them, a
    sixteenth each zero and constant (rank-deficient; heavily overlapping classes, most rows
    support vectors). ``noise``: standard normal features that say nothing of the labels
    (the slowest case: every row is a support vector, linear solvers run to their bound).
    """
    rng = np.random.default_rng(0)
    y = np.arange(rows) % classes
    if kind == "structured":
        latent = rng.normal(size=(rows, 64)) + 2.0 * np.eye(classes, 64)[y]
        noise = 0.5 * rng.normal(size=(rows, dim))
        X = np.maximum(latent @ rng.normal(size=(64, dim)) / 8 + noise, 0)
    elif kind == "collinear":
        latent = rng.normal(size=(rows, 16)) + np.eye(classes, 16)[y]
        base = np.maximum(latent @ rng.normal(size=(16, dim // 4)), 0)
        combos = base[:, : dim // 32] @ rng.normal(size=(dim // 32, dim // 8))
        constant = np.full((rows, dim - 3 * (dim // 4) - dim // 8 - dim // 16), 3.0)
        X = np.hstack([base, base, base, combos, np.zeros((rows, dim // 16)), constant])
        X = X[:, rng.permutation(dim)]
    elif kind == "noise":
        X = rng.normal(size=(rows, dim))
    else:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    return X.astype(np.float32), y.astype(np.int32)


def write_synthetic_cache(path: Path, kind: str) -> Path:
    """A complete cache of :func:`synthetic_features`, written the way extraction writes."""
    from bottleneck_transfer.features.cache import CacheWriter

    X, y = synthetic_features(kind)
    identity = {"bench": "compare6k", "kind": kind, "shape": list(X.shape)}
    writer = CacheWriter.create(
        f"{path}.partial",
        dim=X.shape[1],
        fingerprint=f"sha256:bench-compare6k-{kind}",
        identity=identity,
        provenance=identity,
        class_names=[f"class{k}" for k in range(int(y.max()) + 1)],
    )
    for begin in range(0, len(y), 1000):
        rows = slice(begin, begin + 1000)
        ids = [f"{kind}:{i}" for i in range(begin, min(begin + 1000, len(y)))]
        writer.write_batch(X[rows], y[rows], ids, [], begin + len(ids))
        writer.commit()
    return writer.finalize(path, {})


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sum_of_fits(result: dict[str, Any]) -> float:
    """Seconds of every single fit a comparison ran (``compare --json``): each row's mean
    fit seconds times its folds (1 on a holdout)."""
    folds = result["n_folds"] or 1
    return sum(row["fit_seconds"] for row in result["rows"]) * folds


def bench_compare_6k(
    kinds: tuple[str, ...] = KINDS, *, cv: int = 5, directory: str | Path | None = None
) -> dict[str, Any]:
    """Seconds of ``bottleneck compare CACHE --cv 5`` (default heads) per kind of features."""
    from bottleneck_transfer.heads.training import NOT_CONVERGED

    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for kind in kinds:
            path = write_synthetic_cache(Path(tmp) / f"{kind}.h5", kind)
            command = [sys.executable, "-c", _COMMAND, "compare", str(path), "--cv", str(cv)]
            load = os.getloadavg()[0]
            cpu, started = _children_cpu(), time.perf_counter()
            done = subprocess.run(
                [*command, "--quiet", "--json"], capture_output=True, text=True, check=False
            )
            seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                runs[kind] = {"skipped": f"compare failed: {' | '.join(tail)}"}
                continue
            result = json.loads(done.stdout)
            fits = sum_of_fits(result)
            runs[kind] = {
                "seconds": round(seconds, 2),
                "compare_seconds": round(result["seconds"], 2),
                "cpu_seconds": round(cpu, 2),
                "sum_of_fits": round(fits, 2),
                "ratio_to_fits": round(seconds / fits, 3),
                "load": [round(load, 2), round(os.getloadavg()[0], 2)],
                "winner": result["winner"],
                "fit_seconds": {r["name"]: round(r["fit_seconds"], 3) for r in result["rows"]},
                "accuracy": {r["name"]: round(r["metrics"]["accuracy"], 4) for r in result["rows"]},
                "not_converged": sorted(
                    r["name"]
                    for r in result["rows"]
                    if any(note.startswith(NOT_CONVERGED) for note in r["notes"])
                ),
            }
    return {"shape": list(SHAPE), "cv": cv, "target_seconds": TARGET_SECONDS, "runs": runs}


def main() -> None:
    """Print :func:`bench_compare_6k` of the kinds named on the command line (default all)
    as JSON."""
    print(json.dumps(bench_compare_6k(tuple(sys.argv[1:]) or KINDS), indent=1))
