"""scikit-learn's digits as a Lightning data module for training the digits zoo (the tensors: :mod:`lightning_featvis.digits_data`)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from lightning_featvis.digits_data import digits_split
from lightning_featvis.zoo.splits import HeldOutDataModule


class _TransformedDataset(Dataset):
    """Image/label pairs with a random transform applied to each ``[3, S, S]`` image on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


class DigitsDataModule(HeldOutDataModule):
    """scikit-learn's digits, upsampled to ``image_size`` and split into train/validation.

    Batches are ``(images [B, 3, S, S] float in [0, 1], labels [B] int64)``; the test set is
    the validation split (the dataset has no separate test set).

    Args:
        batch_size: images per batch.
        image_size: side ``S`` of the square images.
        val_fraction: share of each class held out for validation.
        split_seed: seed of the stratified split (see :func:`digits_split`).
        augment: randomly shift training images by up to 3/32 of their side (3 px at 32 px);
            digits are centred in their 8x8 box, so shifts teach the network position
            invariance the 1.4k training images cannot show it.
        num_workers: data-loader worker processes.
    """

    def __init__(
        self,
        batch_size: int = 64,
        image_size: int = 32,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        augment: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.augment = augment

    def setup(self, stage: str) -> None:
        split = digits_split(self.image_size, self.val_fraction, self.split_seed)
        if self.augment:
            # zero padding is the digits' own background, so a padded crop is a clean shift
            transform = v2.RandomCrop(self.image_size, padding=round(3 * self.image_size / 32))
            self.train_set = _TransformedDataset(split.train_images, split.train_labels, transform)
        else:
            self.train_set = TensorDataset(split.train_images, split.train_labels)
        self.val_set = TensorDataset(split.val_images, split.val_labels)
