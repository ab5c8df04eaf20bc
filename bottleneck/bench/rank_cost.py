"""What ranking costs where extraction dominates: ``rank-bases`` with four
``keras.applications`` bases at a realistic input size on a 50-per-class sample, against
extracting the whole collection with each.

The collection is Fashion-MNIST's test images of classes 5-9 (5,000 images, resized to
:data:`IMAGE_SIZE` px and given three channels by the base). The candidates are
:data:`APPLICATIONS`, each with seeded random weights saved to a weights file first and
given as ``weights=FILE``: to ``rank-bases`` they look pretrained, so it also extracts the
sample with their random-weights version (its ``random-base`` baseline), as it does for
ImageNet weights, which cannot be downloaded here; random values cost the same time. Times
are wall and CPU seconds of this process (CPU: all its threads), each side including its
model builds. Run it with ``python -m bottleneck_transfer.bench.rank_cost -o
data/bench/rank_cost.json``; the README's ``rank-cost`` block is rendered from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bottleneck_transfer.bench.rank import CLASSES, TARGET, _clock, _since

#: The candidates: ``keras.applications`` names (light to heavy).
APPLICATIONS = ("MobileNetV3Small", "MobileNetV3Large", "MobileNetV2", "EfficientNetB0")
#: Their input size in pixels (MobileNet's 128 px ImageNet size).
IMAGE_SIZE = 128


def save_weights(folder: Path, image_size: int, seed: int = 0) -> dict[str, Path]:
    """Each application's seeded random weights (no top), saved in ``folder``."""
    import keras

    paths = {}
    for name in APPLICATIONS:
        keras.utils.set_random_seed(seed)
        builder = getattr(keras.applications, name)
        model = builder(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
        paths[name] = folder / f"{name}.weights.h5"
        model.save_weights(paths[name])
    return paths


def _machine() -> dict[str, Any]:
    from bottleneck_transfer.features.runners.probe import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": round(os.getloadavg()[0], 2),
    }


def bench_rank_cost(
    image_size: int = IMAGE_SIZE,
    sample: str = "50/class",
    limit: int | None = None,
    seed: int = 0,
    echo: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Rank :data:`APPLICATIONS` on a sample, then extract the collection with each; times
    of both (``limit``: fewer images, for a quick check)."""
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.features.sources import open_source
    from bottleneck_transfer.rank.candidates import parse_candidate
    from bottleneck_transfer.rank.ranking import rank_bases

    echo = echo or (lambda _line: None)
    machine = _machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        weights = save_weights(Path(folder), image_size, seed)
        lines = [f"{name} weights={weights[name]} image_size={image_size}" for name in weights]
        store = Path(folder) / "store"
        echo(f"rank-bases on a {sample} sample ...")
        t0 = _clock()
        ranking = rank_bases(
            TARGET, lines, sample=sample, seed=seed, classes=CLASSES, limit=limit,
            cache_dir=store, progress=False,
        )  # fmt: skip
        rank_cost = _since(t0)
        sample_caches = len(list(store.glob("*.h5")))
        collection = open_source(TARGET, classes=CLASSES, limit=limit)
        full = {}
        for name, line in zip(weights, lines, strict=True):
            echo(f"full collection: {name} ...")
            t0 = _clock()
            base = parse_candidate(line).build({}, seed)
            extract(collection, base, Path(folder) / f"{name}.h5", progress=False)
            full[name] = _since(t0)
    by_label = {r.label.split()[0]: r for r in ranking.results}
    totals = {key: sum(f[key] for f in full.values()) for key in ("wall_s", "cpu_s")}
    return {
        "target": f"{TARGET} --classes {CLASSES}",
        "collection_images": len(collection),
        "image_size": image_size,
        "sample": ranking.sample,
        "sample_caches": sample_caches,
        "bases": [
            {
                "base": name,
                "sample_rank": by_label[name].rank,
                "sample_images_per_second": by_label[name].cost.images_per_second,
                "estimated_full_seconds": by_label[name].cost.full_seconds,
                "full_extract": full[name],
            }
            for name in APPLICATIONS
        ],
        "rank": rank_cost,
        "full_extract": totals,
        "ratio": {key: rank_cost[key] / totals[key] for key in totals},
        "machine": {**machine, "load_average_end": round(os.getloadavg()[0], 2)},
        "seconds": time.perf_counter() - started,
    }


def format_rank_cost(report: dict[str, Any]) -> list[str]:
    """The benchmark as README lines: each base's full extraction, then ranking vs all."""
    n, size = report["collection_images"], report["image_size"]
    lines = [
        f"| base ({size} px) | sample rank | full extraction of {n:,} images: wall s | CPU s "
        "| `rank-bases`' estimate s |",
        "|---|---|---|---|---|",
    ]
    for b in report["bases"]:
        cost = b["full_extract"]
        lines.append(
            f"| {b['base']} | {b['sample_rank']} | {cost['wall_s']:.0f} | {cost['cpu_s']:.0f} "
            f"| {b['estimated_full_seconds']:.0f} |"
        )
    rank, full, ratio = report["rank"], report["full_extract"], report["ratio"]
    sample = report["sample"]
    lines += [
        f"| **all {len(report['bases'])}: full extraction** | | **{full['wall_s']:.0f}** | "
        f"**{full['cpu_s']:.0f}** | |",
        f"| **`rank-bases`, {sample['size']} ({sample['images']} images)** | | "
        f"**{rank['wall_s']:.0f}** | **{rank['cpu_s']:.0f}** | |",
        "",
        f"Ranking the {len(report['bases'])} bases on the sample took "
        f"{ratio['wall_s']:.0%} of the wall time ({ratio['cpu_s']:.0%} of the CPU time) of "
        f"extracting all {n:,} images with each; it wrote {report['sample_caches']} sample "
        "caches (each candidate, its random-weights version, the raw pixels once), probed "
        "them and wrote the report. The estimate is the one its report gives for the full "
        "job: the sample's wall time per image (its model's first, compiling call "
        "included) times the collection.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bottleneck_transfer.bench.rank_cost -o data/bench/rank_cost.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="rank-cost.json")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--sample", default="50/class")
    parser.add_argument("--limit", type=int, default=None, help="fewer images")
    args = parser.parse_args(argv)
    report = bench_rank_cost(args.image_size, args.sample, args.limit, echo=print)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(format_rank_cost(report)))


if __name__ == "__main__":
    main()
