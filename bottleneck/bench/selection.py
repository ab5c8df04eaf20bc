"""How often compare's statements fire when the truth is "nothing to find" (issue 23).

Each draw gives every head noise labels (uniform over ``n_classes``, independent of the
features), and the baseline other random features of the same rows: every head on every
feature set is at chance (``1 / n_classes``). A calibrated comparison declares a transfer
gain (or negative transfer) in at most about ``ALPHA`` of the draws, and the score it
reports for its chosen head averages chance. Run::

    python -m bottleneck_transfer.bench.selection --draws 200 --heads 4

It prints the rates as JSON: ``gain_rate``, ``negative_rate``, ``mean_reported_accuracy``
(the winner's reported accuracy), ``chance`` and the settings.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BottleneckWarning
from bottleneck_transfer.heads.compare import compare_heads
from bottleneck_transfer.heads.training import LabeledData

#: Fast heads, so that hundreds of draws take seconds; the first k are used.
NULL_HEADS = ("logreg", "knn", "logreg:C=0.01", "knn:n_neighbors=15", "linear-svm", "rbf-svm")


def _data(X: np.ndarray, y: np.ndarray, n_classes: int) -> LabeledData:
    return LabeledData.from_arrays(X, y, class_names=[str(i) for i in range(n_classes)])


def null_draws(
    n_draws: int = 200,
    n_heads: int = 4,
    *,
    n_train: int = 100,
    n_test: int = 100,
    dim: int = 4,
    n_classes: int = 5,
    seed: int = 0,
    metric: str | None = None,
) -> dict[str, Any]:
    """Run ``n_draws`` noise-label comparisons and count what they declare.

    Parameters
    ----------
    n_draws : int
        Independent draws (features, labels and baseline features redrawn each time).
    n_heads : int
        The first ``n_heads`` of :data:`NULL_HEADS` are compared.
    n_train, n_test, dim, n_classes : int
        Rows, feature size and classes of each draw (balanced labels).
    seed : int
        Seeds every draw.
    metric : str or None
        Passed to compare when given (balanced noise labels: accuracy decides by default).

    Returns
    -------
    dict
        Rates of each transfer verdict, the mean reported accuracy of the chosen head, and
        the settings.
    """
    rng = np.random.default_rng(seed)
    verdicts: list[str] = []
    reported: list[float] = []
    heads: Sequence[str] = NULL_HEADS[:n_heads]
    settings = {"metric": metric} if metric is not None else {}
    for _ in range(n_draws):
        y_train = rng.permutation(np.arange(n_train) % n_classes)
        y_test = rng.permutation(np.arange(n_test) % n_classes)
        train, test, base_train, base_test = (
            _data(rng.normal(size=(len(y), dim)), y, n_classes)
            for y in (y_train, y_test, y_train, y_test)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BottleneckWarning)
            comparison = compare_heads(
                train,
                test,
                heads=heads,
                baselines={"noise": (base_train.X, base_test.X)},
                n_bootstrap=100,
                random_state=int(rng.integers(2**31)),
                n_jobs=1,
                progress=False,
                **settings,
            )
        verdicts.append(comparison.transfer["verdict"])
        chosen = getattr(comparison, "selected", None) or comparison.best
        reported.append(chosen.metrics["accuracy"])
    return {
        "gain_rate": verdicts.count("gain") / n_draws,
        "negative_rate": verdicts.count("negative") / n_draws,
        "mean_reported_accuracy": float(np.mean(reported)),
        "chance": 1 / n_classes,
        "settings": {
            "n_draws": n_draws,
            "heads": list(heads),
            "n_train": n_train,
            "n_test": n_test,
            "dim": dim,
            "n_classes": n_classes,
            "seed": seed,
        },
    }


def format_null_draws(result: dict[str, Any]) -> list[str]:
    """A Markdown table of a :func:`null_draws` result."""
    settings = result["settings"]
    return [
        "| noise-label draws | heads | rows (train, test) | winner's reported accuracy, mean "
        '| chance | "Transfer gain" declared | "Negative transfer" declared |',
        "|---|---|---|---|---|---|---|",
        f"| {settings['n_draws']} | {', '.join(settings['heads'])} | {settings['n_train']}, "
        f"{settings['n_test']} | {result['mean_reported_accuracy']:.3f} | "
        f"{result['chance']:.3f} | {result['gain_rate']:.1%} | {result['negative_rate']:.1%} |",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bottleneck_transfer.bench.selection``: print :func:`null_draws` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = null_draws(
        args.draws, args.heads, n_train=args.train, n_test=args.test, seed=args.seed
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
