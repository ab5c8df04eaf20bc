"""Shared fixtures: real photos in a class-folder tree, a corpus of bad images, Fashion-MNIST.

All images come from scikit-image's bundled sample data (no network). Fixtures that build
files are session-scoped and read-only by convention: a test that modifies files copies the
tree first (``shutil.copytree(photo_folder, tmp_path / "copy")``).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.features.store import CACHE_DIR_ENV
from PIL import Image
from sklearn.pipeline import Pipeline

data = pytest.importorskip("skimage.data")

#: Where ``apt-get install dataset-fashion-mnist`` puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _save(array: np.ndarray, path: Path, size: tuple[int, int] | None = None, **kwargs) -> Path:
    """Save a uint8/bool array as an image file, optionally resized to ``size`` = (w, h)."""
    image = Image.fromarray(array)
    if image.mode == "1":
        image = image.convert("L")
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=kwargs.pop("format", None), **kwargs)
    return path


#: The variables that size BLAS and OpenMP thread pools, in this process and in the
#: interpreters its tests start (CLI runs, Dask workers).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker's share of the cores for BLAS and OpenMP (one thread
    each when the workers fill the cores), unless the variables are set already.

    The workers already run in parallel; a BLAS pool per worker on top oversubscribes the
    cores, and OpenBLAS threads spin while they wait: on this 2-core machine under load a
    Nyström head on digits took 64 s with 2 threads, 7 s with one (the library limits its
    own fits likewise: ``heads.registry.single_threaded``).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not workers:
        return
    from threadpoolctl import threadpool_limits

    threads = max(1, (os.cpu_count() or 1) // workers)
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]))


#: Tests that take seconds each (measured: .ci/slow_tests.py writes the list): marked ``slow``.
SLOW_TESTS = Path(__file__).with_name("slow_tests.txt")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests of :data:`SLOW_TESTS` ``slow`` (before ``-m`` selects): the README's
    command leaves them out; CI runs them in its second step (``pytest -m slow``)."""
    listed = {
        line for line in SLOW_TESTS.read_text().splitlines() if line and not line.startswith("#")
    }
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def private_store(tmp_path_factory) -> Path:
    """The cache store of this test session (of each xdist worker): ``$BOTTLENECK_CACHE_DIR``
    points into its own temporary folder, so no test reads or fills the user's store or
    ``./caches``, and parallel workers never share one."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """A class-folder tree of real photos (scikit-image samples); returns the root.

    Layout (9 images in 3 classes; sizes vary; ``.JPG`` upper-case on purpose)::

        animals/chelsea.jpg            451x300 RGB JPEG
        animals/horse.png              400x328 grayscale PNG
        animals/wild/cat_small.JPG     120x80  RGB JPEG in a nested subfolder
        animals/.hidden.jpg            hidden: must be ignored
        objects/camera.png             256x256 grayscale PNG
        objects/coffee.jpg             300x200 RGB JPEG
        objects/coins.jpg              384x303 grayscale JPEG
        objects/rocket.png             320x214 RGB PNG
        objects/notes.txt              not an image: must be ignored
        people/astronaut.jpg           512x512 RGB JPEG
        people/astronaut_small.png     64x48   RGB PNG

    Class names sorted: ``["animals", "objects", "people"]``; no files in the root.
    """
    root = tmp_path_factory.mktemp("photos")
    _save(data.chelsea(), root / "animals" / "chelsea.jpg", quality=90)
    _save(data.horse().astype(np.uint8) * 255, root / "animals" / "horse.png")
    _save(data.chelsea(), root / "animals" / "wild" / "cat_small.JPG", (120, 80), format="JPEG")
    _save(data.chelsea(), root / "animals" / ".hidden.jpg", (32, 32))
    _save(data.camera(), root / "objects" / "camera.png", (256, 256))
    _save(data.coffee(), root / "objects" / "coffee.jpg", (300, 200), quality=90)
    _save(data.coins(), root / "objects" / "coins.jpg", quality=90)
    _save(data.rocket(), root / "objects" / "rocket.png", (320, 214))
    (root / "objects" / "notes.txt").write_text("not an image\n", encoding="utf-8")
    _save(data.astronaut(), root / "people" / "astronaut.jpg", quality=90)
    _save(data.astronaut(), root / "people" / "astronaut_small.png", (64, 48))
    return root


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 8-bit gray pixels; ~100 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def broken_images(tmp_path_factory) -> dict[str, Path]:
    """A corpus of bad or unusual image files, by name. Pixel contents are documented so
    tests can assert on decoded values (decode at the native size to avoid resampling).

    Bad (decoding must raise ``ImageError``):

    * ``missing``: a path that does not exist;
    * ``empty``: 0 bytes, ``.jpg``;
    * ``truncated_jpeg``: the first half of a real 512x512 JPEG;
    * ``not_an_image``: a text file named ``.jpg``;
    * ``decompression_bomb``: a ~100-byte PNG declaring 40000x40000 pixels;
    * ``unreadable``: a real JPEG with mode 000 (root can still read it: skip when root).

    Odd but valid (must decode):

    * ``cmyk_jpeg``: chelsea (451x300) as a CMYK JPEG; ``reference_rgb`` is the same photo
      as an RGB PNG;
    * ``palette_png``: 4x4 mode P, columns of red, green, blue, white;
    * ``palette_transparent_png``: as ``palette_png`` but palette index 0 (red) transparent;
    * ``gray16_png``: 4x1 mode I;16 with values ``[0, 32896, 65535, 255]``;
    * ``gray_png``: camera (512x512) mode L;
    * ``rgba_png``: 8x8 RGBA: left half opaque (10, 20, 30), top right fully transparent
      red, bottom right 50 % transparent black;
    * ``exif_rotated_jpeg``: coffee at 120x80 (w x h) stored with EXIF orientation 6 (shown
      rotated 90° clockwise, i.e. 80 wide and 120 high); ``exif_plain_jpeg`` is the same
      pixels without EXIF.
    """
    root = tmp_path_factory.mktemp("broken")
    files: dict[str, Path] = {"missing": root / "does-not-exist.jpg"}

    files["empty"] = root / "empty.jpg"
    files["empty"].write_bytes(b"")

    full = _save(data.astronaut(), root / "full.jpg", quality=90)
    raw = full.read_bytes()
    files["truncated_jpeg"] = root / "truncated.jpg"
    files["truncated_jpeg"].write_bytes(raw[: len(raw) // 2])

    files["not_an_image"] = root / "notes.jpg"
    files["not_an_image"].write_text("this is plain text, not a JPEG\n", encoding="utf-8")

    files["decompression_bomb"] = root / "bomb.png"
    files["decompression_bomb"].write_bytes(_bomb_png(40_000, 40_000))

    files["unreadable"] = root / "unreadable.jpg"
    files["unreadable"].write_bytes(raw)
    os.chmod(files["unreadable"], 0)

    files["reference_rgb"] = _save(data.chelsea(), root / "chelsea_rgb.png")
    files["cmyk_jpeg"] = root / "cmyk.jpg"
    Image.fromarray(data.chelsea()).convert("CMYK").save(files["cmyk_jpeg"], quality=95)

    palette = Image.new("P", (4, 4))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    palette.putdata([0, 1, 2, 3] * 4)
    files["palette_png"] = root / "palette.png"
    palette.save(files["palette_png"])
    files["palette_transparent_png"] = root / "palette_transparent.png"
    palette.save(files["palette_transparent_png"], transparency=0)

    files["gray16_png"] = root / "gray16.png"
    Image.fromarray(np.array([[0, 32896, 65535, 255]], dtype=np.uint16)).save(files["gray16_png"])

    files["gray_png"] = _save(data.camera(), root / "gray.png")

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (10, 20, 30, 255)
    rgba[:4, 4:] = (255, 0, 0, 0)
    rgba[4:, 4:] = (0, 0, 0, 128)
    files["rgba_png"] = _save(rgba, root / "rgba.png")

    coffee = Image.fromarray(data.coffee()).resize((120, 80), Image.Resampling.BILINEAR)
    files["exif_plain_jpeg"] = root / "plain.jpg"
    coffee.save(files["exif_plain_jpeg"], quality=95)
    exif = coffee.getexif()
    exif[0x0112] = 6
    files["exif_rotated_jpeg"] = root / "rotated.jpg"
    coffee.save(files["exif_rotated_jpeg"], quality=95, exif=exif)
    return files


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    """Tiny hub bases side by side, built once per session (worker): the ResNet and ViT
    KerasHub presets, a SavedModel and 12 images (``hub_fixtures.save_hub_root``). Read-only
    but for caches a test extracts beside them under a name of its own."""
    from hub_fixtures import save_hub_root

    return save_hub_root(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="session")
def fashion_mnist_available() -> Path:
    """The Fashion-MNIST folder (``BOTTLENECK_FASHION_MNIST_DIR`` or the apt location);
    skips the test when its four IDX files are not installed."""
    folder = Path(os.environ.get("BOTTLENECK_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    needed = [
        f"{split}-{kind}-idx{n}-ubyte.gz"
        for split in ("train", "t10k")
        for kind, n in (("images", 3), ("labels", 1))
    ]
    if not all((folder / name).is_file() for name in needed):
        pytest.skip(
            f"Fashion-MNIST is not installed at {folder} (apt-get install dataset-fashion-mnist)"
        )
    return folder


@pytest.fixture
def fits(monkeypatch) -> list[str]:
    """The class names of the heads fitted while the test runs (a calibrated head by its
    estimator's)."""
    from bottleneck_transfer.heads.registry import classifier

    fitted: list[str] = []
    original = Pipeline.fit

    def counting(self, X, y=None, **params):
        fitted.append(type(classifier(self)).__name__)
        return original(self, X, y, **params)

    monkeypatch.setattr(Pipeline, "fit", counting)
    return fitted


@pytest.fixture
def spy_extracted_parts(monkeypatch):
    """Call it to record, from then on, the ids of each part of a source that an update
    extracts (``extract(..., update=True)``); it returns the list it fills."""
    from bottleneck_transfer.features import update as update_module

    def start() -> list[list[str]]:
        parts: list[list[str]] = []
        real = update_module.dataclasses.replace

        def spy(source, **changes):
            if "items" in changes:  # a part of the source (replace has other callers)
                parts.append([item.id for item in changes["items"]])
            return real(source, **changes)

        monkeypatch.setattr(update_module.dataclasses, "replace", spy)
        return parts

    return start


@pytest.fixture
def ran_images(monkeypatch) -> list[int]:
    """Counts the images each extraction runs through the base (one entry per batch)."""
    from bottleneck_transfer.features import loop as loop_module

    counted: list[int] = []
    real = loop_module.iter_batches

    def counting(*args, **kwargs):
        for batch in real(*args, **kwargs):
            counted.append(len(batch.items))
            yield batch

    monkeypatch.setattr(loop_module, "iter_batches", counting)
    return counted
