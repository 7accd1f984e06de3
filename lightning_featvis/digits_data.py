"""scikit-learn's digits as tensors: what the digits zoo trains on, what the digits prior and the
MACO digits spectrum are fitted to, and the ``digits:N`` photos (8x8 greyscale digits rendered
as RGB images)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

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
