"""Ten natural colour photos that ship in pip packages, as a classification task: what the photo
zoo trains on, what a photo data prior is fitted to, and the ``photos`` image source.

The classes, in this order (0-9), are the photos themselves: scikit-image's astronaut, chelsea,
coffee, rocket, motorcycle_left, hubble_deep_field, retina and ihc, then scikit-learn's
china.jpg and flower.jpg. Every photo is resized to a short side of 128 px (antialiased). Its
right-most 64 columns are held out; the rest is where training crops come from. The held-out
crops are fixed 64x64 windows of that strip, one every 8 rows (9 per photo, 90 in all), so a
model's held-out accuracy is measured on pixels it never trained on.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lightning_featvis.errors import FeatvisError

#: (package, folder inside it, file) of each class's photo, in class order
PHOTO_FILES = (
    ("skimage", "data", "astronaut.png"),
    ("skimage", "data", "chelsea.png"),
    ("skimage", "data", "coffee.png"),
    ("skimage", "data", "rocket.jpg"),
    ("skimage", "data", "motorcycle_left.png"),
    ("skimage", "data", "hubble_deep_field.jpg"),
    ("skimage", "data", "retina.jpg"),
    ("skimage", "data", "ihc.png"),
    ("sklearn", "datasets/images", "china.jpg"),
    ("sklearn", "datasets/images", "flower.jpg"),
)
#: class names, index = class
PHOTO_CLASSES = tuple(name.split(".")[0] for _, _, name in PHOTO_FILES)
#: every photo's short side after resizing
SHORT_SIDE = 128
#: the side of the crops the photo models see
CROP = 64
#: the right-most columns of every photo that training never sees
HELD_OUT_WIDTH = 64
#: rows between two held-out crops
HELD_OUT_STRIDE = 8


def _read(package: str, folder: str, name: str) -> Image.Image:
    try:
        path = resources.files(package).joinpath(*folder.split("/"), name)
        with Image.open(str(path)) as image:
            return image.convert("RGB")
    except (ModuleNotFoundError, OSError) as err:
        pip_name = {"skimage": "scikit-image", "sklearn": "scikit-learn"}[package]
        raise FeatvisError(f"cannot read the bundled photo {name} of {pip_name} ({err}); "
                           f"pip install {pip_name} (the photo zoo's photos ship inside it)") from err


@lru_cache(maxsize=1)
def load_photos(short_side: int = SHORT_SIDE) -> tuple[torch.Tensor, ...]:
    """The ten photos, each ``[3, H, W]`` float32 in [0, 1] with ``min(H, W) == short_side``
    (antialiased bilinear resize), in class order. Cached: every caller gets the same tensors,
    so treat them as read-only."""
    photos = []
    for package, folder, name in PHOTO_FILES:
        image = _read(package, folder, name)
        scale = short_side / min(image.size)
        size = (round(image.size[0] * scale), round(image.size[1] * scale))
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        photo = F.interpolate(pixels[None], size=(size[1], size[0]), mode="bilinear", antialias=True,
                              align_corners=False)[0]
        photos.append(photo.clamp(0, 1).contiguous())
    return tuple(photos)


class PhotoSplit(NamedTuple):
    """The task's split: per photo, its training region ``[3, H, W - 64]``; the held-out crops
    ``[N, 3, 64, 64]`` and their labels ``[N]`` int64."""

    train_regions: tuple[torch.Tensor, ...]
    val_images: torch.Tensor
    val_labels: torch.Tensor


def photo_split() -> PhotoSplit:
    """The fixed split every photo model trains and is judged on (see the module)."""
    regions, crops, labels = [], [], []
    for label, photo in enumerate(load_photos()):
        width = photo.shape[-1]
        regions.append(photo[:, :, : width - HELD_OUT_WIDTH])
        strip = photo[:, :, width - HELD_OUT_WIDTH:]
        for top in range(0, strip.shape[-2] - CROP + 1, HELD_OUT_STRIDE):
            crops.append(strip[:, top : top + CROP])  # the strip is one crop wide
            labels.append(label)
    return PhotoSplit(tuple(regions), torch.stack(crops), torch.tensor(labels, dtype=torch.int64))


def train_crops(count: int, seed: int = 0, size: int = CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random crops of the training regions (the same photo for every ``i % 10``),
    reproducible from ``seed``: images ``[count, 3, size, size]`` and labels ``[count]``.
    What a data prior of the photos and the benchmarks' class means are fitted to."""
    gen = torch.Generator().manual_seed(seed)
    regions = photo_split().train_regions
    images, labels = [], []
    for i in range(count):
        label = i % len(regions)
        region = regions[label]
        top = int(torch.randint(region.shape[-2] - CROP + 1, (1,), generator=gen))
        left = int(torch.randint(region.shape[-1] - CROP + 1, (1,), generator=gen))
        images.append(region[:, top : top + CROP, left : left + CROP])
        labels.append(label)
    images = torch.stack(images)
    if size != CROP:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return images.clamp(0, 1), torch.tensor(labels, dtype=torch.int64)
