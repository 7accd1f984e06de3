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
#: ``digits:<i>`` names sample i of scikit-learn's digits as the digits models see it
DIGITS_PREFIX = "digits:"


def load_photo(path: str | None = None, size: int | None = None) -> torch.Tensor:
    """A photo as ``[1, 3, S, S]`` float32 in [0, 1]: centre-cropped to a square, resized to
    ``size`` (antialiased) when given.

    Args:
        path: an image file, one of :data:`SAMPLE_PHOTOS` (scikit-learn's bundled photos), or
            ``digits:<i>`` (sample i of scikit-learn's 1797 digits, 32x32 grey as RGB, the input
            of the embedded digits models); ``None`` gives ``china.jpg``.
    """
    name = path or SAMPLE_PHOTOS[0]
    if name.startswith(DIGITS_PREFIX) and not Path(name).exists():
        photo = _load_digit(name)
    elif name in SAMPLE_PHOTOS and not Path(name).exists():
        from sklearn.datasets import load_sample_image

        photo = _as_tensor(load_sample_image(name))
    else:
        file = Path(name).expanduser()
        if file.is_dir():
            raise FeatvisError(f"{file} is a directory, not an image file: give the path of one image "
                               f"(or a bundled photo: {', '.join(SAMPLE_PHOTOS)}, or digits:<i>)")
        if not file.is_file():
            raise FeatvisError(f"image file not found: {file} (or use a bundled photo: {', '.join(SAMPLE_PHOTOS)}, or digits:<i>)")
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise FeatvisError(f"cannot read image {file}: {err}") from err
        photo = _as_tensor(pixels)
    h, w = photo.shape[-2:]
    side = min(h, w)
    photo = photo[..., (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    if size is not None and size != side:
        photo = F.interpolate(photo, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return photo.clamp(0, 1)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 pixels as ``[1, 3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _load_digit(name: str) -> torch.Tensor:
    from lightning_featvis.digits_data import load_digits_tensors

    images, _ = load_digits_tensors()
    index = name[len(DIGITS_PREFIX) :]
    if not index.isdigit() or int(index) >= len(images):
        raise FeatvisError(f"{name!r}: digits samples are digits:0 to digits:{len(images) - 1}")
    return images[int(index)].unsqueeze(0)
