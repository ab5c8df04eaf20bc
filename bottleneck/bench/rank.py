"""Does the sample ranking predict? ``rank-bases`` on a 50-per-class sample against the
linear probe on the whole collection, with Kendall's tau and its bootstrap interval.

Offline: scikit-learn's digits (``data/digits/digits.npz``, 1,797 images) and bases built
here: the shipped Fashion-MNIST base (classes 0-4), the same architecture with random
weights, a Keras application with ``weights=None`` (MobileNetV3Small at 32x32) and raw
pixels. Run it with ``python -m bottleneck_transfer.bench.rank -o rank.json``.

The full ranking's probe is the untuned logistic regression (C = 1) by 5-fold CV on every
image (tuning it per base on the whole collection would cost more than the extraction it
ranks); the sample's is ``rank-bases``' own (C tuned on training folds only). The interval
resamples the scored images of both (the percentile bootstrap of tau).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIGITS = "data/digits/digits.npz"
CANDIDATES = (
    "data/bases/fashion_mnist_0-4.keras",
    "data/bases/fashion_mnist_0-4.keras weights=none",
    "mobilenet_v3_small weights=none image_size=32",
    "pixels image_size=8",
)


def kendall_interval(
    sample_correct: Sequence[np.ndarray],
    full_correct: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Kendall's tau between the bases' sample and full accuracies, and its 95% percentile
    bootstrap interval (the scored images of each resampled, the same rows for every base)."""
    from scipy.stats import kendalltau

    def tau(sample_rows: np.ndarray | slice, full_rows: np.ndarray | slice) -> float:
        a = [c[sample_rows].mean() for c in sample_correct]
        b = [c[full_rows].mean() for c in full_correct]
        value = kendalltau(a, b).statistic
        return 0.0 if np.isnan(value) else float(value)

    rng = np.random.default_rng(seed)
    n_sample, n_full = len(sample_correct[0]), len(full_correct[0])
    draws = [
        tau(rng.integers(0, n_sample, n_sample), rng.integers(0, n_full, n_full))
        for _ in range(n_boot)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"tau": tau(slice(None), slice(None)), "interval_95": [float(low), float(high)]}


def bench_rank(
    source: str = DIGITS,
    candidates: Sequence[str] = CANDIDATES,
    sample: str = "50/class",
    cv: int = 5,
    seed: int = 0,
    n_jobs: int | None = 1,
) -> dict[str, Any]:
    """Rank ``candidates`` on a sample of ``source`` and probe each on all of it; compare."""
    from bottleneck_transfer.features.sources import open_source
    from bottleneck_transfer.features.store import CacheStore
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.training import LabeledData
    from bottleneck_transfer.rank.candidates import parse_candidate
    from bottleneck_transfer.rank.ranking import rank_bases
    from bottleneck_transfer.rank.sample import store_extract

    with tempfile.TemporaryDirectory() as folder:
        store = CacheStore(folder)
        t0 = time.perf_counter()
        ranking = rank_bases(
            source,
            candidates,
            sample=sample,
            baselines=(),
            cv=cv,
            seed=seed,
            cache_dir=folder,
            progress=False,
            n_jobs=n_jobs,
        )
        rank_seconds = time.perf_counter() - t0
        collection = open_source(source)
        full: dict[str, dict[str, Any]] = {}
        for text in candidates:
            candidate = parse_candidate(text)
            base = candidate.build({}, seed)
            t0 = time.perf_counter()
            result = store_extract(store, collection, base, progress=False)
            extract_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            comparison = compare_heads(
                LabeledData.from_cache(result.path),
                heads=["logreg"],
                cv=cv,
                random_state=seed,
                n_jobs=n_jobs,
                progress=False,
            )
            row = comparison.best
            full[candidate.label] = {
                "accuracy": float(row.metrics["accuracy"]),
                "interval_95": list(row.intervals["accuracy"]),
                "correct": row.predictions == comparison.eval_labels,
                "extract_seconds": extract_seconds,
                "probe_seconds": time.perf_counter() - t0,
            }
    by_label = {r.label: r for r in ranking.results}
    labels = [parse_candidate(text).label for text in candidates]
    agreement = kendall_interval(
        [by_label[label].probe.correct for label in labels],
        [full[label]["correct"] for label in labels],
        seed=seed,
    )
    logme_tau = kendall_interval(  # the training-free estimate against the full probe
        [np.full(1, by_label[label].logme) for label in labels],
        [full[label]["correct"] for label in labels],
        seed=seed,
    )
    return {
        "source": source,
        "collection_images": len(collection),
        "sample": ranking.sample,
        "bases": [
            {
                "base": label,
                "sample_rank": by_label[label].rank,
                "sample_accuracy": by_label[label].probe.accuracy,
                "sample_interval_95": list(by_label[label].probe.interval),
                "logme": by_label[label].logme,
                "hscore": by_label[label].hscore,
                "full_accuracy": full[label]["accuracy"],
                "full_interval_95": full[label]["interval_95"],
                "full_extract_seconds": full[label]["extract_seconds"],
                "full_probe_seconds": full[label]["probe_seconds"],
            }
            for label in labels
        ],
        "kendall_tau_sample_vs_full": agreement,
        "kendall_tau_logme_vs_full": logme_tau,
        "rank_seconds": rank_seconds,
        "full_extract_seconds": sum(f["extract_seconds"] for f in full.values()),
        "full_probe_seconds": sum(f["probe_seconds"] for f in full.values()),
        "verdict": ranking.verdict,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bottleneck_transfer.bench.rank -o rank.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="rank-bench.json")
    parser.add_argument("--sample", default="50/class")
    args = parser.parse_args(argv)
    report = bench_rank(sample=args.sample)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
