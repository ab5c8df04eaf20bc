"""Binary, multi-label and regression targets on Fashion-MNIST, offline (issue 30's examples).

``pipelines/fashion_mnist_targets.toml`` declares the images (evenly spread over
``fashion-mnist:train``, scored on ``fashion-mnist:test``), the base (the small CNN of classes
0-4, cut at its bottleneck) and three targets of the same images:

* ``footwear`` (binary): Sandal, Sneaker or Ankle boot vs the rest;
* ``tags`` (multi-label, from the class and the image): ``footwear``, ``top`` (T-shirt,
  Pullover, Coat, Shirt), ``long-sleeves`` (Pullover, Coat, Shirt), ``bright`` (mean pixel
  above the training images' median); an image may have none;
* ``brightness`` (regression): the image's mean pixel, 0-1.

The images are written as PNGs with one CSV manifest holding the three columns; each target
is extracted (``extract --target``) and compared (``compare_targets``, on the test images).
Run from the checkout::

    python -m bottleneck_transfer.bench.targets -o data/bench/targets.json

The JSON keeps each comparison, its Markdown table (the README's ``targets`` block) and the
seconds each comparison took.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.heads.target_compare import compare_targets
from bottleneck_transfer.heads.target_report import format_target_table
from bottleneck_transfer.versions import software_versions

SPEC = Path("pipelines/fashion_mnist_targets.toml")
FOOTWEAR = {"Sandal", "Sneaker", "Ankle boot"}
TOPS = {"T-shirt/top", "Pullover", "Coat", "Shirt"}
LONG_SLEEVES = {"Pullover", "Coat", "Shirt"}


def _tags(name: str, bright: bool) -> str:
    tags = [
        tag
        for tag, has in (
            ("footwear", name in FOOTWEAR),
            ("top", name in TOPS),
            ("long-sleeves", name in LONG_SLEEVES),
            ("bright", bright),
        )
        if has
    ]
    return "|".join(tags)


def write_images(part: str, limit: int, folder: Path, median: float | None) -> float:
    """``limit`` images of a Fashion-MNIST part as PNGs and ``targets.csv`` beside them
    (``path, footwear, tags, brightness``); returns the median brightness used for ``bright``
    (the given one, else this part's)."""
    from PIL import Image

    source = open_source(f"fashion-mnist:{part}", limit=limit)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.stack([source.arrays[item.index] for item in source.items])
    brightness = pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0
    median = float(np.median(brightness)) if median is None else median
    with open(folder / "targets.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "footwear", "tags", "brightness"])
        for item, image, value in zip(source.items, pixels, brightness, strict=True):
            name = f"{item.index:05d}.png"
            Image.fromarray(image.squeeze()).save(folder / name)
            label = source.class_names[item.label]
            footwear = "yes" if label in FOOTWEAR else "no"
            writer.writerow([name, footwear, _tags(label, value > median), f"{value:.6f}"])
    return median


def run_target(entry: dict, spec: dict, folders: dict[str, Path], work: Path) -> dict:
    """Extract one target's train and test caches, compare its heads; the JSON record."""
    base = load_base(str((SPEC.parent / spec["base"]["name"]).resolve()))
    caches = {}
    for part, folder in folders.items():
        caches[part] = work / f"{entry['name']}-{part}.h5"
        extract(
            str(folder / "targets.csv"), base, caches[part], target=entry["target"], progress=False
        )
    started = time.perf_counter()
    result = compare_targets(
        caches["train"], caches["test"], heads=entry["heads"], n_bootstrap=1000
    )
    seconds = time.perf_counter() - started
    return {
        "name": entry["name"],
        "target": entry["target"],
        "heads": entry["heads"],
        "compare_seconds": round(seconds, 2),
        "comparison": result.to_dict(),
        "table": format_target_table(result),
    }


def run(out: Path, work: Path) -> dict[str, Any]:
    """Every target of :data:`SPEC`; writes and returns the JSON payload."""
    spec = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    started, load = time.perf_counter(), os.getloadavg()[0]
    folders = {"train": work / "train", "test": work / "test"}
    median = write_images("train", spec["data"]["limit"], folders["train"], None)
    write_images("test", spec["data"]["test_limit"], folders["test"], median)
    targets = [run_target(entry, spec, folders, work) for entry in spec["targets"]]
    payload = {
        # not "spec"/"settings": those name pipeline specs (bench.readme.settings_mismatches)
        "spec_file": str(SPEC),
        "declared": {"data": spec["data"], "targets": spec["targets"]},
        "bright_median": median,
        "targets": targets,
        "seconds": time.perf_counter() - started,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_start": round(load, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "software": software_versions(),
        },
    }
    import json

    atomic_write_text(out, json.dumps(payload, indent=1) + "\n")
    return payload


def format_targets(payload: dict[str, Any]) -> list[str]:
    """The README block: each target's table and its compare time."""
    lines: list[str] = []
    for entry in payload["targets"]:
        lines += [
            f"**{entry['name']}** (`--target {entry['target']}`), compared in "
            f"{entry['compare_seconds']:.1f} s:",
            "",
            entry["table"],
            "",
        ]
    return lines[:-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("data/bench/targets.json"))
    parser.add_argument("--work", type=Path, default=Path("runs/targets"))
    args = parser.parse_args(argv)
    payload = run(args.out, args.work)
    print("\n".join(format_targets(payload)))


if __name__ == "__main__":
    main()
