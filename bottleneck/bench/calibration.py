"""How calibrated the margin heads' probabilities are, and what their calibration costs.

On the Fashion-MNIST demo's features (``pipelines/fashion_mnist.toml``: the shipped base,
classes 5-9, its 12,000 training images and 5,000 test images) ``linear-svm`` is fitted on
``n`` training rows (a seeded stratified draw; ``draws`` of them below all 12,000 rows) and its
test probabilities scored by the expected calibration error and the Brier score
(:mod:`~bottleneck_transfer.heads.calibration`), for:

``scores``
    ``softmax`` of the decision values (``linear-svm:calibrate=false``; not probabilities).
``all-folds``
    Temperature scaling fitted on the out-of-fold decision values of every training row,
    5 folds (scikit-learn's ``CalibratedClassifierCV(ensemble=False)``: 1 + 5 fits).
``held-out``
    The registry's calibration: the first folds holding
    :data:`~bottleneck_transfer.heads.registry.CALIBRATION_HELD_ROWS` rows (1 + k fits).
``logreg``
    The logistic-regression probe, for reference.

``python -c "from bottleneck_transfer.bench.calibration import main; main()"`` prints the
table (JSON with ``--json``); ``--features DIR`` keeps the extracted caches for a rerun.
Nothing here asserts a time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO_SPEC = "pipelines/fashion_mnist.toml"
SIZES = (100, 500, 2000, 12000)
DRAWS = 5
SCHEMES = ("scores", "all-folds", "held-out", "logreg")


def demo_features(directory: Path) -> tuple[Any, Any]:
    """The demo's training and test features as :class:`~heads.training.LabeledData`,
    extracted into ``directory`` once."""
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.heads.training import LabeledData
    from bottleneck_transfer.pipeline.spec import load_spec

    loaded = load_spec(DEMO_SPEC)
    data = loaded["data"]
    paths = {part: directory / f"fashion-{part}.h5" for part in ("train", "test")}
    if not all(path.exists() for path in paths.values()):
        named = {k: v for k, v in loaded["base"].items() if k != "name" and v is not None}
        base = load_base(loaded["base"]["name"], seed=loaded["extract"]["seed"], **named)
        for part, limit in (("train", data["limit"]), ("test", None)):
            extract(data[part], base, paths[part], classes=data["classes"], limit=limit)
    return tuple(LabeledData.from_cache(paths[part]) for part in ("train", "test"))


def draw(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows, the same number of each class (all rows when ``n`` is their number)."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    return np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(y == k), n // len(classes), replace=False) for k in classes]
        )
    )


def fit_scheme(scheme: str, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[Any, int]:
    """A head of ``scheme`` fitted on ``X, y``, and the number of its estimator's fits."""
    from bottleneck_transfer.heads.calibration import calibration_folds
    from bottleneck_transfer.heads.registry import (
        CALIBRATION_FOLDS,
        CALIBRATION_HELD_ROWS,
        make_head,
        set_random_state,
        single_threaded,
    )

    spec = {"scores": "linear-svm:calibrate=false", "logreg": "logreg"}.get(scheme, "linear-svm")
    head = set_random_state(make_head(spec), seed)
    if scheme in ("all-folds", "held-out"):
        held = None if scheme == "all-folds" else CALIBRATION_HELD_ROWS
        folds = calibration_folds(y, np.arange(len(y)), CALIBRATION_FOLDS, seed, held)
        head.set_params(clf__cv=folds)
    with single_threaded():
        head.fit(X, y)
    return head, getattr(head[-1], "n_fits_", 1)


def bench_calibration(
    directory: Path, sizes: tuple[int, ...] = SIZES, draws: int = DRAWS
) -> dict[str, Any]:
    """ECE, Brier score, fits and seconds per training size and scheme (means over draws)."""
    from bottleneck_transfer.deploy.keras_head import head_scores
    from bottleneck_transfer.heads.calibration import brier_score, expected_calibration_error

    train, test = demo_features(directory)
    classes = np.unique(train.y)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        seeds = range(draws if n < len(train.y) else 1)
        for scheme in SCHEMES:
            found: dict[str, list[float]] = {"ece": [], "brier": [], "fits": [], "seconds": []}
            for seed in seeds:
                chosen = draw(train.y, n, seed)
                started = time.process_time()
                head, fits = fit_scheme(scheme, train.X[chosen], train.y[chosen], seed)
                found["seconds"].append(time.process_time() - started)
                proba = head_scores(head, test.X)
                found["ece"].append(expected_calibration_error(test.y, proba, classes))
                found["brier"].append(brier_score(test.y, proba, classes))
                found["fits"].append(fits)
            rows.append(
                {"rows": n, "scheme": scheme, "draws": len(seeds)}
                | {key: round(float(np.mean(v)), 4) for key, v in found.items()}
            )
    return {"spec": DEMO_SPEC, "test_rows": len(test.y), "rows": rows}


def main() -> None:
    """Print :func:`bench_calibration` as a table (``--json``: JSON)."""
    import tempfile

    args = sys.argv[1:]
    keep = args[args.index("--features") + 1] if "--features" in args else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        report = bench_calibration(folder)
    if "--json" in args:
        print(json.dumps(report, indent=1))
        return
    print("rows    scheme      ECE     Brier   fits  CPU s")
    for row in report["rows"]:
        print(
            f"{row['rows']:>6}  {row['scheme']:<10} {row['ece']:.4f}  {row['brier']:.4f}  "
            f"{row['fits']:>4.0f}  {row['seconds']:.2f}"
        )
