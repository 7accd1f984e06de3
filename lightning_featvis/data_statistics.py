"""What a recipe can read from real images: a sample of an image source, whether it has colour,
its mean colour and the side at which it has its detail (:class:`DataStatistics`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.image_sources import image_source


def sample_images(source: str, size: int, max_images: int = 2000) -> torch.Tensor:
    """At most ``max_images`` images of the image source ``source``
    (:func:`~lightning_featvis.image_sources.image_source`), evenly spread over it, at ``size``
    px: ``[N, 3, size, size]`` in [0, 1]."""
    dataset = image_source(source, size)
    count = len(dataset)
    if count < 2:
        raise FeatvisError(f"the image source {source!r} has {count} image(s); fitting to data needs at least 2")
    indices = torch.linspace(0, count - 1, min(count, max_images)).round().long().unique()
    return torch.stack([dataset[int(i)][0] for i in indices])


#: the share of an image's variation (power off the mean) that must lie below the Nyquist
#: frequency of the side the data "has its detail at"
DETAIL_SHARE = 0.97


@dataclass(frozen=True)
class DataStatistics:
    """A summary of real images at a model's input side.

    Attributes:
        colour: whether the images have colour (grey data is stored as three equal channels).
        mean: the mean of each channel ``(r, g, b)`` in [0, 1].
        median: the median of each channel ``(r, g, b)``: the typical pixel (0.17 for the
            digits, near their black background).
        detail_side: the smallest side ``s / 2^k`` (k >= 0) whose grid still carries
            :data:`DETAIL_SHARE` of the images' variation (power off each image's mean): 8 for
            the digits (8x8 digits upsampled to 32 px: 98.2% of their variation is at
            frequencies an 8 px grid holds, 91% for 4 px), the full 64 for the bundled photos'
            crops (96.3% at 32 px).
    """

    colour: bool
    mean: tuple[float, float, float]
    median: tuple[float, float, float]
    detail_side: int

    @classmethod
    def of(cls, images: torch.Tensor) -> DataStatistics:
        """The statistics of images ``[N, 3, S, S]`` in [0, 1]."""
        images = images.to(torch.float64)
        colour = bool((images - images.mean(dim=1, keepdim=True)).abs().max() > 1e-3)
        mean = tuple(float(m) for m in images.mean(dim=(0, 2, 3)))
        median = tuple(float(m) for m in images.transpose(0, 1).flatten(1).median(dim=1).values)
        side = images.shape[-1]
        power = torch.fft.fft2(images - images.mean(dim=(-2, -1), keepdim=True)).abs().square().mean(dim=(0, 1))
        freq = torch.fft.fftfreq(side, dtype=torch.float64).abs()
        band = torch.maximum(freq[:, None], freq[None, :])  # the coarser grid keeps |f| < its Nyquist
        total = power.sum().clamp_min(1e-12)
        detail = side
        while detail % 2 == 0 and detail > 1:
            coarser = detail // 2
            if power[band <= 0.5 * coarser / side].sum() / total < DETAIL_SHARE:
                break
            detail = coarser
        return cls(colour=colour, mean=mean, median=median, detail_side=detail)


@lru_cache(maxsize=16)
def data_statistics(source: str, size: int, max_images: int = 2000) -> DataStatistics:
    """:class:`DataStatistics` of the image source ``source`` at ``size`` px (once per process)."""
    return DataStatistics.of(sample_images(source, size, max_images))
