"""DataStatistics: what a recipe reads from real images (colour, typical pixel, detail side)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_featvis import FeatvisError
from lightning_featvis.data_statistics import (
    DataStatistics,
    data_statistics,
    sample_images,
)


def test_digits_are_grey_on_black_with_detail_at_their_own_8x8_grid():
    stats = data_statistics("digits:train", 32)
    assert not stats.colour
    assert stats.median[0] < 0.2  # near the black background
    assert 0.2 < stats.mean[0] < 0.4 and stats.mean[0] == stats.mean[1] == stats.mean[2]
    assert stats.detail_side == 8


def test_photos_have_colour_and_detail_down_to_the_pixel():
    stats = data_statistics("photos:train", 64)
    assert stats.colour
    assert stats.detail_side == 64
    assert stats.mean[0] > stats.mean[2]  # warmer than blue on average (skin, cat, coffee, flower)


def test_detail_side_is_the_grid_images_were_made_at():
    gen = torch.Generator().manual_seed(0)
    for made_at in (4, 8, 16):
        coarse = torch.rand(64, 1, made_at, made_at, generator=gen, dtype=torch.float64)
        # upsampled exactly (zero-padded spectrum): all the detail is the coarse grid's
        spectrum = torch.fft.fftshift(torch.fft.fft2(coarse), dim=(-2, -1))
        pad = (32 - made_at) // 2
        padded = F.pad(spectrum, (pad, pad, pad, pad))
        smooth = torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1))).real.expand(-1, 3, -1, -1)
        assert DataStatistics.of(smooth).detail_side == made_at
        # nearest upsampling adds the edges' detail: finer than the grid it came from
        blocky = F.interpolate(coarse, size=32, mode="nearest").expand(-1, 3, -1, -1)
        assert DataStatistics.of(blocky).detail_side > made_at
    assert DataStatistics.of(torch.rand(64, 3, 32, 32, generator=gen)).detail_side == 32


def test_sample_images_spreads_over_the_source_and_refuses_tiny_ones(tmp_path):
    images = sample_images("photos:val", 32, max_images=10)
    assert images.shape == (10, 3, 32, 32)
    # evenly spread: the 90 held-out crops are 9 per photo in class order, so 10 images reach
    # from the first photo's crops to the last's
    every = sample_images("photos:val", 32)
    assert torch.equal(images[0], every[0]) and torch.equal(images[-1], every[-1])
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(FeatvisError, match="needs at least 2"):
        sample_images(str(tmp_path), 8)
