"""Benchmark of issue 15's caches: several layers in one pass, float16 storage.

``python -m bottleneck_transfer.bench.caches`` prints JSON:

* ``layers``: seconds to extract ``--layers`` (3 layers, one pass) against one ``--layer``
  run of the same base and images (median of ``repeats`` interleaved rounds; ratio target
  <= 1.2).
* ``layers_update``: the same with ``--update`` on a folder of PNGs, unchanged (no image runs
  through the base: building the base and checking the files) and with a few new images.
* ``storage``: file size and whole-cache read time of a float32, float16 and lzf cache of
  the same random features against ``np.load`` of the float32 ``.npy``.

Nothing here asserts a time; the figures go in the README.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS = ["out_relu", "block_13_expand_relu", "block_6_expand_relu"]


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bench_layers(n_images: int = 512, size: int = 96, repeats: int = 3) -> dict:
    """Seconds of three layers in one pass against one layer (MobileNetV2, random weights)."""
    from bottleneck_transfer.features.extract import extract, extract_layers

    options = {"weights": "none", "image_size": size}
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
        np.savez(root / "a.npz", images=images, labels=np.arange(n_images) % 10)
        for r in range(repeats + 1):  # the first round warms up (tracing)
            one = _timed(
                lambda r=r: extract(
                    root / "a.npz",
                    "mobilenet_v2",
                    root / f"one{r}.h5",
                    layer=LAYERS[0],
                    progress=False,
                    **options,
                )
            )
            three = _timed(
                lambda r=r: extract_layers(
                    root / "a.npz",
                    "mobilenet_v2",
                    root / f"three{r}.h5",
                    LAYERS,
                    progress=False,
                    **options,
                )
            )
            rounds.append((one, three))
    rounds = rounds[1:]
    return {
        "images": n_images,
        "image_size": size,
        "layers": LAYERS,
        "one_layer_s": statistics.median(o for o, _ in rounds),
        "three_layers_s": statistics.median(t for _, t in rounds),
        "ratio": statistics.median(t / o for o, t in rounds),
        "note": "both include building the base from its name, as the CLI does",
    }


def bench_layers_update(
    n_images: int = 512, size: int = 96, repeats: int = 3, new_images: int = 16
) -> dict:
    """Seconds of ``--update`` with three layers in one pass against one layer, on a folder of
    PNGs: unchanged (no image runs through the base), and with ``new_images`` added."""
    from bottleneck_transfer.features.extract import extract, extract_layers
    from PIL import Image

    options = {"weights": "none", "image_size": size, "progress": False}
    rng = np.random.default_rng(0)

    def add(root: Path, names: range) -> None:
        for k in names:
            path = root / f"c{k % 10}" / f"{k:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)

    def both(root: Path) -> tuple[float, float]:
        one = _timed(
            lambda: extract(
                root,
                "mobilenet_v2",
                root.parent / "one.h5",
                layer=LAYERS[0],
                update=True,
                **options,
            )
        )
        three = _timed(
            lambda: extract_layers(
                root, "mobilenet_v2", root.parent / "three.h5", LAYERS, update=True, **options
            )
        )
        return one, three

    rounds: dict[str, list[tuple[float, float]]] = {"unchanged": [], "new_images": []}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "images"
        add(root, range(n_images))
        both(root)  # the first extraction (and tracing)
        for r in range(repeats):
            rounds["unchanged"].append(both(root))
            start = n_images + r * new_images
            add(root, range(start, start + new_images))
            rounds["new_images"].append(both(root))
    figures = {
        kind: {
            "one_layer_s": statistics.median(o for o, _ in got),
            "three_layers_s": statistics.median(t for _, t in got),
            "ratio": statistics.median(t / o for o, t in got),
        }
        for kind, got in rounds.items()
    }
    return {"images": n_images, "added_per_round": new_images, "layers": LAYERS, **figures}


def bench_storage(rows: int = 60_000, dim: int = 1280, repeats: int = 5) -> dict:
    """Size and read time of float32 / float16 / lzf caches against ``np.load``."""
    from bottleneck_transfer.features.cache import CacheWriter, FeatureCache

    features = np.random.default_rng(0).random((rows, dim), np.float32)
    out: dict = {"rows": rows, "dim": dim}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        np.save(root / "x.npy", features)
        out["npy"] = {
            "bytes": (root / "x.npy").stat().st_size,
            "read_s": min(_timed(lambda: np.load(root / "x.npy")) for _ in range(repeats)),
        }
        kinds = {"float32": ("float32", None), "float16": ("float16", None)}
        kinds["float16+lzf"] = ("float16", "lzf")
        for name, (dtype, compression) in kinds.items():
            path = root / f"{name}.h5"
            writer = CacheWriter.create(
                root / f"{name}.partial",
                dim=dim,
                fingerprint="sha256:bench",
                identity={},
                provenance={},
                class_names=["a"],
                store_dtype=dtype,
                compression=compression,
            )
            writer.write_batch(features, np.zeros(rows, np.int32), [""] * rows, [], rows)
            writer.finalize(path, {})

            def read(path: Path = path) -> None:
                with FeatureCache.open(path) as cache:
                    cache.features  # noqa: B018 (the read being timed)

            out[name] = {
                "bytes": path.stat().st_size,
                "read_s": min(_timed(read) for _ in range(repeats)),
            }
    for name in ("float32", "float16", "float16+lzf"):
        out[name]["size_vs_npy"] = out[name]["bytes"] / out["npy"]["bytes"]
        out[name]["read_vs_np_load"] = out[name]["read_s"] / out["npy"]["read_s"]
    return out


if __name__ == "__main__":
    figures = {"storage": bench_storage(), "layers": bench_layers()}
    figures["layers_update"] = bench_layers_update()
    print(json.dumps(figures, indent=2))
