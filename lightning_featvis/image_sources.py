"""Image datasets to stream through a model for dataset examples and to fit data priors to: the
bundled digits or photo crops, a folder of images, or a Hugging Face ``datasets`` dataset.

:func:`image_source` reads a source specification and gives a dataset of
``(image [3, S, S] in [0, 1], index)`` pairs, each image centre-cropped to a square and resized
to the model's side S (antialiased), grey or RGBA converted to RGB:

- ``digits``: scikit-learn's 1797 digits (32x32, grey as RGB, as the digits models see them);
  ``digits:train`` / ``digits:val``: the zoo's training or held-out split;
- ``photos``: crops of the ten bundled colour photos the photo zoo is trained on
  (:mod:`lightning_featvis.photos_data`); ``photos:train``: 2000 random crops of the photos'
  training regions (seed 0), ``photos:val``: the 90 held-out crops; ``photos``: both, training
  crops first;
- a folder: torchvision's ``ImageFolder`` layout (one subfolder per class) or a flat folder of
  image files, in sorted order;
- ``hf:NAME`` or ``hf:NAME:SPLIT`` (default split ``train``): a dataset from the hub (or its
  cache) with ``datasets.load_dataset``; or a local directory written by
  ``Dataset.save_to_disk``. The image column is the first of type ``Image``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from lightning_featvis.errors import FeatvisError

#: file name endings read as images in a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def square(image: Image.Image | torch.Tensor, size: int) -> torch.Tensor:
    """``image`` (a PIL image, or a tensor ``[3, H, W]`` in [0, 1]) centre-cropped to a square and
    resized to ``size``: ``[3, size, size]`` float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        image = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    side = min(image.shape[-2:])
    top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
    crop = image[:, top:top + side, left:left + side]
    if side != size:
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return crop.clamp(0, 1)


class _Indexed(Dataset):
    """``(image, index)`` pairs from a reader of the index (picklable: DataLoader workers and
    spawned ranks get a copy)."""

    def __init__(self, count: int, read: Callable[[int], Image.Image | torch.Tensor], size: int, name: str) -> None:
        self.count, self.read, self.size, self.name = count, read, size, name

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return square(self.read(index), self.size), index


class _ImageFiles:
    """Reads the i-th of ``files`` as an RGB image."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __call__(self, index: int) -> Image.Image:
        try:
            with Image.open(self.files[index]) as image:
                return image.convert("RGB")
        except OSError as err:
            raise FeatvisError(f"cannot read image {self.files[index]}: {err}") from err


class _Column:
    """Reads the i-th row's ``column`` of a Hugging Face dataset."""

    def __init__(self, data, column: str) -> None:
        self.data, self.column = data, column

    def __call__(self, index: int) -> Image.Image:
        return self.data[index][self.column]


def _digits(split: str | None, size: int) -> Dataset:
    from lightning_featvis.digits_data import digits_split, load_digits_tensors

    if split is None:
        images, _ = load_digits_tensors(size)
    elif split in ("train", "val"):
        parts = digits_split(size)
        images = parts.train_images if split == "train" else parts.val_images
    else:
        raise FeatvisError(f"digits has the splits train and val (or none: all 1797), not {split!r}")
    return _Indexed(len(images), images.__getitem__, size, f"digits{':' + split if split else ''}")


#: how many random training crops ``photos:train`` holds
PHOTO_TRAIN_CROPS = 2000


def _photos(split: str | None, size: int) -> Dataset:
    from lightning_featvis.photos_data import photo_split, train_crops

    if split not in (None, "train", "val"):
        raise FeatvisError(f"photos has the splits train and val (or none: both), not {split!r}")
    parts = []
    if split in (None, "train"):
        parts.append(train_crops(PHOTO_TRAIN_CROPS, seed=0)[0])
    if split in (None, "val"):
        parts.append(photo_split().val_images)
    images = torch.cat(parts)
    return _Indexed(len(images), images.__getitem__, size, f"photos{':' + split if split else ''}")


def _folder(folder: Path, size: int) -> Dataset:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FeatvisError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder} or its subfolders")

    dataset = _Indexed(len(files), _ImageFiles(files), size, str(folder))
    dataset.files = files  # which file each index is (ImageFolder's order: class folders sorted)
    return dataset


def _huggingface(spec: str, size: int) -> Dataset:
    try:
        import datasets
    except ImportError as err:
        raise FeatvisError("Hugging Face datasets need the datasets package: pip install datasets") from err
    local = Path(spec).expanduser()
    if local.is_dir():
        data = datasets.load_from_disk(str(local))
        if isinstance(data, datasets.DatasetDict):
            data = data["train"] if "train" in data else next(iter(data.values()))
    else:
        name, _, split = spec.removeprefix("hf:").partition(":")
        try:
            data = datasets.load_dataset(name, split=split or "train")
        except Exception as err:
            raise FeatvisError(f"cannot load the Hugging Face dataset {name!r} (split {split or 'train'!r}): "
                               f"{type(err).__name__}: {str(err)[:200]}; offline, save it with "
                               "Dataset.save_to_disk on a connected machine and pass that directory") from err
    columns = [name for name, feature in data.features.items() if isinstance(feature, datasets.Image)]
    if not columns:
        raise FeatvisError(f"the dataset {spec!r} has no image column (features: {', '.join(data.features)})")
    return _Indexed(len(data), _Column(data, columns[0]), size, spec)


def image_source(spec: str, size: int) -> Dataset:
    """The dataset ``spec`` names (see the module), its images at ``size``: items are
    ``(image [3, size, size] in [0, 1], index)``."""
    if spec == "digits" or spec.startswith("digits:"):
        return _digits(spec.partition(":")[2] or None, size)
    if spec == "photos" or spec.startswith("photos:"):
        return _photos(spec.partition(":")[2] or None, size)
    if spec.startswith("hf:"):
        return _huggingface(spec, size)
    path = Path(spec).expanduser()
    if path.is_dir():
        is_saved_dataset = (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
        return _huggingface(str(path), size) if is_saved_dataset else _folder(path, size)
    raise FeatvisError(f"image source {spec!r}: give digits (or digits:train / digits:val), photos (or "
                       "photos:train / photos:val), a folder of images, "
                       "hf:NAME[:SPLIT], or a directory written by datasets' save_to_disk")
