"""Does the sample ranking predict? ``rank-bases`` on a 50-per-class sample against the
linear probe on the whole collection, with Kendall's tau and its interval; and what ranking
costs against extracting everything with each base.

Offline, on bases that really differ: the target is Fashion-MNIST's test images of classes
5-9 (5,000 images); the candidates are a base trained here on the *training* images of the
same classes (a similar task), the shipped base trained on classes 0-4 (other classes), a
base trained here on scikit-learn's digits (another domain), the shipped architecture with
random weights, a tiny KerasHub ResNet preset written with ``save_to_preset`` (random
weights), MobileNetV3Small with ``weights=None`` and raw pixels. Run it with
``python -m bottleneck_transfer.bench.rank -o data/bench/rank.json``.

The full ranking is the project's linear probe (``compare_heads(heads=["logreg"])``, 5-fold
CV on every image). Each sample score (the ridge probe's accuracy, LogME, H-score) gives a
sample ranking; its agreement with the full ranking is Kendall's tau, with an interval over
both chances: :data:`DRAWS` other seeded 50-per-class samples (from the full caches: the same
features), each against a bootstrap resample of the full probe's scored images.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.bench.small_bases import fashion_cnn, tiny_resnet

TARGET = "fashion-mnist:test"
CLASSES = "5-9"
SHIPPED = "data/bases/fashion_mnist_0-4.keras"
DIGITS = "data/digits/digits.npz"
#: Other seeded samples the agreement's interval draws.
DRAWS = 20
#: The sample scores whose ranking is compared with the full probe's.
SCORES = ("probe", "logme", "hscore")
#: Shown names of the candidates: ``(name, candidate line)``; ``{dir}`` is where the bases
#: built here are saved.
CANDIDATES = (
    ("Fashion-MNIST CNN, classes 5-9 (trained here)", "{dir}/fashion_5-9.keras"),
    ("Fashion-MNIST CNN, classes 0-4 (shipped)", SHIPPED),
    ("digits CNN (trained here)", "{dir}/digits.keras"),
    ("Fashion-MNIST CNN, random weights", f"{SHIPPED} weights=none"),
    ("KerasHub ResNet preset (tiny, random)", "{dir}/resnet_tiny"),
    ("MobileNetV3Small, weights=None, 32x32", "mobilenet_v3_small weights=none image_size=32"),
    ("raw pixels 28x28", "pixels image_size=28"),
)


def _train(x: np.ndarray, y: np.ndarray, path: Path, epochs: int, seed: int) -> Path:
    """Train the CNN on ``x`` (n, 28, 28) pixels 0..255 and save it to ``path``."""
    model = fashion_cnn(int(y.max()) + 1, seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[..., None].astype("float32"), y, epochs=epochs, batch_size=128, verbose=0)
    model.save(path)
    return path


def build_bases(folder: Path, seed: int = 0) -> dict[str, float]:
    """Save the bases built here in ``folder``; returns each one's build seconds."""
    import keras_hub
    from bottleneck_transfer.features.sources import open_source

    seconds = {}
    t0 = time.perf_counter()
    train = open_source("fashion-mnist:train", classes=CLASSES, limit=6_000)
    x = train.arrays[[item.index for item in train.items]]
    y = np.asarray([i.label for i in train.items])
    _train(x, y, folder / "fashion_5-9.keras", epochs=2, seed=seed)
    seconds["fashion_5-9"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    digits = np.load(DIGITS)
    grown = np.kron(digits["images"].astype(np.float32) * 15.9, np.ones((3, 3)))  # 0..16 -> 24 px
    padded = np.pad(grown, ((0, 0), (2, 2), (2, 2)))
    _train(padded, digits["labels"], folder / "digits.keras", epochs=8, seed=seed)
    seconds["digits"] = time.perf_counter() - t0
    tiny_resnet(seed).save_to_preset(str(folder / "resnet_tiny"))
    keras_hub.layers.ResNetImageConverter(
        image_size=(32, 32), scale=1 / 255.0, offset=0.0
    ).save_to_preset(str(folder / "resnet_tiny"))
    return seconds


def kendall_over_draws(
    sample_scores: np.ndarray, full_correct: Sequence[np.ndarray], seed: int = 0
) -> dict[str, Any]:
    """Kendall's tau between the bases' order by a sample score and by full-probe accuracy.

    ``sample_scores`` is (draws, bases), row 0 the sample ``rank-bases`` drew; ``full_correct``
    each base's per-image results of the full probe (the same images for every base). The
    value is row 0 against the full accuracies; the 95% interval the percentiles of each
    other draw against a bootstrap resample of the full probe's images (both chances).
    """
    from scipy.stats import kendalltau

    def tau(scores: np.ndarray, rows: np.ndarray | slice) -> float:
        value = kendalltau(scores, [c[rows].mean() for c in full_correct]).statistic
        return 0.0 if np.isnan(value) else float(value)

    rng = np.random.default_rng(seed)
    n = len(full_correct[0])
    draws = [tau(row, rng.integers(0, n, n)) for row in sample_scores[1:]]
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    return {
        "tau": tau(sample_scores[0], slice(None)),
        "interval_95": [float(low), float(high)],
        "draws": len(draws),
        "mean_over_draws": float(np.mean(draws)) if draws else None,
    }


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def _sample_scores(data, rows: np.ndarray, cv: int, seed: int) -> dict[str, float]:
    """The ranking scores of one base on the sample ``rows`` of its full cache."""
    from bottleneck_transfer.rank.logme import hscore, logme
    from bottleneck_transfer.rank.probe import probe

    part = data.take(rows)
    return {
        "probe": probe(part, {}, linked=None, cv=cv, seed=seed).accuracy,
        "logme": logme(part.X, part.y),
        "hscore": hscore(part.X, part.y),
    }


def bench_rank(
    sample: str = "50/class",
    cv: int = 5,
    seed: int = 0,
    draws: int = DRAWS,
    limit: int | None = None,
    echo: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Build the bases, rank them on a sample, extract and probe each on everything; compare
    (``limit``: fewer target images, for a quick check)."""
    from bottleneck_transfer.features.sources import open_source
    from bottleneck_transfer.features.store import CacheStore
    from bottleneck_transfer.rank.ranking import rank_bases
    from bottleneck_transfer.rank.sample import SampleSize
    from bottleneck_transfer.rank.verdict import RANK_BY

    echo = echo or (lambda _line: None)
    load_start = os.getloadavg()[0]
    started = _clock()
    with tempfile.TemporaryDirectory() as folder:
        echo("building the bases ...")
        built = build_bases(Path(folder), seed)
        bases = _Bases.built_in(folder)
        store = CacheStore(Path(folder) / "store")
        echo(f"rank-bases on a {sample} sample ...")
        t0 = _clock()
        ranking = rank_bases(
            TARGET, bases.lines, sample=sample, cv=cv, seed=seed, classes=CLASSES,
            limit=limit, cache_dir=store.root, progress=False,
        )  # fmt: skip
        rank_cost = _since(t0)
        full = _Full(open_source(TARGET, classes=CLASSES, limit=limit))
        for name, line in zip(bases.names, bases.lines, strict=True):
            echo(f"full collection: {name} ...")
            full.add(name, store, line, cv, seed)
        echo(f"{draws} more samples from the full caches ...")
        by_name = {bases.shown[r.label]: r for r in ranking.results}
        table = _score_table(full, by_name, SampleSize.parse(sample), draws, cv, seed)
    correct = [full.probes[n]["correct"] for n in bases.names]
    agreement = {
        score: kendall_over_draws(table[:, :, k], correct, seed) for k, score in enumerate(SCORES)
    }
    return {
        "target": f"{TARGET} --classes {CLASSES}",
        "collection_images": len(full.collection),
        "sample": ranking.sample,
        "rank_by": RANK_BY,
        "bases": _base_rows(bases, by_name, full.probes),
        "kendall_tau_vs_full_probe": agreement,
        "rank": rank_cost,
        "full_extract": full.total("extract"),
        "full_probe": full.total("probe"),
        "built_seconds": built,
        "verdict": ranking.verdict.replace(folder, "BUILT"),
        "load_average": [load_start, os.getloadavg()[0]],
        "cores": os.cpu_count(),
        "seconds": _since(started)["wall_s"],
    }


@dataclass
class _Bases:
    """The candidates: shown names, candidate lines (the bases built here in ``folder``) and
    the shown name of each candidate's label."""

    folder: str
    names: list[str]
    lines: list[str]
    shown: dict[str, str]

    @classmethod
    def built_in(cls, folder: str) -> _Bases:
        """:data:`CANDIDATES` with the bases built here saved in ``folder``."""
        from bottleneck_transfer.rank.candidates import parse_candidate

        names = [name for name, _ in CANDIDATES]
        lines = [line.format(dir=folder) for _, line in CANDIDATES]
        shown = {parse_candidate(line).label: name for name, line in zip(names, lines, strict=True)}
        return cls(folder, names, lines, shown)


@dataclass
class _Full:
    """The whole collection through every base: each base's cache data and full probe."""

    collection: Any
    datas: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, name: str, store: Any, line: str, cv: int, seed: int) -> None:
        """Extract the collection with the candidate ``line`` and probe it on every image
        (``cv``-fold logistic regression), timing both."""
        from bottleneck_transfer.heads.compare import compare_heads
        from bottleneck_transfer.heads.training import LabeledData
        from bottleneck_transfer.rank.candidates import parse_candidate
        from bottleneck_transfer.rank.sample import store_extract

        base = parse_candidate(line).build({}, seed)
        t0 = _clock()
        result = store_extract(store, self.collection, base, progress=False)
        extract_cost = _since(t0)
        self.datas[name] = LabeledData.from_cache(result.path)
        t0 = _clock()
        comparison = compare_heads(
            self.datas[name], heads=["logreg"], cv=cv, random_state=seed, n_jobs=1, progress=False
        )
        row = comparison.best
        self.probes[name] = {
            "accuracy": float(row.metrics["accuracy"]),
            "interval_95": list(row.intervals["accuracy"]),
            "correct": row.predictions == comparison.eval_labels,
            "extract": extract_cost,
            "probe": _since(t0),
        }

    def total(self, cost: str) -> dict[str, float]:
        """The wall and CPU seconds of ``cost`` ("extract" or "probe") over every base."""
        return {key: sum(f[cost][key] for f in self.probes.values()) for key in ("wall_s", "cpu_s")}


def _score_table(
    full: _Full, by_name: dict[str, Any], size: Any, draws: int, cv: int, seed: int
) -> np.ndarray:
    """Every base's sample scores (:data:`SCORES`), (draws + 1, bases, scores): row 0 those of
    the sample ``rank-bases`` drew (``by_name``), then of ``draws`` other seeded samples of
    ``size`` from the full caches (the same features)."""
    from bottleneck_transfer.rank.sample import sample_source

    names = list(full.datas)
    row_of = {i: r for r, i in enumerate(full.datas[names[0]].ids)}
    table = np.empty((draws + 1, len(names), len(SCORES)))
    table[0] = [[by_name[n].probe.accuracy, by_name[n].logme, by_name[n].hscore] for n in names]
    for draw in range(1, draws + 1):
        ids = [item.id for item in sample_source(full.collection, size, seed + draw).items]
        rows = np.asarray([row_of[i] for i in ids])
        for b, name in enumerate(names):
            scores = _sample_scores(full.datas[name], rows, cv, seed + draw)
            table[draw, b] = [scores[s] for s in SCORES]
    return table


def _base_rows(
    bases: _Bases, by_name: dict[str, Any], probes: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per base: its candidate, sample rank and scores, and its full probe."""
    from bottleneck_transfer.rank.candidates import parse_candidate

    return [
        {
            "base": name,
            "candidate": parse_candidate(line).label.replace(bases.folder, "BUILT"),
            "sample_rank": by_name[name].rank,
            "sample_probe": by_name[name].probe.accuracy,
            "sample_probe_interval_95": list(by_name[name].probe.interval),
            "logme": by_name[name].logme,
            "hscore": by_name[name].hscore,
            "negative_transfer": by_name[name].probe.negative,
            "full_accuracy": probes[name]["accuracy"],
            "full_interval_95": probes[name]["interval_95"],
            "full_extract": probes[name]["extract"],
            "full_probe": probes[name]["probe"],
        }
        for name, line in zip(bases.names, bases.lines, strict=True)
    ]


def _interval(values: Sequence[float]) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]"


def format_rank_bench(report: dict[str, Any]) -> list[str]:
    """The benchmark as README lines: the bases' table, the agreement, the cost."""
    sample = report["sample"]
    lines = [
        f"| base | rank | sample probe ({sample['images']} images) | LogME | H-score | "
        f"full probe ({report['collection_images']:,} images) | full extraction s |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in sorted(report["bases"], key=lambda b: b["sample_rank"]):
        flag = " (negative transfer)" if b["negative_transfer"] else ""
        lines.append(
            f"| {b['base']}{flag} | {b['sample_rank']} | {b['sample_probe']:.3f} "
            f"{_interval(b['sample_probe_interval_95'])} | {b['logme']:.3f} | "
            f"{b['hscore']:.2f} | {b['full_accuracy']:.3f} {_interval(b['full_interval_95'])} | "
            f"{b['full_extract']['wall_s']:.0f} |"
        )
    names = {"probe": "sample ridge probe", "logme": "LogME", "hscore": "H-score"}
    lines.append("")
    for score, tau in report["kendall_tau_vs_full_probe"].items():
        used = " (the score `rank-bases` ranks by)" if score == report["rank_by"] else ""
        low, high = tau["interval_95"]
        lines.append(
            f"- {names[score]}{used} vs the full probe: Kendall's tau {tau['tau']:.2f}, "
            f"95% interval [{low:.2f}, {high:.2f}] over {tau['draws']} other samples"
        )
    rank, extract = report["rank"], report["full_extract"]
    lines += [
        "",
        f"Ranking the {len(report['bases'])} bases on the sample took {rank['wall_s']:.0f} s "
        f"({rank['cpu_s']:.0f} s CPU); extracting all {report['collection_images']:,} images "
        f"with each took {extract['wall_s']:.0f} s ({extract['cpu_s']:.0f} s CPU), and the "
        f"full probes {report['full_probe']['wall_s']:.0f} s more. Load average "
        f"{report['load_average'][0]:.1f} → {report['load_average'][1]:.1f} on "
        f"{report['cores']} cores.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bottleneck_transfer.bench.rank -o data/bench/rank.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="rank-bench.json")
    parser.add_argument("--sample", default="50/class")
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--limit", type=int, default=None, help="fewer target images")
    args = parser.parse_args(argv)
    report = bench_rank(sample=args.sample, draws=args.draws, limit=args.limit, echo=print)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
