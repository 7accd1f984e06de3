"""DataImage: a canvas shaped by the model's training data (grey or colour, detail side, start)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from lightning_featvis import DataImage, FeatvisError
from lightning_featvis.data_statistics import data_statistics
from lightning_featvis.models import AnyModule
from lightning_featvis.zoo.digits import DigitsViT
from lightning_featvis.zoo.photos import PhotosViT


def bound(network, seeds=(0, 1), **kwargs) -> DataImage:
    param = DataImage(**kwargs)
    param.bind(network)
    param.allocate(len(seeds), network.image_size)
    param.reset_(list(seeds), network.image_size)
    return param


def test_on_the_digits_a_grey_canvas_at_their_8x8_grid_starting_near_black():
    param = bound(DigitsViT(pretrained=False))
    assert param.canvas.shape == (2, 1, 8, 8) and param.downsample == 4 and param.distinct_channels == 1
    image = param()
    assert image.shape == (2, 3, 32, 32)
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 0], image[:, 2])
    median = data_statistics("digits:train", 32).median[0]
    assert abs(image.mean().item() - median) < 0.02
    assert not torch.allclose(image[0], image[1])  # each canvas from its own seed
    assert torch.equal(image, bound(DigitsViT(pretrained=False))())


def test_on_the_photos_a_colour_canvas_at_full_resolution_starting_at_the_typical_colour():
    param = bound(PhotosViT(pretrained=False))
    assert param.canvas.shape == (2, 3, 64, 64) and param.downsample == 1 and param.distinct_channels == 3
    image = param()
    median = torch.tensor(data_statistics("photos:train", 64).median)
    torch.testing.assert_close(image.mean(dim=(0, 2, 3)), median, atol=0.02, rtol=0)
    # the gradient reaches the stored values of every channel
    (image[:, 0].sum() - image[:, 2].sum()).backward()
    assert param.canvas.grad.abs().sum(dim=(0, 2, 3)).min() > 0


@pytest.mark.parametrize("network", [DigitsViT(pretrained=False), PhotosViT(pretrained=False)], ids=["grey", "colour"])
def test_edits_are_stored_exactly_within_what_the_canvas_can_show(network):
    param = bound(network)
    before = param().detach().clone()
    param.update_(lambda x: x)
    torch.testing.assert_close(param(), before)
    if network.image_size == 64:  # full resolution, colour: any colour edit is kept exactly
        blurred = gaussian_blur(before, [5, 5], [1.5, 1.5])
        param.update_(lambda x: gaussian_blur(x, [5, 5], [1.5, 1.5]))
        torch.testing.assert_close(param(), blurred, atol=1e-5, rtol=1e-5)
    else:  # a uniform brightening is kept exactly on the 8x8 grey grid
        param.update_(lambda x: x + 0.1)
        torch.testing.assert_close(param(), before + 0.1, atol=1e-5, rtol=1e-5)


def test_a_model_without_training_data_needs_a_source():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(FeatvisError, match="declares no training data"):
        DataImage().bind(AnyModule(module, image_size=32))
    assert bound(AnyModule(module, image_size=32), data="photos:val").distinct_channels == 3
    assert bound(AnyModule(module, image_size=32, training_data="digits")).distinct_channels == 1
