"""``bottleneck bench``: where extraction time goes, and how far it is from the limit.

For one base and one image source the benchmark measures, in interleaved rounds (so that a
burst of load from elsewhere hits every path of a round alike), images per second of:

``model``
    R_model: the base's compiled forward pass on preloaded float32 pixels,
    ``predict_on_batch`` in a loop (the call the extractor makes).
``decode``
    R_decode: decoding and resizing alone, the extractor's way: Pillow on ``workers``
    threads, or one gather for array images already at the base's size.
``extract``
    :func:`features.extract.extract` end to end, files to a finished cache.
``peer``
    The usual Keras recipe: ``keras.utils.image_dataset_from_directory`` +
    ``model.predict`` (folder sources; the base's model carries the application's
    preprocessing as its first layer).
``predict_numpy``
    ``model.predict`` on the preloaded float32 array.

The limit is ``L = 1 / (1/R_model + 1/R_decode)`` on a CPU (both share the cores) and
``L = min(R_model, R_decode)`` with an accelerator. It also times heads on the cache, a
dense softmax head trained from the cache against the same head trained with the frozen
base inside ``model.fit``, reading a cache against ``np.load`` of the same array, and the
peak memory of extracting 10k vs 60k Fashion-MNIST images (subprocesses).

Rates are reported as median, min and max over ``repeats`` rounds; ratios are the median of
the per-round ratios. CPU milliseconds per image are recorded too: on a machine shared with
other jobs wall-clock ratios wander, while ``extract_cpu_efficiency`` (CPU work of model +
decode over CPU work of extract) barely moves. Nothing here asserts a time; :func:`targets`
compares ratios with the design's targets. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

PARTS = (
    "model",
    "decode",
    "extract",
    "peer",
    "predict_numpy",
    "bfloat16",
    "heads",
    "compare",
    "dense",
    "read",
    "memory",
    "dask",
    "compare6k",
    "views",
    "float16-heads",
    "statistics",
    "rank",
)
#: Parts measured once per run, not per base.
GLOBAL_PARTS = (
    "read",
    "memory",
    "dask",
    "compare6k",
    "views",
    "float16-heads",
    "statistics",
    "rank",
)
DEFAULT_PARTS = (
    "model",
    "decode",
    "extract",
    "peer",
    "bfloat16",
    "heads",
    "compare",
    "dense",
    "read",
)
SUITE_PARTS = (*DEFAULT_PARTS, "memory", "compare6k")
#: The README table: base, input size and images (heads and the dense head use <= 10k rows).
SUITE = (
    {"base": "mobilenet_v2", "image_size": 224, "n_images": 512},
    {"base": "resnet50", "image_size": 224, "n_images": 256},
    {"base": "fashion-mnist", "image_size": None, "n_images": 60_000},
)
FASHION_BASE = "data/bases/fashion_mnist_0-4.keras"
PHOTO_FORMAT = 1

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- statistics


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and relative spread ((max - min) / median) of some runs."""
    values = [float(v) for v in values]
    if not values:
        return {"median": None, "min": None, "max": None, "spread": None, "runs": []}
    median = statistics.median(values)
    return {
        "median": round(median, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread": round((max(values) - min(values)) / median, 4) if median else None,
        "runs": [round(v, 4) for v in values],
    }


def limit_rate(r_model: float, r_decode: float, accelerator: bool) -> float:
    """The extraction limit L from the model's and the decoder's rates (images/s)."""
    if accelerator:
        return min(r_model, r_decode)
    return 1.0 / (1.0 / r_model + 1.0 / r_decode)


def _machine(workers: int) -> dict[str, Any]:
    import keras
    from bottleneck_transfer.features.runtimes import accelerator_devices
    from bottleneck_transfer.versions import software_versions

    return {
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "workers": workers,
        "memory_gib": _memory_gib(),
        "accelerators": accelerator_devices(),
        "backend": keras.backend.backend(),
        "software": software_versions(),
        "load_average_start": _load(),
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def _load() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


# ----------------------------------------------------------------------------- test images


def _photo_pool() -> list[np.ndarray]:
    """Real photographs shipped with scikit-image, or smooth random scenes without it."""
    try:
        from skimage import data
    except ImportError:
        rng = np.random.default_rng(0)
        scenes = []
        for _ in range(8):
            low = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
            from PIL import Image

            scenes.append(np.asarray(Image.fromarray(low).resize((480, 360), 3)))
        return scenes
    names = (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "colorwheel",
        "camera",
        "coins",
        "brick",
        "grass",
        "gravel",
    )
    photos = []
    for name in names:
        with contextlib.suppress(Exception):
            image = np.asarray(getattr(data, name)())
            photos.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    return photos


def photo_folder(
    n_images: int = 512, *, size: int = 300, classes: int = 4, root: str | Path | None = None
) -> Path:
    """A class-folder tree of ``n_images`` photo-like JPEGs about ``size`` px wide.

    Random crops of real photographs, resized and with sensor-like noise added, saved at
    JPEG quality 90. Written once to ``root`` (default ``$BOTTLENECK_BENCH_DIR`` or
    ``~/.cache/bottleneck/bench``) and reused.
    """
    from PIL import Image

    base_dir = Path(
        root or os.environ.get("BOTTLENECK_BENCH_DIR") or Path.home() / ".cache/bottleneck/bench"
    )
    folder = base_dir / f"photos-v{PHOTO_FORMAT}-{n_images}-{size}px-{classes}c"
    if (folder / ".complete").exists():
        return folder
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=base_dir))
    rng = np.random.default_rng(n_images)
    photos = _photo_pool()
    for i in range(n_images):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        height = int(rng.integers(3 * size // 4, size + 1))
        crop = Image.fromarray(photo[y : y + ch, x : x + cw]).resize((size, height), 2)
        noisy = np.asarray(crop, np.int16) + rng.normal(0, 6, (height, size, 3)).astype(np.int16)
        label_dir = staging / f"class_{i % classes}"
        label_dir.mkdir(exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            label_dir / f"{i:06d}.jpg", quality=90
        )
    (staging / ".complete").write_text("ok\n")
    try:
        staging.rename(folder)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------- timing parts


def decode_source(
    source, base, workers: int, batch_size: int, per_image: bool = False
) -> np.ndarray:
    """Decode a whole source through extraction's own pipeline, without the model.

    ``per_image`` decodes array images one by one through Pillow instead of gathering them.
    """
    from bottleneck_transfer.features.batches import iter_batches

    batches = iter_batches(
        source, base.image_size, base.channels, batch_size, workers=workers, gather=not per_image
    )
    return np.concatenate([batch.pixels for batch in batches])


def _run_model(model, pixels: np.ndarray, batch_size: int) -> None:
    for begin in range(0, len(pixels), batch_size):
        model.predict_on_batch(pixels[begin : begin + batch_size])


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    times = os.times()
    return times.user + times.system


def _full_batches(pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """Pixels trimmed (or tiled) to whole batches, so every call has the compiled shape."""
    n = max(batch_size, len(pixels) - len(pixels) % batch_size)
    reps = -(-n // len(pixels))
    return np.concatenate([pixels] * reps)[:n] if reps > 1 else pixels[:n]


def _peer_dataset(folder: Path, base, batch_size: int, take: int | None = None):
    import keras

    dataset = keras.utils.image_dataset_from_directory(
        folder,
        labels=None,
        image_size=base.image_size,
        batch_size=batch_size,
        shuffle=False,
        color_mode="rgb" if base.channels == 3 else "grayscale",
        verbose=False,
    )
    return dataset.take(take) if take else dataset


class _EpochTimer:
    """A Keras callback recording the wall time of every epoch."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None) -> None:
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None) -> None:
                self.seconds.append(time.perf_counter() - self._start)

        return Timer()


def _dense_head(dim: int, n_classes: int):
    import keras

    keras.utils.set_random_seed(0)
    head = keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(n_classes, activation="softmax")], name="head"
    )
    return head


def _warm_up_training() -> None:
    """Pay the process's one-time cost of a first ``fit`` (imports, optimizer code) up front."""
    head = _dense_head(4, 2)
    _compile(head)
    head.fit(np.zeros((4, 4), np.float32), np.arange(4) % 2, epochs=1, verbose=0)


def _compile(model) -> None:
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def bench_dense(
    cache_path: Path,
    base,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 10,
    frozen_epochs: int = 2,
    fit_batch_size: int = 32,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """A dense softmax head: ``epochs`` on the cache vs with the frozen base in ``model.fit``.

    The cache side is the project's :class:`~bottleneck.heads.DenseHead` (the ``dense``
    head, here with Adam's defaults and no early stopping, so it is the same softmax layer
    and optimiser), timed whole: open the cache, read it, build, compile, fit ``epochs``.
    The frozen side builds base + the same head and fits on the preloaded pixels (decoding
    excluded, which favours it) for ``frozen_epochs`` epochs; its ``epochs``-epoch time is
    that run plus ``epochs - frozen_epochs`` times its median later epoch (every epoch after
    the first does the same work). The cache side is mostly Keras's fixed cost per fit and
    per epoch, so the speedup grows with N: it is also timed on a quarter of the rows, and
    ``images_for_100x`` is where the two linear cost models reach a 100x ratio.
    """
    from bottleneck_transfer.features.cache import FeatureCache

    labels = np.asarray(labels, np.int32)
    _warm_up_training()
    with FeatureCache.open(cache_path) as cache:
        rows = len(cache) if max_rows is None else min(max_rows, len(cache))
        n_classes = max(len(cache.class_names), int(cache.labels.max()) + 1)
    fit = _DenseFit(epochs, max(1, min(frozen_epochs, epochs)), fit_batch_size)
    cache_seconds, accuracy = _fit_from_cache(cache_path, rows, fit)
    quarter = max(fit_batch_size, rows // 4)
    cache_quarter, _ = _fit_from_cache(cache_path, quarter, fit)
    measured, epoch_seconds = _fit_frozen(base, pixels, labels, n_classes, rows, fit)
    epoch = statistics.median(epoch_seconds[1:] or epoch_seconds)
    frozen_total = measured + (epochs - fit.frozen_epochs) * epoch
    n_100 = _images_for_100x(
        (cache_seconds, cache_quarter), (rows, quarter), frozen_total, epochs * epoch / rows
    )
    return {
        "epochs": epochs,
        "rows": rows,
        "fit_batch_size": fit_batch_size,
        "from_cache_seconds": round(cache_seconds, 4),
        "from_cache_seconds_quarter_rows": round(cache_quarter, 4),
        "quarter_rows": quarter,
        "frozen_base_seconds": round(frozen_total, 4),
        "frozen_base_epochs_measured": fit.frozen_epochs,
        "frozen_base_epoch_seconds": [round(s, 4) for s in epoch_seconds],
        "speedup": round(frozen_total / cache_seconds, 2),
        "images_for_100x": None if n_100 is None else max(0, round(n_100)),
        "from_cache_final_accuracy": round(accuracy, 4),
    }


@dataclass
class _DenseFit:
    """How both sides fit the dense head: the epochs, those the frozen side runs, the batch."""

    epochs: int
    frozen_epochs: int
    batch_size: int


def _fit_from_cache(cache_path: Path, rows: int, fit: _DenseFit) -> tuple[float, float]:
    """Seconds to open the cache, read ``rows`` spread rows and fit the ``dense`` head on them
    (Adam's defaults, no early stopping), and its accuracy on them."""
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.heads.estimators import DenseHead

    started = time.perf_counter()
    with FeatureCache.open(cache_path) as cache:
        picked = spread_rows(len(cache), rows)
        features, cache_labels = cache.features[picked], cache.labels[picked]
    head = DenseHead(
        epochs=fit.epochs,
        batch_size=fit.batch_size,
        learning_rate=1e-3,
        weight_decay=0.0,
        validation_fraction=0.0,
        random_state=0,
    ).fit(features, cache_labels)
    accuracy = head.score(features, cache_labels)
    return time.perf_counter() - started, accuracy


def _fit_frozen(
    base, pixels: np.ndarray, labels: np.ndarray, n_classes: int, rows: int, fit: _DenseFit
) -> tuple[float, list[float]]:
    """Seconds of ``fit.frozen_epochs`` epochs of the frozen base + the same softmax head in
    ``model.fit`` on ``rows`` spread preloaded pixels, and each epoch's seconds."""
    import keras

    inputs = keras.Input(pixels.shape[1:], name="pixels")
    keras.utils.set_random_seed(0)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(
        base.model(inputs, training=False)
    )
    frozen = keras.Model(inputs, outputs, name="frozen_base_and_head")
    _compile(frozen)
    timer = _EpochTimer()
    started = time.perf_counter()
    picked = spread_rows(len(labels), rows)
    frozen.fit(
        pixels[picked],
        labels[picked],
        epochs=fit.frozen_epochs,
        batch_size=fit.batch_size,
        verbose=0,
        callbacks=[timer],
    )
    return time.perf_counter() - started, timer.seconds


def _images_for_100x(
    cache_seconds: tuple[float, float],
    sizes: tuple[int, int],
    frozen_total: float,
    per_image: float,
) -> float | None:
    """Where the frozen side takes 100x the cache side, both linear in N: cache = a + b N
    (``cache_seconds`` at the two ``sizes``), frozen = f + p N (``per_image`` p over the
    epochs); None where it never does."""
    (full, quarter), (rows, quarter_rows) = cache_seconds, sizes
    slope = max(0.0, (full - quarter) / max(1, rows - quarter_rows))
    fixed = max(0.0, full - slope * rows)
    frozen_fixed = max(0.0, frozen_total - per_image * rows)
    denominator = per_image - 100 * slope
    return (100 * fixed - frozen_fixed) / denominator if denominator > 0 else None


def spread_rows(total: int, rows: int | None) -> np.ndarray:
    """``rows`` row indices spread evenly over ``total`` (all of them when None or more).

    Caches of class folders are sorted by class, so a prefix would hold one class only.
    """
    if rows is None or rows >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, rows).round().astype(int)


def bench_heads(
    cache_path: Path, names: Sequence[str] | None = None, *, max_rows: int | None = None
) -> dict[str, Any]:
    """Seconds to fit each head (default: every registered kind) on a cache's rows.

    ``max_rows`` evenly spread rows are used. Heads fit with one BLAS thread, as
    :func:`~bottleneck_transfer.heads.compare.compare_heads` fits them.
    """
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.heads.registry import head_names, make_head, single_threaded

    with FeatureCache.open(cache_path) as cache:
        picked = spread_rows(len(cache), max_rows)
        features, labels = cache.features[picked], cache.labels[picked]
    results: dict[str, Any] = {"rows": len(features)}
    for name in names or head_names():
        try:
            head = make_head(name)
            with single_threaded():
                started = time.perf_counter()
                head.fit(features, labels)
                fit = time.perf_counter() - started
                started = time.perf_counter()
                head.predict(features)
                predict = time.perf_counter() - started
            results[name] = {
                "fit_seconds": round(fit, 4),
                "predict_ms_per_1k": round(1000 * predict / max(1, len(features)) * 1000, 3),
            }
        except Exception as exc:  # a head that fails is reported, not fatal
            results[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    return results


def bench_compare(
    cache_path: Path,
    extract_seconds: float,
    *,
    heads: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    cv: int = 5,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Seconds of a ``compare`` (default: the registry's default heads) against extraction.

    Two readings: holdout (a stratified ``test_fraction`` of the rows stands in for a test
    cache of the same images, so the extraction time covers train and test) and ``cv``-fold
    cross-validation on all rows (every head fitted ``cv`` times). Keras is already imported
    here, as it is in a ``bottleneck run``; a fresh ``bottleneck compare`` process also pays
    TensorFlow's import (about 5 s on a 2-core machine) on its first dense head.
    """
    from bottleneck_transfer.errors import SmallDataWarning
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.registry import default_heads
    from bottleneck_transfer.heads.training import LabeledData
    from sklearn.model_selection import train_test_split

    heads = list(heads or default_heads())
    data = LabeledData.from_cache(cache_path)
    picked = spread_rows(len(data), max_rows)
    rows = len(picked)
    X, y = data.X[picked], data.y[picked]
    names = data.class_names
    fit, test = train_test_split(
        np.arange(rows), test_size=test_fraction, stratify=y, random_state=0
    )
    train_set = LabeledData.from_arrays(X[fit], y[fit], class_names=names)
    test_set = LabeledData.from_arrays(X[test], y[test], class_names=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)  # the bench may time tiny caches
        holdout = compare_heads(train_set, test_set, heads=list(heads)).seconds
        folds = compare_heads(
            LabeledData.from_arrays(X, y, class_names=names), heads=list(heads), cv=cv
        ).seconds
    extraction = extract_seconds * rows / len(data)
    return {
        "rows": rows,
        "heads": list(heads),
        "extract_seconds": round(extraction, 3),
        "holdout_seconds": round(holdout, 3),
        "holdout_vs_extract": round(holdout / extraction, 4),
        "cv": cv,
        "cv_seconds": round(folds, 3),
        "cv_vs_extract": round(folds / extraction, 4),
    }


def bench_cache_read(
    dim: int = 2048, *, megabytes: int = 256, repeats: int = 5, directory: str | Path | None = None
) -> dict[str, Any]:
    """Read a whole cache (``FeatureCache.features``) vs ``np.load`` of the same array.

    The cache is written the way extraction writes it (batches of 64 rows, committed every
    few batches, finalized); reads alternate between the two so both see a warm page cache.
    """
    from bottleneck_transfer.features.cache import CacheWriter, FeatureCache

    rows = max(64, megabytes * 2**20 // (4 * dim))
    rng = np.random.default_rng(0)
    features = rng.standard_normal((rows, dim), dtype=np.float32)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path, npy = Path(tmp) / "read.h5", Path(tmp) / "read.npy"
        writer = CacheWriter.create(
            f"{path}.partial",
            dim=dim,
            fingerprint="sha256:bench",
            identity={"bench": True},
            provenance={"bench": True},
            class_names=["a", "b"],
        )
        write_started = time.perf_counter()
        for count, begin in enumerate(range(0, rows, 64), 1):
            block = features[begin : begin + 64]
            ids = [f"r{k}" for k in range(begin, begin + len(block))]
            writer.write_batch(block, np.zeros(len(block), np.int32), ids, [], begin + len(block))
            if count % 8 == 0:
                writer.commit()
        writer.commit()
        writer.finalize(path, {})
        write_seconds = time.perf_counter() - write_started
        np.save(npy, features)
        del features

        def read_cache() -> np.ndarray:
            with FeatureCache.open(path) as cache:
                return cache.features

        def read_npy() -> np.ndarray:
            return np.load(npy)

        for fn in (read_cache, read_npy):  # warm the page cache
            fn()
        cache_s, npy_s = [], []
        for _ in range(repeats):
            for fn, sink in ((read_cache, cache_s), (read_npy, npy_s)):
                started = time.perf_counter()
                fn()
                sink.append(time.perf_counter() - started)
        layout = _layout(path)
    ratios = [n / c for c, n in zip(cache_s, npy_s, strict=True)]
    return {
        "rows": rows,
        "dim": dim,
        "megabytes": round(rows * dim * 4 / 2**20, 1),
        "layout": layout,
        "write_seconds": round(write_seconds, 4),
        "cache_seconds": summary(cache_s),
        "npy_seconds": summary(npy_s),
        "cache_vs_npy": round(statistics.median(ratios), 4),
        "cache_vs_npy_runs": [round(r, 4) for r in ratios],
    }


def _layout(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as h5:
        dataset = h5["features"]
        return {
            "chunks": list(dataset.chunks) if dataset.chunks else None,
            "maxshape": [m for m in dataset.maxshape],
        }


_MEMORY_PROBE = r"""
import json, os, resource, sys, tempfile, time
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
spec, base_path, limit, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
source = open_source(spec, limit=limit)
base = load_base(base_path)
def peak_kib():
    # VmHWM is this process's own high-water mark; ru_maxrss can carry over the parent's
    # across fork + exec (Linux keeps it in the signal struct).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = peak_kib()
with tempfile.TemporaryDirectory() as tmp:
    result = extract(source, base, os.path.join(tmp, "m.h5"), progress=False,
                     batch_size=None if batch == "auto" else int(batch))
after = peak_kib()
print("BENCH-MEMORY " + json.dumps({"rows": result.rows, "seconds": result.seconds,
      "images_per_second": result.images_per_second,
      "maxrss_before_extract_kib": before, "maxrss_kib": after}))
"""


def bench_memory(
    sizes: Sequence[int] = (10_000, 60_000),
    *,
    spec: str = "fashion-mnist:train",
    base_path: str | Path | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Peak RSS of extracting ``sizes`` images, each in a fresh subprocess."""
    base_path = Path(base_path) if base_path else _fashion_base()
    if base_path is None or not base_path.exists():
        return {"skipped": f"the shipped Fashion-MNIST base {FASHION_BASE} is not here"}
    runs = {}
    for n in sizes:
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEMORY_PROBE,
                spec,
                str(base_path),
                str(n),
                "auto" if batch_size is None else str(batch_size),
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=False,
        )
        line = next(
            (x for x in completed.stdout.splitlines() if x.startswith("BENCH-MEMORY ")), None
        )
        if completed.returncode != 0 or line is None:
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"skipped": f"memory probe for {n} images failed: {' | '.join(tail)}"}
        data = json.loads(line.split(" ", 1)[1])
        data["peak_mib"] = round(data["maxrss_kib"] / 1024, 1)
        data["extraction_growth_mib"] = round(
            (data["maxrss_kib"] - data["maxrss_before_extract_kib"]) / 1024, 1
        )
        runs[str(n)] = data
    first, last = runs[str(sizes[0])], runs[str(sizes[-1])]
    return {
        "source": spec,
        "base": str(base_path),
        "runs": runs,
        "peak_ratio": round(last["maxrss_kib"] / first["maxrss_kib"], 4),
    }


def _fashion_base() -> Path | None:
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / FASHION_BASE).exists():
            return root / FASHION_BASE
    return None


# ----------------------------------------------------------------------------- one base


def _load_bench_base(name: str, image_size: int | None, weights: str, compute_dtype: str | None):
    from bottleneck_transfer.features.bases import hub, load_base
    from bottleneck_transfer.features.runtimes import with_compute_dtype

    if name == "fashion-mnist":
        path = _fashion_base()
        if path is None:
            raise FileNotFoundError(f"{FASHION_BASE} not found (run from the repository root)")
        base = load_base(path)
    elif Path(name).suffix in (".keras", ".h5"):
        base = load_base(name)  # a model file brings its own weights and size
    elif hub.hub_kind(name) == "saved_model":
        # Its own weights; it carries no preprocessing, and none times the same as any.
        base = load_base(name, image_size=image_size, preprocess="none")
    else:
        base = load_base(name, weights=weights, image_size=image_size)
    return with_compute_dtype(base, compute_dtype)


def bench_base(
    base: str = "mobilenet_v2",
    *,
    image_size: int | None = 224,
    weights: str = "none",
    source: str | Path | None = None,
    n_images: int = 512,
    batch_size: int | None = None,
    workers: int | None = None,
    repeats: int = 3,
    parts: Sequence[str] = DEFAULT_PARTS,
    compute_dtype: str | None = None,
    frozen_epochs: int = 2,
    head_rows: int | None = 10_000,
    work_dir: str | Path | None = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Benchmark one base on one source; see the module docstring for what is measured.

    Heads and the dense-head comparison use ``head_rows`` rows spread evenly over the cache.
    """
    from bottleneck_transfer.features.runtimes import (
        accelerator_devices,
        default_batch_size,
        with_compute_dtype,
    )

    _check_parts(parts)
    workers = workers or os.cpu_count() or 1
    accelerator = bool(accelerator_devices())
    log(f"loading base {base} ...")
    model_base = _load_bench_base(base, image_size, weights, compute_dtype)
    source, src = _bench_source(base, source, n_images, log)
    n = len(src)
    batch_size = batch_size or default_batch_size(model_base.image_size, n)
    log(f"decoding {n} images once to preload them ...")
    pixels = decode_source(src, model_base, workers, batch_size).astype(np.float32)
    timed_bf16 = "bfloat16" in parts and "extract" in parts and compute_dtype in (None, "float32")
    bench = _Bench(
        model_base,
        src,
        Path(str(source)) if Path(str(source)).is_dir() else None,
        tuple(parts),
        batch_size,
        workers,
        pixels,
        Path(tempfile.mkdtemp(prefix="bottleneck-bench-", dir=work_dir)),
        with_compute_dtype(model_base, "bfloat16") if timed_bf16 else None,
    )
    entry = bench.describe(base, source, repeats, accelerator)
    if src.arrays is not None and "decode" in parts:
        entry["decode_per_image_pillow"] = bench.pillow_rate()
    log("warming up ...")
    bench.warm_up()
    for round_ in range(repeats):
        log(f"round {round_ + 1}/{repeats} ...")
        bench.run_round(round_)
    entry.update(bench.summary(accelerator))
    entry["bottleneck"] = explain(entry)
    entry.update(bench.time_heads(frozen_epochs, head_rows, log))
    shutil.rmtree(bench.work, ignore_errors=True)
    return entry


def _check_parts(parts: Sequence[str]) -> None:
    """Refuse a part the bench does not know."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown bench parts {sorted(unknown)}; valid: {', '.join(PARTS)}")


def _bench_source(
    base: str, source: str | Path | None, n_images: int, log: Log
) -> tuple[str | Path, Any]:
    """The source as given (default: the base's own data or photo-like JPEGs) and its first
    ``n_images`` images opened."""
    from bottleneck_transfer.features.sources import open_source

    if source is None:
        if base == "fashion-mnist":
            source = "fashion-mnist:train"
        else:
            log(f"preparing {n_images} photo-like JPEGs ...")
            source = photo_folder(n_images)
    if str(source).startswith("fashion-mnist:") or not Path(str(source)).is_dir():
        return source, open_source(source, limit=n_images)
    src = open_source(source)
    if len(src) > n_images:
        src = open_source(source, limit=n_images)
    return source, src


#: The timed paths: each one's images per second and CPU milliseconds per image.
_TIMED = ("model", "decode", "extract", "peer", "predict_numpy", "model_bf16", "extract_bf16")


def _per_path() -> dict[str, list[float]]:
    return {k: [] for k in _TIMED}


@dataclass
class _Bench:
    """One base on one source: what the timed paths run on, and what each round measured.

    ``pixels`` are the source's preloaded float32 pixels (``model_pixels`` them in whole
    batches); ``folder`` the source's folder (None: the peer cannot run); ``work`` holds the
    caches, the first round's as :attr:`cache_path`; ``bf16`` is the base computing in
    bfloat16 (None: not timed).
    """

    base: Any
    source: Any
    folder: Path | None
    parts: tuple[str, ...]
    batch_size: int
    workers: int
    pixels: np.ndarray
    work: Path
    bf16: Any
    rates: dict[str, list[float]] = field(default_factory=_per_path)
    cpu_ms: dict[str, list[float]] = field(default_factory=_per_path)
    stages: list[dict] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    model: Any = field(init=False)
    model_pixels: np.ndarray = field(init=False)
    peer_ok: bool = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.base.model
        self.model_pixels = _full_batches(self.pixels, self.batch_size)
        self.peer_ok = "peer" in self.parts and self.folder is not None
        if "peer" in self.parts and self.folder is None:
            self.notes["peer"] = "needs a folder source (image_dataset_from_directory)"

    @property
    def cache_path(self) -> Path:
        return self.work / "bench.h5"

    def describe(self, base: str, source: Any, repeats: int, accelerator: bool) -> dict[str, Any]:
        """The entry's head: what was measured, on what, how."""
        model_base = self.base
        return {
            "base": base,
            "model": model_base.name,
            "image_size": list(model_base.image_size),
            "feature_dim": model_base.dim,
            "weights": model_base.description.get("weights"),
            "compute_dtype": model_base.description.get("compute_dtype", "float32"),
            "source": str(source),
            "source_kind": self.source.kind,
            "n_images": len(self.source),
            "batch_size": self.batch_size,
            "workers": self.workers,
            "repeats": repeats,
            "accelerator": accelerator,
        }

    def pillow_rate(self) -> float:
        """Images per second of decoding array images one by one through Pillow."""
        started = time.perf_counter()
        decode_source(self.source, self.base, self.workers, self.batch_size, per_image=True)
        return round(len(self.source) / (time.perf_counter() - started), 1)

    def extract(self, source: Any, base: Any, out: Path) -> None:
        """Extraction as the bench times it: to ``out``, overwriting, without progress."""
        from bottleneck_transfer.features.extract import extract

        extract(
            source,
            base,
            out,
            batch_size=self.batch_size,
            workers=self.workers,
            progress=False,
            force=True,
        )

    def peer(self, take: int | None = None) -> None:
        """The usual Keras recipe: ``image_dataset_from_directory`` + ``model.predict``."""
        dataset = _peer_dataset(self.folder, self.base, self.batch_size, take=take)
        self.model.predict(dataset, verbose=0)

    def warm_up(self) -> None:
        """Trace every compiled call once, outside the timed rounds."""
        batch = self.model_pixels[: self.batch_size]
        items = self.source.items[: min(len(self.source), self.batch_size)]
        first_batch = replace(self.source, items=items)
        self.model.predict_on_batch(batch)
        if "extract" in self.parts:
            self.extract(first_batch, self.base, self.work / "warm.h5")
        if self.peer_ok:
            try:
                self.peer(take=1)
            except Exception as exc:  # e.g. no TensorFlow for tf.data on this backend
                self.peer_ok = False
                self.notes["peer"] = f"{type(exc).__name__}: {exc}"
        if "predict_numpy" in self.parts:
            self.model.predict(
                self.pixels[: self.batch_size], batch_size=self.batch_size, verbose=0
            )
        if self.bf16 is not None:
            self.bf16.model.predict_on_batch(batch)
            self.extract(first_batch, self.bf16, self.work / "warm-bf16.h5")

    def timed(self, key: str, fn: Callable[[], Any], images: int) -> None:
        """Run ``fn`` and record its images per second and CPU milliseconds per image."""
        cpu, started = _cpu_seconds(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        self.rates[key].append(images / wall)
        self.cpu_ms[key].append(1000 * cpu / images)

    def run_round(self, round_: int) -> None:
        """One round of every timed path, in the same order each round."""
        n, model, model_pixels = len(self.source), self.model, self.model_pixels
        batch_size, parts = self.batch_size, self.parts
        if "model" in parts:
            self.timed(
                "model", lambda: _run_model(model, model_pixels, batch_size), len(model_pixels)
            )
        if "decode" in parts:
            self.timed(
                "decode", lambda: decode_source(self.source, self.base, self.workers, batch_size), n
            )
        if "extract" in parts:
            self._extract_round(round_)
        if self.peer_ok:
            self.timed("peer", self.peer, n)
        if "predict_numpy" in parts:
            self.timed(
                "predict_numpy",
                lambda: model.predict(self.pixels, batch_size=batch_size, verbose=0),
                n,
            )
        if self.bf16 is not None:
            self.timed(
                "model_bf16",
                lambda: _run_model(self.bf16.model, model_pixels, batch_size),
                len(model_pixels),
            )
            out = self.work / ("bf16.h5" if round_ == 0 else "bf16-again.h5")
            self.timed("extract_bf16", lambda: self.extract(self.source, self.bf16, out), n)

    def _extract_round(self, round_: int) -> None:
        """Time one extraction; keep its stages, and the first round's cache."""
        from bottleneck_transfer.features.cache import FeatureCache

        out = self.work / f"extract-{round_}.h5"
        self.timed("extract", lambda: self.extract(self.source, self.base, out), len(self.source))
        with FeatureCache.open(out) as cache:
            self.stages.append(cache.provenance.get("extraction", {}))
        if round_ == 0:
            os.replace(out, self.cache_path)
        else:
            out.unlink()

    def summary(self, accelerator: bool) -> dict[str, Any]:
        """The rounds' rates and CPU costs, the limit L and the ratios against it and the
        peer, the extraction stages and bfloat16 against float32."""
        rates, cpu_ms = self.rates, self.cpu_ms
        entry: dict[str, Any] = {
            "rates": {k: summary(v) for k, v in rates.items() if v},
            "cpu_ms_per_image": {k: summary(v) for k, v in cpu_ms.items() if v},
            "notes": self.notes,
        }
        if rates["model"] and rates["decode"]:
            limits = [
                limit_rate(m, d, accelerator)
                for m, d in zip(rates["model"], rates["decode"], strict=True)
            ]
            entry["limit"] = summary(limits)
            if rates["extract"]:
                entry["extract_vs_limit"] = _median_ratio(rates["extract"], limits)
                # CPU work of model + decode over CPU work of extract: < 1 means overhead or
                # contention waste; unlike wall time, load from other processes barely moves it.
                cpu_work = [m + d for m, d in zip(cpu_ms["model"], cpu_ms["decode"], strict=True)]
                entry["extract_cpu_efficiency"] = _median_ratio(cpu_work, cpu_ms["extract"])
        if rates["extract"] and rates["peer"]:
            entry["extract_vs_peer"] = _median_ratio(rates["extract"], rates["peer"])
        if self.stages:
            entry["extract_stages"] = _stage_summary(self.stages)
        if rates["extract_bf16"] and self.cache_path.exists():
            entry["bfloat16"] = _bfloat16_summary(rates, self.cache_path, self.work / "bf16.h5")
        return entry

    def time_heads(self, frozen_epochs: int, head_rows: int | None, log: Log) -> dict[str, Any]:
        """The parts timed on the first round's cache: heads, the four-head compare and the
        dense head against the frozen base."""
        timed: dict[str, Any] = {}
        cache_path, parts, n = self.cache_path, self.parts, len(self.source)
        if "heads" in parts and cache_path.exists():
            log("timing heads on the cache ...")
            timed["heads"] = bench_heads(cache_path, max_rows=head_rows)
        if "compare" in parts and cache_path.exists() and self.rates["extract"]:
            log("four-head compare on the cache (holdout and 5-fold) ...")
            timed["compare"] = bench_compare(
                cache_path, n / statistics.median(self.rates["extract"]), max_rows=head_rows
            )
        if "dense" in parts and cache_path.exists():
            log("dense head: from the cache vs frozen base in model.fit ...")
            labels = np.asarray([item.label for item in self.source.items], np.int32)
            timed["dense"] = bench_dense(
                cache_path,
                self.base,
                self.pixels,
                labels,
                frozen_epochs=frozen_epochs,
                max_rows=head_rows,
            )
        return timed


def _bfloat16_summary(rates: dict[str, list[float]], f32_cache: Path, bf16_cache: Path) -> dict:
    """bfloat16 compute against float32: speed, and how far the stored features moved."""
    from bottleneck_transfer.features.cache import FeatureCache

    with FeatureCache.open(f32_cache) as a, FeatureCache.open(bf16_cache) as b:
        exact, rounded = a.features.astype(np.float64), b.features.astype(np.float64)
    norms = np.maximum(np.linalg.norm(exact, axis=1), 1e-12)
    error = np.linalg.norm(rounded - exact, axis=1) / norms
    out = {
        "model": summary(rates["model_bf16"]),
        "extract": summary(rates["extract_bf16"]),
        "extract_vs_float32": _median_ratio(rates["extract_bf16"], rates["extract"]),
        "feature_relative_error": {
            "median": round(float(np.median(error)), 5),
            "max": round(float(error.max()), 5),
        },
    }
    if rates["model"]:  # the float32 model is timed only with the "model" part
        out["model_vs_float32"] = _median_ratio(rates["model_bf16"], rates["model"])
    if rates["peer"]:
        out["extract_vs_peer"] = _median_ratio(rates["extract_bf16"], rates["peer"])
    return out


def _median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    medians = statistics.median(numerators) / statistics.median(denominators)
    return {**summary(ratios), "of_medians": round(medians, 4)}


def _stage_summary(stages: list[dict]) -> dict[str, Any]:
    keys = sorted({k for s in stages for k in s.get("stage_seconds", {})})
    out = {
        k: round(statistics.median(s["stage_seconds"].get(k, 0.0) for s in stages), 4) for k in keys
    }
    out["loop_seconds"] = round(statistics.median(s.get("seconds", 0.0) for s in stages), 4)
    return out


def explain(entry: dict[str, Any]) -> str:
    """One or two sentences saying what limits extraction for this entry."""
    rates = entry.get("rates", {})
    if "model" not in rates or "decode" not in rates:
        return "not measured (needs the model and decode parts)"
    r_model, r_decode = rates["model"]["median"], rates["decode"]["median"]
    model_share = (1 / r_model) / (1 / r_model + 1 / r_decode)
    if entry.get("accelerator"):
        what = "the model" if r_model < r_decode else "decoding"
        words = (
            f"{what} limits extraction (R_model {r_model:.0f}/s, R_decode {r_decode:.0f}/s; "
            "with an accelerator they overlap, so L = the slower)"
        )
    elif model_share >= 0.5:
        words = (
            f"the model is the bottleneck: {model_share:.0%} of the limit's time is the forward "
            f"pass (R_model {r_model:.0f}/s vs R_decode {r_decode:.0f}/s on the same cores)"
        )
    else:
        words = (
            f"decoding is the bottleneck: {1 - model_share:.0%} of the limit's time is "
            f"decode + resize (R_decode {r_decode:.0f}/s vs R_model {r_model:.0f}/s)"
        )
    stages = entry.get("extract_stages", {})
    loop = stages.get("loop_seconds") or 0.0
    write = stages.get("write", 0.0)
    if loop and write / loop > 0.1:
        words += f"; cache writes take {write / loop:.0%} of the loop"
    elif loop:
        words += f"; cache writes take {write / loop:.1%} of the loop (not a bottleneck)"
    pillow = entry.get("decode_per_image_pillow")
    if pillow:
        words += (
            f"; these array images are already at the base's size, so extraction gathers "
            f"them without decoding (per-image Pillow decoding would run at {pillow:.0f}/s "
            f"and cap L at {limit_rate(r_model, pillow, bool(entry.get('accelerator'))):.0f}/s)"
        )
    ratio = entry.get("extract_vs_limit", {}).get("median")
    if ratio is not None:
        words += f"; extract runs at {ratio:.2f} × L"
        if ratio < 0.95:
            overhead = stages.get("other", 0.0) + stages.get("write", 0.0)
            words += f" (per-batch overhead outside the model and decoding: {overhead:.2f} s)"
    return words + "."


# ----------------------------------------------------------------------------- whole runs


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The design's performance targets, each with the measured ratio and whether it is met."""
    rows = [row for entry in report.get("results", []) for row in _base_targets(entry)]
    read = report.get("cache_read")
    if read and "cache_vs_npy" in read:
        rows += _target("cache read / np.load", read["cache_vs_npy"], 0.95)
    compare6k = report.get("compare6k", {})
    for kind, run in compare6k.get("runs", {}).items():
        if "seconds" in run:
            bounded = ", ".join(run["not_converged"]) or "none"
            rows += _target(
                f"compare --cv {compare6k['cv']}, four heads, 6,000 x 1,280 {kind} (s)",
                run["seconds"],
                compare6k["target_seconds"],
                f"CPU {run['cpu_seconds']:.0f} s; {run['ratio_to_fits']:.2f} x the sum of its "
                f"single fits ({run['sum_of_fits']:.0f} s); stopped at their bound: {bounded}",
                at_most=True,
            )
    memory = report.get("memory")
    if memory and "peak_ratio" in memory:
        sizes = list(memory["runs"])
        rows += _target(
            f"peak memory {sizes[0]} / {sizes[-1]} images",
            1 / memory["peak_ratio"],
            1 / 1.1,
            "within 10 % means >= 0.909",
        )
    return rows


def _target(
    name: str, value: float | None, goal: float, note: str = "", *, at_most: bool = False
) -> list[dict[str, Any]]:
    """A target's row, the measured ``value`` against its ``goal`` (none if not measured)."""
    if value is None:
        return []
    return [
        {
            "target": name,
            "value": round(value, 3),
            "goal": goal,
            "at_most": at_most,
            "met": bool(value <= goal if at_most else value >= goal),
            "note": note,
        }
    ]


def _base_targets(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of one base's entry: extraction against L, and for ResNet50 against the
    peer (also in bfloat16) and compare against extraction; the dense head's speedup (none
    for a skipped base)."""
    if "skipped" in entry:
        return []
    label = f"{entry['base']}@{entry['image_size'][0]}"
    rows = _target(f"extract / L ({label})", entry.get("extract_vs_limit", {}).get("median"), 0.95)
    if entry["base"] == "resnet50":
        rows += _target(
            f"extract / peer ({label})", entry.get("extract_vs_peer", {}).get("median"), 1.3
        )
        bf16 = entry.get("bfloat16", {})
        if "extract_vs_peer" in bf16:
            error = bf16["feature_relative_error"]
            rows += _target(
                f"extract --compute-dtype bfloat16 / peer ({label})",
                bf16["extract_vs_peer"]["median"],
                1.3,
                f"opt-in; features {100 * error['median']:.2f} % (median) from float32",
            )
        compare = entry.get("compare")
        if compare:
            rows += _target(
                f"four-head compare / extraction ({label}, {compare['rows']} images, holdout)",
                compare["holdout_vs_extract"],
                0.05,
                f"{compare['cv']}-fold CV fits each head {compare['cv']}×: "
                f"{compare['cv_vs_extract']:.3f}",
                at_most=True,
            )
    if "dense" in entry:
        dense = entry["dense"]
        reach = dense.get("images_for_100x")
        rows += _target(
            f"dense head: frozen fit / cache fit ({label}, {dense['rows']} images)",
            dense["speedup"],
            100,
            f"grows with N; {_reach(dense)}" if reach is not None else "",
        )
    return rows


def run_bench(
    base: str = "mobilenet_v2",
    *,
    suite: bool = False,
    parts: Sequence[str] | None = None,
    repeats: int = 3,
    image_size: int | None = 224,
    n_images: int = 512,
    source: str | Path | None = None,
    batch_size: int | None = None,
    log: Log = _quiet,
    **options: Any,
) -> dict[str, Any]:
    """Run one base's benchmark (or the README suite) and return the JSON-able report.

    ``options`` go to :func:`bench_base` (``weights``, ``workers``, ``compute_dtype``,
    ``frozen_epochs``, ``work_dir``). The suite uses its own bases, sizes, sources and
    default batch sizes.
    """
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": _machine(options.get("workers") or os.cpu_count() or 1)}
    report["results"] = []
    chosen = tuple(parts) if parts else (SUITE_PARTS if suite else DEFAULT_PARTS)
    _check_parts(chosen)
    per_base = tuple(p for p in chosen if p not in GLOBAL_PARTS)
    if suite:
        configs = [dict(c) for c in SUITE]
    else:
        model_file = Path(base).suffix in (".keras", ".h5") or base == "fashion-mnist"
        configs = [
            {
                "base": base,
                "image_size": None if model_file else image_size,
                "n_images": n_images,
                "source": source,
                "batch_size": batch_size,
            }
        ]
    for config in configs if per_base else []:
        try:
            entry = bench_base(
                config.pop("base"), repeats=repeats, parts=per_base, log=log, **config, **options
            )
        except FileNotFoundError as exc:
            entry = {"base": config.get("base"), "skipped": str(exc)}
        report["results"].append(entry)
    _run_global_parts(report, chosen, n_images, log)
    report["targets"] = targets(report)
    report["machine"]["load_average_end"] = _load()
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _run_global_parts(
    report: dict[str, Any], chosen: Sequence[str], n_images: int, log: Log
) -> None:
    """Run the chosen parts measured once per run (:data:`GLOBAL_PARTS`) into ``report``."""
    if "read" in chosen:
        log("cache read vs np.load ...")
        dims = [e["feature_dim"] for e in report["results"] if e.get("feature_dim")]
        report["cache_read"] = bench_cache_read(max(dims) if dims else 2048)
    if "dask" in chosen:
        from bottleneck_transfer.bench.cluster import bench_dask

        log("Dask engine: a 2-worker local cluster vs the local engine ...")
        report["dask"] = bench_dask(
            "mobilenet_v2",
            "fashion-mnist:test",
            n_images=n_images,
            base_options={"weights": "none", "image_size": 96},
        )
    if "memory" in chosen:
        log("peak memory: 10k vs 60k Fashion-MNIST images (subprocesses) ...")
        report["memory"] = bench_memory()
    if "compare6k" in chosen:
        from bottleneck_transfer.bench.compare6k import bench_compare_6k

        log("bottleneck compare --cv 5 on synthetic 6,000 x 1,280 caches (subprocesses) ...")
        report["compare6k"] = bench_compare_6k()
    if "views" in chosen:
        from bottleneck_transfer.bench.accuracy import bench_views

        log("accuracy with 0 and 8 augmented views on the Fashion-MNIST demo ...")
        report["views"] = bench_views(log=log)
    if "float16-heads" in chosen:
        from bottleneck_transfer.bench.accuracy import bench_float16_heads

        log("accuracy with float32 and float16 caches on the Fashion-MNIST demo ...")
        report["float16_heads"] = bench_float16_heads(log=log)
    if "statistics" in chosen:
        from bottleneck_transfer.bench.statistics import bench_statistics

        log("statistics on known truth: null rejections and coverage, before and after ...")
        report["statistics"] = bench_statistics()
    if "rank" in chosen:
        from bottleneck_transfer.bench.rank import bench_rank

        log("rank-bases on a 50-per-class sample vs the full linear probe (Fashion-MNIST 5-9) ...")
        report["rank"] = bench_rank()


# ----------------------------------------------------------------------------- text output


def _rate(entry: dict, key: str) -> str:
    stats = entry.get("rates", {}).get(key)
    if not stats or stats["median"] is None:
        return "–"
    return f"{stats['median']:.1f} ±{100 * (stats['spread'] or 0) / 2:.0f}%"


def format_table(report: dict[str, Any]) -> str:
    """The README table (Markdown) for a report, plus targets and the machine."""
    lines = [_machine_line(report["machine"])]
    if report["results"]:
        lines += [
            "",
            "| base | images | batch | R_model /s | R_decode /s | L /s | extract /s | extract/L "
            "| peer /s | extract/peer | predict(numpy) /s | dense cache vs frozen |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    lines += [_result_row(entry) for entry in report["results"]]
    lines.append("")
    for entry in report["results"]:
        lines += _result_notes(entry)
    lines += _run_notes(report)
    if report.get("targets"):
        lines += ["", "| target | measured | goal | met | note |", "|---|---|---|---|---|"]
        for row in report["targets"]:
            lines.append(
                f"| {row['target']} | {row['value']} | "
                f"{'≤' if row.get('at_most') else '≥'} {row['goal']:.3g} | "
                f"{'yes' if row['met'] else 'NO'} | {row['note']} |"
            )
    lines.append("")
    lines.append(f"Total {report['seconds']} s.")
    return "\n".join(lines)


def _machine_line(machine: dict[str, Any]) -> str:
    return (
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"accelerators: {', '.join(machine['accelerators']) or 'none'}; "
        f"keras {machine['software'].get('keras')} ({machine['backend']}); "
        f"load average {machine['load_average_start']} → {machine.get('load_average_end')}"
    )


def _result_row(entry: dict[str, Any]) -> str:
    """One base's row of the README table."""
    if "skipped" in entry:
        return f"| {entry['base']} | skipped: {entry['skipped']} |"
    limit = entry.get("limit", {}).get("median")
    dense = entry.get("dense", {})
    return (
        "| {base}@{size} | {n} | {bs} | {model} | {decode} | {limit} | {extract} | {vl} "
        "| {peer} | {vp} | {numpy} | {dense} |".format(
            base=entry["base"],
            size=entry["image_size"][0],
            n=entry["n_images"],
            bs=entry["batch_size"],
            model=_rate(entry, "model"),
            decode=_rate(entry, "decode"),
            limit=f"{limit:.1f}" if limit else "–",
            extract=_rate(entry, "extract"),
            vl=_ratio(entry.get("extract_vs_limit")),
            peer=_rate(entry, "peer"),
            vp=_ratio(entry.get("extract_vs_peer")),
            numpy=_rate(entry, "predict_numpy"),
            dense=_dense_cell(dense),
        )
    )


def _result_notes(entry: dict[str, Any]) -> list[str]:
    """What limits one base, and its heads, bfloat16 and compare timings, in words."""
    lines = []
    if "bottleneck" in entry:
        lines.append(f"- {entry['base']}: {entry['bottleneck']}")
    heads = entry.get("heads")
    if heads:
        timed = ", ".join(
            f"{k} {v['fit_seconds']:.2f} s"
            for k, v in heads.items()
            if isinstance(v, dict) and "fit_seconds" in v
        )
        lines.append(f"  heads fit on {entry['n_images']} rows: {timed}")
    bf16 = entry.get("bfloat16")
    if bf16:
        error = bf16["feature_relative_error"]
        peer = bf16.get("extract_vs_peer", {}).get("median")
        model = bf16.get("model_vs_float32", {}).get("median")
        lines.append(
            f"  bfloat16 compute: R_model {bf16['model']['median']:.1f}/s"
            + (f" ({model:.2f} × float32)" if model else "")
            + ", extract "
            f"{bf16['extract']['median']:.1f}/s ({bf16['extract_vs_float32']['median']:.2f} "
            "× float32" + (f", {peer:.2f} × peer" if peer else "") + "); features "
            f"{100 * error['median']:.2f} % from float32 (median; max "
            f"{100 * error['max']:.2f} %)"
        )
    compare = entry.get("compare")
    if compare:
        lines.append(
            f"  four-head compare on {compare['rows']} rows: holdout "
            f"{compare['holdout_seconds']:.2f} s, {compare['cv']}-fold "
            f"{compare['cv_seconds']:.2f} s, vs {compare['extract_seconds']:.1f} s to "
            f"extract them ({compare['holdout_vs_extract']:.3f} and "
            f"{compare['cv_vs_extract']:.3f})"
        )
    return lines


def _run_notes(report: dict[str, Any]) -> list[str]:
    """The parts measured once per run, in words and tables: cache read, peak memory,
    accuracy and statistics."""
    lines = []
    read = report.get("cache_read")
    if read:
        lines.append(
            f"- cache read: {read['megabytes']} MiB in {read['cache_seconds']['median']:.3f} s vs "
            f"np.load {read['npy_seconds']['median']:.3f} s → {read['cache_vs_npy']:.2f} × np.load"
        )
    memory = report.get("memory")
    if memory and "runs" in memory:
        peaks = ", ".join(f"{k} images {v['peak_mib']:.0f} MiB" for k, v in memory["runs"].items())
        lines.append(f"- peak RSS of extraction: {peaks} (ratio {memory['peak_ratio']:.3f})")
    elif memory:
        lines.append(f"- peak memory: {memory.get('skipped')}")
    if "views" in report or "float16_heads" in report:
        from bottleneck_transfer.bench.accuracy import format_accuracy

        lines += format_accuracy(report)
    if "statistics" in report:
        from bottleneck_transfer.bench.statistics import format_statistics

        lines += format_statistics(report["statistics"])
    return lines


def _dense_cell(dense: dict) -> str:
    if not dense:
        return "–"
    text = (
        f"{dense['from_cache_seconds']:.2f} s vs {dense['frozen_base_seconds']:.1f} s "
        f"({dense['speedup']:.0f}× on {dense['rows']}"
    )
    if dense.get("images_for_100x") is not None:
        text += f"; {_reach(dense)}"
    return text + ")"


def _reach(dense: dict) -> str:
    """Where the dense-head speedup reaches 100x, in words (never below the sizes timed)."""
    smallest = dense.get("quarter_rows", 0)
    if dense["images_for_100x"] <= smallest:
        return f"100× already at {smallest} images"
    return f"100× from about {dense['images_for_100x']} images"


def _ratio(stats: dict | None) -> str:
    if not stats:
        return "–"
    return f"{stats['median']:.2f} ({stats['min']:.2f}–{stats['max']:.2f})"
