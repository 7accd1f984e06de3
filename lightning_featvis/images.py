"""Reading photos: target images for reconstruction and starting images for deep dream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from lightning_featvis.errors import FeatvisError

#: photos bundled with scikit-learn, usable by name without a file
SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")


def load_photo(path: str | None = None, size: int | None = None) -> torch.Tensor:
    """A photo as ``[1, 3, S, S]`` float32 in [0, 1]: centre-cropped to a square, resized to
    ``size`` (antialiased) when given.

    Args:
        path: an image file, or one of :data:`SAMPLE_PHOTOS` (scikit-learn's bundled photos);
            ``None`` gives ``china.jpg``.
    """
    name = path or SAMPLE_PHOTOS[0]
    if name in SAMPLE_PHOTOS and not Path(name).exists():
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(name)
    else:
        file = Path(name).expanduser()
        if not file.is_file():
            raise FeatvisError(f"image file not found: {file} (or use a bundled photo: {', '.join(SAMPLE_PHOTOS)})")
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise FeatvisError(f"cannot read image {file}: {err}") from err
    photo = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    h, w = photo.shape[-2:]
    side = min(h, w)
    photo = photo[..., (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    if size is not None and size != side:
        photo = F.interpolate(photo, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return photo.clamp(0, 1)
