"""Decode one image to uint8 pixels at a base's input size, or raise :class:`ImageError`.

Handles EXIF orientation, CMYK, palette, 16-bit, grayscale and RGBA images, and refuses
decompression bombs by their declared size before any pixel is decoded. JPEGs much larger
than the target are decoded at a reduced DCT scale (Pillow's ``draft``), which is several
times faster and loses nothing visible once the image is resized down. Animated and
multi-page files (GIF, WebP, APNG, TIFF) give their first frame.

Decoding memory is bounded across all threads by :data:`DECODE_BUDGET`: an image's pixels
are reserved (at the size it decodes to) before it is decoded and released once it is
resized, so a few small files declaring huge sizes cannot together exhaust memory.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import ImageError
from PIL import Image, ImageOps, UnidentifiedImageError

#: Images declaring more pixels than this are refused (``--max-pixels``).
DEFAULT_MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: How every file is decoded; extraction records it in the cache's provenance.
DECODING = {
    "frames": "first frame of animated or multi-page files (GIF, WebP, APNG, TIFF)",
    "orientation": "EXIF orientation applied",
    "transparency": "composited on white",
    "resize": "bilinear to the base's input size, aspect ratio not kept",
}
#: Pixels all decoding threads may hold at once (two images at the default --max-pixels).
DEFAULT_DECODE_BUDGET = 2 * DEFAULT_MAX_PIXELS

_ORIENTATION = 0x0112  # EXIF tag


class PixelBudget:
    """Pixels that decoders may hold at once, across threads (a counting semaphore).

    An image larger than the whole budget is decoded alone, once nothing else is held.
    ``peak`` is the most ever held at once.
    """

    def __init__(self, pixels: int) -> None:
        self.limit = int(pixels)
        self.held = 0
        self.peak = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until ``pixels`` fit in the budget, hold them for the block, release them."""
        with self._changed:
            self._changed.wait_for(lambda: self.held == 0 or self.held + pixels <= self.limit)
            self.held += pixels
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._changed:
                self.held -= pixels
                self._changed.notify_all()


#: The one budget all decoding threads share.
DECODE_BUDGET = PixelBudget(DEFAULT_DECODE_BUDGET)

# Pillow's own bomb check only warns below 2x its limit; ours runs on the declared size.
Image.MAX_IMAGE_PIXELS = None


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to ``RGB`` (channels=3) or ``L`` (channels=1)."""
    target = "RGB" if channels == 3 else "L"
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit samples: map the 16-bit range onto 8 bits, whatever the content (a dark
        # 16-bit image stays dark). Modes I/F do not say their range: values above 255 are
        # taken as 16-bit, otherwise as 8-bit data.
        array = np.asarray(image, dtype=np.float64)
        sixteen_bit = image.mode.startswith("I;16") or (array.size and array.max() > 255)
        scale = 1 / 257 if sixteen_bit else 1.0
        image = Image.fromarray(np.clip(np.rint(array * scale), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become white rather than whatever colour they hide.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image if image.mode == target else image.convert(target)


def decode_array(array: np.ndarray, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Resize an in-memory image array (H, W) or (H, W, C) to ``size`` = (height, width)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError(f"array images must be uint8; got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"array image has shape {array.shape}; expected (H, W) or (H, W, 3|4)")
    return _finish(Image.fromarray(array), size, channels)


def decode_file(
    path: str | Path | bytes,
    size: tuple[int, int],
    channels: int = 3,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file to a uint8 array of shape ``(height, width, channels)``.

    Parameters
    ----------
    path : str, Path or bytes
        Image file (JPEG, PNG, BMP, GIF, WebP, TIFF), or its bytes (a tar member, a table
        cell): the same code path.
    size : (int, int)
        Target ``(height, width)``; the image is resized without keeping its aspect ratio
        (bilinear, the ``keras.utils.load_img`` convention).
    channels : {1, 3}
        3 for RGB bases, 1 for grayscale bases.
    max_pixels : int
        Refuse images declaring more pixels than this (decompression bombs).

    Raises
    ------
    ImageError
        With the reason: missing, empty, not an image, truncated, too large, unreadable.
    """
    try:
        if (len(path) if isinstance(path, bytes) else os.path.getsize(path)) == 0:
            raise ImageError("empty file (0 bytes)")
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large: {width}x{height} = {width * height} pixels "
                    f"> limit {max_pixels} (possible decompression bomb; raise --max-pixels)"
                )
            if image.format == "JPEG":
                target_w, target_h = size[1], size[0]
                if image.getexif().get(_ORIENTATION) in (5, 6, 7, 8):
                    # Stored sideways: the target's axes swap before exif_transpose.
                    target_w, target_h = target_h, target_w
                if width >= 2 * target_w and height >= 2 * target_h:
                    image.draft(image.mode, (2 * target_w, 2 * target_h))
            with DECODE_BUDGET.hold(image.size[0] * image.size[1]):
                image.load()  # the first frame: Image.open leaves a multi-frame file there
                image = ImageOps.exif_transpose(image)
                return _finish(image, size, channels)
    except FileNotFoundError as exc:
        raise ImageError("file not found") from exc
    except IsADirectoryError as exc:
        raise ImageError("is a directory, not an image") from exc
    except PermissionError as exc:
        raise ImageError("permission denied") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (Pillow cannot identify it)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"unreadable image: {exc}") from exc


def _finish(image: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    image = _to_mode(image, channels)
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array
