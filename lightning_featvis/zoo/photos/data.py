"""The photo task as a Lightning data module for training the photo zoo (the tensors:
:mod:`lightning_featvis.photos_data`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from lightning_featvis.photos_data import CROP, photo_split
from lightning_featvis.zoo.splits import HeldOutDataModule


class _RandomCrops(Dataset):
    """``length`` random training crops ``([3, 64, 64], label)``: item i is a crop of photo
    ``i % 10``'s training region, zoomed, flipped and colour-jittered at random (torch's global RNG, so
    the Trainer's seed fixes the stream)."""

    def __init__(self, regions: tuple[torch.Tensor, ...], length: int, colour_jitter: float,
                 zoom: float) -> None:
        self.regions, self.length = regions, length
        self.zoom = zoom
        steps = [v2.RandomHorizontalFlip()]
        if colour_jitter > 0:
            steps.append(v2.ColorJitter(brightness=colour_jitter, contrast=colour_jitter,
                                        saturation=colour_jitter, hue=colour_jitter / 5))
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return self.length

    def crop(self, region: torch.Tensor) -> torch.Tensor:
        """A random square of ``region`` ``[3, H, W]`` whose side is 64 px times a factor
        log-uniform in ``[1/zoom, zoom]`` (at most the region's), resized to ``[3, 64, 64]``."""
        log_zoom = math.log(self.zoom)
        side = round(CROP * math.exp((torch.rand(()).item() * 2 - 1) * log_zoom))
        side = min(side, *region.shape[-2:])
        top = int(torch.randint(region.shape[-2] - side + 1, ()))
        left = int(torch.randint(region.shape[-1] - side + 1, ()))
        square = region[None, :, top : top + side, left : left + side]
        if side == CROP:
            return square[0]
        return F.interpolate(square, size=(CROP, CROP), mode="bilinear", antialias=True, align_corners=False)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index % len(self.regions)
        return self.transform(self.crop(self.regions[label])).clamp(0, 1), label


class PhotoCropsDataModule(HeldOutDataModule):
    """64x64 crops of the ten photos: random crops of each photo's training region for training,
    the fixed held-out crops for validation (and test).

    Batches are ``(images [B, 3, 64, 64] float in [0, 1], labels [B] int64)``.

    Args:
        batch_size: images per batch.
        crops_per_epoch: random training crops per epoch (an equal share per photo).
        colour_jitter: brightness, contrast and saturation jitter (hue: a fifth of it); 0: off.
        zoom: each crop is a random square of the training region whose side is 64 px times a
            factor log-uniform in ``[1/zoom, zoom]``, resized to 64 px; 1: plain 64x64 crops.
        num_workers: data-loader worker processes.
    """

    def __init__(self, batch_size: int = 64, crops_per_epoch: int = 2560, colour_jitter: float = 0.1,
                 zoom: float = 1.0, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.crops_per_epoch, self.colour_jitter, self.zoom = crops_per_epoch, colour_jitter, zoom

    def setup(self, stage: str) -> None:
        split = photo_split()
        self.train_set = _RandomCrops(split.train_regions, self.crops_per_epoch, self.colour_jitter, self.zoom)
        self.val_set = TensorDataset(split.val_images, split.val_labels)
