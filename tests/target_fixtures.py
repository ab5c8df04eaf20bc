"""Small image folders with binary, multi-label and regression manifests (for target tests)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

#: Channels an image is tagged with when its mean in that channel is above the middle.
TAGS = ("red", "green", "blue")


def target_images(root: Path, n: int = 60, seed: int = 0) -> Path:
    """``n`` 8x8 PNGs of random colour and brightness, and ``targets.csv`` beside them with
    columns ``path``, ``bright`` (yes/no), ``tags`` (channels above the middle, ``|``-joined;
    ``red`` when none) and ``brightness`` (the mean pixel, 0-1)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = rng.uniform(0.05, 0.95, 3)
        pixels = np.clip(colour + rng.normal(0, 0.05, (8, 8, 3)), 0, 1)
        image = (pixels * 255).astype(np.uint8)
        Image.fromarray(image).save(root / f"im{i:03d}.png")
        mean = image.astype(np.float64).mean(axis=(0, 1)) / 255
        tags = [t for t, m in zip(TAGS, mean, strict=True) if m > 0.5] or ["red"]
        value = float(image.mean() / 255)
        rows.append([f"im{i:03d}.png", "yes" if value > 0.5 else "no", "|".join(tags), value])
    with open(root / "targets.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "bright", "tags", "brightness"])
        writer.writerows(rows)
    return root / "targets.csv"


def write_target_cache(path: Path, X: np.ndarray, texts: list[str], spec: str) -> Path:
    """A complete cache of ``X`` whose rows have the target texts ``texts`` (a manifest's
    column) read as ``spec``, written by ``CacheWriter`` as extraction writes it."""
    from bottleneck_transfer.features.cache import CacheWriter
    from bottleneck_transfer.features.cache.partial import partial_path
    from bottleneck_transfer.features.targets import VALUE_KINDS, parse_target_spec, read_target
    from bottleneck_transfer.fingerprint import fingerprint

    target, canonical = read_target(
        list(enumerate(texts, start=2)), parse_target_spec(spec), "m.csv"
    )
    ids = [f"im{i:05d}.png" for i in range(len(texts))]
    identity = {
        "base": {"name": "test-base"},
        "source": {"kind": "csv", "target": target.to_dict()},
    }
    valued = target.kind in VALUE_KINDS
    names = ["valued"] if valued else list(target.names)
    labels = (
        np.zeros(len(texts), np.int32)
        if valued
        else np.asarray([names.index(t) for t in canonical], np.int32)
    )
    manifest = {"ids": ids, "size": [1] * len(ids), "mtime_ns": [0] * len(ids)}
    if valued:
        manifest["target"] = canonical
    writer = CacheWriter.create(
        partial_path(path),
        dim=X.shape[1],
        fingerprint=fingerprint(identity),
        identity=identity,
        provenance={"base": identity["base"], "source": identity["source"]},
        class_names=names,
        manifest=manifest,
    )
    writer.write_batch(np.asarray(X, np.float32), labels, ids, [], items_done=len(ids))
    writer.commit()
    return writer.finalize(path, extraction={"seconds": 0.0})


def regression_rows(n: int = 120, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and a value linear in them plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    return X, X @ rng.normal(size=dim) + rng.normal(0, 0.3, n)
