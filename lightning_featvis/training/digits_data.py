"""scikit-learn's digits as a Lightning data module: 8x8 greyscale digits rendered as RGB images."""

from __future__ import annotations

from typing import NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

#: sklearn stores each pixel as an integer ink level in 0..16
_MAX_INK = 16.0


def load_digits_tensors(image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as images.

    Returns:
        ``images`` ``[N, 3, image_size, image_size]`` float32 in [0, 1] (the 8x8 digit
        upsampled bilinearly, grey replicated to RGB) and ``labels`` ``[N]`` int64 in 0..9.
    """
    digits = load_digits()
    pixels = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / _MAX_INK  # [N, 1, 8, 8]
    images = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    # bilinear upsampling stays within the input's range, clamp only guards rounding
    images = images.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()
    return images, torch.as_tensor(digits.target, dtype=torch.int64)


class DigitsSplit(NamedTuple):
    """A train/validation split: images ``[N, 3, S, S]`` in [0, 1], labels ``[N]`` int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor


def digits_split(image_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0) -> DigitsSplit:
    """The deterministic stratified split :class:`DigitsDataModule` trains and validates on.

    The same arguments always give the same held-out images, so benchmarks and tests can
    score a trained model on exactly the data it never saw.
    """
    images, labels = load_digits_tensors(image_size)
    train_idx, val_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=val_fraction,
        stratify=labels.numpy(),
        random_state=split_seed,
    )
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    return DigitsSplit(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx])


class _TransformedDataset(Dataset):
    """Image/label pairs with a random transform applied to each ``[3, S, S]`` image on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


class DigitsDataModule(L.LightningDataModule):
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
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.augment = augment
        self.num_workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str) -> None:
        split = digits_split(self.image_size, self.val_fraction, self.split_seed)
        if self.augment:
            # zero padding is the digits' own background, so a padded crop is a clean shift
            transform = v2.RandomCrop(self.image_size, padding=round(3 * self.image_size / 32))
            self.train_set = _TransformedDataset(split.train_images, split.train_labels, transform)
        else:
            self.train_set = TensorDataset(split.train_images, split.train_labels)
        self.val_set = TensorDataset(split.val_images, split.val_labels)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
