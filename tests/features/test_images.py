"""Tests for ``features.images``: decoding real photos and every kind of bad input."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import BottleneckError, ImageError
from bottleneck_transfer.features import decode as images
from bottleneck_transfer.features.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    decode_array,
    decode_file,
)
from PIL import Image, ImageFile, JpegImagePlugin

data = pytest.importorskip("skimage.data")


def _photos(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _pillow(path: Path, mode: str = "RGB", size: tuple[int, int] | None = None) -> np.ndarray:
    """Reference decode with plain Pillow; ``size`` is (height, width)."""
    with Image.open(path) as image:
        image = image.convert(mode)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture
def draft_calls(monkeypatch) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Record (requested size, size after draft) of every JPEG ``draft`` call."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size, *args, **kwargs):
        result = original(self, mode, size, *args, **kwargs)
        calls.append((tuple(size), self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


# --- real photos ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_every_photo_decodes_to_uint8_at_target_size(photo_folder, channels):
    photos = _photos(photo_folder)
    assert len(photos) == 9
    for path in photos:
        out = decode_file(path, (37, 53), channels)
        assert out.shape == (37, 53, channels), path
        assert out.dtype == np.uint8
        assert out.std() > 5, f"{path} decoded to a flat image"


def test_accepts_str_and_path(photo_folder):
    path = photo_folder / "objects" / "coffee.jpg"
    np.testing.assert_array_equal(decode_file(str(path), (20, 30)), decode_file(path, (20, 30)))


def test_native_size_is_pillows_decode(photo_folder):
    path = photo_folder / "objects" / "rocket.png"  # 320x214 RGB
    np.testing.assert_array_equal(decode_file(path, (214, 320)), _pillow(path))
    np.testing.assert_array_equal(decode_file(path, (214, 320), 1)[:, :, 0], _pillow(path, "L"))


def test_size_is_height_width_and_resize_is_bilinear(photo_folder):
    path = photo_folder / "objects" / "rocket.png"
    out = decode_file(path, (50, 90))
    assert out.shape == (50, 90, 3)
    np.testing.assert_array_equal(out, _pillow(path, size=(50, 90)))


def test_uppercase_extension_and_nested_file(photo_folder):
    path = photo_folder / "animals" / "wild" / "cat_small.JPG"
    out = decode_file(path, (80, 120))
    np.testing.assert_array_equal(out, _pillow(path))


def test_grayscale_photo_as_rgb_repeats_the_gray_channel(broken_images):
    path = broken_images["gray_png"]
    gray = _pillow(path, "L")
    rgb = decode_file(path, gray.shape)
    assert rgb.shape == (*gray.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], gray)
    np.testing.assert_array_equal(decode_file(path, gray.shape, 1)[:, :, 0], gray)


def test_color_photo_as_one_channel_is_luma(photo_folder):
    path = photo_folder / "people" / "astronaut.jpg"
    out = decode_file(path, (512, 512), 1)
    assert out.shape == (512, 512, 1)
    np.testing.assert_array_equal(out[:, :, 0], _pillow(path, "L"))


# --- odd but valid modes -------------------------------------------------------------------


def test_exif_rotated_jpeg_comes_out_upright(broken_images):
    rotated = broken_images["exif_rotated_jpeg"]  # stored 120x80 (w x h), orientation 6
    with Image.open(rotated) as image:
        assert image.size == (120, 80)
        assert image.getexif()[0x0112] == 6
        manual = np.asarray(image.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    out = decode_file(rotated, (120, 80))
    assert out.shape == (120, 80, 3)  # displayed 80 wide, 120 high
    np.testing.assert_array_equal(out, manual)
    plain = decode_file(broken_images["exif_plain_jpeg"], (80, 120))
    np.testing.assert_array_equal(out, np.rot90(plain, k=-1))  # 90° clockwise


def test_cmyk_jpeg_converts_to_the_right_colours(broken_images):
    reference = _pillow(broken_images["reference_rgb"])  # 451x300 RGB
    with Image.open(broken_images["cmyk_jpeg"]) as image:
        assert image.mode == "CMYK"
    out = decode_file(broken_images["cmyk_jpeg"], reference.shape[:2])
    assert out.shape == reference.shape and out.dtype == np.uint8
    assert _mad(out, reference) < 3  # JPEG loss only; inverted CMYK would be ~100


def test_palette_png(broken_images):
    with Image.open(broken_images["palette_png"]) as image:
        assert image.mode == "P"
    out = decode_file(broken_images["palette_png"], (4, 4))
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
    for row in out:
        np.testing.assert_array_equal(row, expected)


def test_palette_png_with_transparency_turns_transparent_white(broken_images):
    with Image.open(broken_images["palette_transparent_png"]) as image:
        assert image.mode == "P" and "transparency" in image.info
    out = decode_file(broken_images["palette_transparent_png"], (4, 4))
    expected = [[255, 255, 255], [0, 255, 0], [0, 0, 255], [255, 255, 255]]  # red was index 0
    for row in out:
        np.testing.assert_array_equal(row, expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_grayscale_maps_full_range_to_8_bits(broken_images, channels):
    with Image.open(broken_images["gray16_png"]) as image:
        assert image.mode.startswith("I")
        assert np.asarray(image).max() == 65535
    out = decode_file(broken_images["gray16_png"], (1, 4), channels)
    assert out.shape == (1, 4, channels) and out.dtype == np.uint8
    # [0, 32896, 65535, 255] / 257: a dark 16-bit pixel (255 of 65535) must stay dark.
    for channel in range(channels):
        np.testing.assert_array_equal(out[0, :, channel], [0, 128, 255, 1])


def test_16bit_image_that_is_all_dark_stays_dark(tmp_path):
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((3, 3), 200, np.uint16)).save(path)
    assert decode_file(path, (3, 3), 1).max() == 1  # 200/257, not 200


def test_rgba_transparent_areas_become_white(broken_images):
    out = decode_file(broken_images["rgba_png"], (8, 8))
    np.testing.assert_array_equal(out[:, :4].reshape(-1, 3), np.tile([10, 20, 30], (32, 1)))
    np.testing.assert_array_equal(out[:4, 4:].reshape(-1, 3), np.full((16, 3), 255))
    half = out[4:, 4:].astype(int)  # 50 % black over white
    assert np.all(np.abs(half - 127) <= 1)
    gray = decode_file(broken_images["rgba_png"], (8, 8), 1)
    assert gray.shape == (8, 8, 1)
    assert gray[0, 0, 0] == 18  # luma of (10, 20, 30)
    assert gray[0, 7, 0] == 255


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing", ["not found"]),
        ("empty", ["empty"]),
        ("not_an_image", ["not an image"]),
        ("truncated_jpeg", ["truncated"]),
        ("decompression_bomb", ["too large", "decompression", "40000x40000"]),
    ],
)
def test_bad_file_raises_image_error_with_reason(broken_images, name, words):
    with pytest.raises(ImageError) as info:
        decode_file(broken_images[name], (32, 32))
    message = str(info.value).lower()
    for word in words:
        assert word in message, f"{name}: {message!r} lacks {word!r}"
    assert isinstance(info.value, BottleneckError)


def test_unreadable_file_raises_image_error(broken_images):
    # chmod 000 does not stop root (CAP_DAC_OVERRIDE): skip where the file is still readable.
    try:
        broken_images["unreadable"].open("rb").close()
    except PermissionError:
        pass
    else:
        pytest.skip("a mode-000 file is still readable here (running as root)")
    with pytest.raises(ImageError, match=r"(?i)permission denied|unreadable"):
        decode_file(broken_images["unreadable"], (32, 32))


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        decode_file(tmp_path, (32, 32))


def test_truncated_png_raises_image_error(tmp_path, photo_folder):
    raw = (photo_folder / "objects" / "rocket.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ImageError):
        decode_file(path, (32, 32))


def test_bomb_is_refused_before_any_pixel_is_decoded(broken_images, monkeypatch):
    def no_load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    with pytest.raises(ImageError, match="too large"):
        decode_file(broken_images["decompression_bomb"], (32, 32))


def test_max_pixels_is_honoured(photo_folder):
    path = photo_folder / "people" / "astronaut.jpg"  # 512x512
    assert DEFAULT_MAX_PIXELS >= 512 * 512
    assert decode_file(path, (8, 8), max_pixels=512 * 512).shape == (8, 8, 3)
    with pytest.raises(ImageError, match=r"512x512 = 262144 pixels > limit 262143"):
        decode_file(path, (8, 8), max_pixels=512 * 512 - 1)


# --- JPEG draft (reduced DCT scale) -------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpegs(tmp_path_factory) -> dict[str, Path]:
    """A 2048x2048 JPEG, and a 2048x512 one stored sideways (EXIF orientation 6)."""
    root = tmp_path_factory.mktemp("big")
    astronaut = Image.fromarray(data.astronaut())
    square = root / "square.jpg"
    astronaut.resize((2048, 2048), Image.Resampling.BICUBIC).save(square, quality=90)
    sideways = astronaut.resize((2048, 512), Image.Resampling.BICUBIC)
    exif = sideways.getexif()
    exif[0x0112] = 6
    rotated = root / "rotated.jpg"
    sideways.save(rotated, quality=90, exif=exif)
    return {"square": square, "rotated": rotated}


def test_draft_decode_is_close_to_full_decode_and_resize(big_jpegs, draft_calls):
    out = decode_file(big_jpegs["square"], (64, 64))
    assert draft_calls, "a 2048x2048 JPEG decoded to 64x64 should use the JPEG draft path"
    (requested, drafted) = draft_calls[0]
    assert requested == (128, 128)
    assert drafted[0] < 2048 and min(drafted) >= 128
    full = _pillow(big_jpegs["square"], size=(64, 64))
    assert out.shape == full.shape == (64, 64, 3)
    assert _mad(out, full) < 1.5


def test_no_draft_when_target_is_not_much_smaller(big_jpegs, draft_calls):
    out = decode_file(big_jpegs["square"], (1500, 1500))
    assert out.shape == (1500, 1500, 3)
    assert not draft_calls


def test_draft_respects_exif_rotation(big_jpegs, draft_calls):
    # Displayed 512 wide x 2048 high; target 50 high x 200 wide. The draft must keep at
    # least the target size in the *displayed* orientation (no upsampling afterwards).
    out = decode_file(big_jpegs["rotated"], (50, 200))
    assert out.shape == (50, 200, 3)
    for _requested, (stored_w, stored_h) in draft_calls:
        assert stored_h >= 200 and stored_w >= 50  # displayed width, height
    with Image.open(big_jpegs["rotated"]) as image:
        upright = image.convert("RGB").transpose(Image.Transpose.ROTATE_270)
        full = np.asarray(upright.resize((200, 50), Image.Resampling.BILINEAR))
    assert _mad(out, full) < 0.5


# --- decode_array --------------------------------------------------------------------------


def test_decode_array_gray_2d_and_single_channel():
    gray = data.camera()[:100, :120]
    out = decode_array(gray, (100, 120))
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)
    np.testing.assert_array_equal(decode_array(gray[:, :, None], (100, 120)), out)
    one = decode_array(gray, (100, 120), 1)
    assert one.shape == (100, 120, 1)
    np.testing.assert_array_equal(one[:, :, 0], gray)


def test_decode_array_rgb_native_size_is_identity_and_resize_matches_file(tmp_path):
    rgb = np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128x128
    np.testing.assert_array_equal(decode_array(rgb, (128, 128)), rgb)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(decode_array(rgb, (30, 40)), decode_file(path, (30, 40)))
    assert decode_array(rgb, (30, 40), 1).shape == (30, 40, 1)


def test_decode_array_rgba_transparent_becomes_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 40
    rgba[:2, :, 3] = 255
    out = decode_array(rgba, (4, 4))
    assert out.shape == (4, 4, 3)
    assert (out[:2] == 40).all() and (out[2:] == 255).all()


def test_decode_array_accepts_non_contiguous_views():
    rgb = data.astronaut()
    view = rgb[::-3, ::2]  # negative and non-unit strides
    out = decode_array(view, view.shape[:2])
    np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((8, 8), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint16), "uint8"),
        (np.zeros((8, 8), bool), "uint8"),
        (np.zeros((8, 8, 2), np.uint8), "shape"),
        (np.zeros((8, 8, 5), np.uint8), "shape"),
        (np.zeros(64, np.uint8), "shape"),
        (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
    ],
    ids=["float32", "uint16", "bool", "2-channels", "5-channels", "1-d", "4-d"],
)
def test_decode_array_validates_dtype_and_shape(array, words):
    with pytest.raises(ImageError, match=words):
        decode_array(array, (4, 4))


@pytest.mark.parametrize(("suffix", "options"), [(".gif", {"duration": 50}), (".tiff", {})])
def test_animated_and_multi_page_files_give_their_first_frame(tmp_path, suffix, options):
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    path = tmp_path / f"frames{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    with Image.open(path) as image:
        assert image.n_frames == 2
    np.testing.assert_array_equal(decode_file(path, (6, 6)), np.asarray(frames[0]))
    assert "first frame" in images.DECODING["frames"]


def test_decoding_threads_share_one_pixel_budget(tmp_path, monkeypatch):
    # Four files of 1200 x 1000 px: four threads may hold only 2.5 of them at once.
    paths = []
    for k in range(4):
        paths.append(tmp_path / f"{k}.png")
        Image.new("L", (1200, 1000), 40 * k).save(paths[-1])
    budget = images.PixelBudget(2_500_000)
    monkeypatch.setattr(images, "DECODE_BUDGET", budget)
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda p: decode_file(p, (4, 4), 1), paths))
    assert [int(d[0, 0, 0]) for d in decoded] == [0, 40, 80, 120]
    assert budget.peak == 2_400_000 and budget.held == 0


def test_an_image_larger_than_the_budget_is_decoded_alone():
    budget = images.PixelBudget(100)
    order = []

    def decode_big():
        with budget.hold(500):
            order.append(budget.held)

    with budget.hold(60):
        worker = threading.Thread(target=decode_big)
        worker.start()
        worker.join(0.2)
        assert order == [] and worker.is_alive()  # waits while 60 px are held
    worker.join(5)
    assert order == [500] and budget.held == 0
