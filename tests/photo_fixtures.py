"""Small photo folders written by tests (scikit-image's bundled photos)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from skimage import data


def write_photo_crops(root: Path, counts: dict[str, int], step: tuple[int, int]) -> Path:
    """Class folders ``root/photos/<split>/{cat,cup}`` of shifted 120 x 150 photo crops."""
    pictures = {"cat": data.chelsea(), "cup": data.coffee()}
    for split, count in counts.items():
        for name, photo in pictures.items():
            folder = root / "photos" / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                crop = photo[k * step[0] : k * step[0] + 120, k * step[1] : k * step[1] + 150]
                Image.fromarray(crop).save(folder / f"{k}.jpg")
    return root / "photos"
