"""The image parameterizations: shapes, determinism, gradients, resizing and re-encoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params import (
    DecorrelatedImage,
    FourierImage,
    GrayscaleImage,
    MacoImage,
    PixelImage,
)
from lightning_featvis.params.color import (
    decorrelated_to_rgb,
    rgb_to_decorrelated,
    squash,
    unsquash,
)
from lightning_featvis.params.fourier import radial_frequency
from lightning_featvis.params.maco import load_magnitude

G, MAX, S = 2, 48, 32
PARAMS = {
    "fourier": FourierImage,
    "decorrelated": DecorrelatedImage,
    "grayscale": GrayscaleImage,
    "maco": MacoImage,
}
EXACT = ["fourier", "decorrelated", "grayscale"]  # update_ re-encodes exactly (MACO projects)


def make(name: str, seeds=(0, 1), size: int = S, **kwargs):
    param = PARAMS[name](**kwargs)
    param.allocate(G, MAX)
    param.reset_(list(seeds), size)
    return param


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def blur(x: torch.Tensor) -> torch.Tensor:
    return gaussian_blur(x, [5, 5], [1.5, 1.5])


@pytest.mark.parametrize("name", PARAMS)
def test_forward_shape_range_and_seeds(name):
    param = make(name)
    image = param()
    assert image.shape == (G, 3, S, S) and param.size == S
    assert torch.isfinite(image).all()
    if name == "grayscale":
        assert abs(image.mean().item() - 0.7) < 0.02
        torch.testing.assert_close(image[:, 1], image[:, 0])
        torch.testing.assert_close(image[:, 2], image[:, 0])
    else:
        assert image.min() > 0 and image.max() < 1
    assert not torch.allclose(image[0], image[1])
    again = make(name, seeds=(0, 5))
    torch.testing.assert_close(again()[0], image[0])
    assert not torch.allclose(again()[1], image[1])


@pytest.mark.parametrize("name", PARAMS)
def test_padding_slot(name):
    image = make(name, seeds=(3, None))()
    assert torch.isfinite(image).all()
    if name in ("fourier", "decorrelated"):
        assert torch.allclose(image[1], torch.full_like(image[1], 0.5))  # grey
    if name == "grayscale":
        assert torch.allclose(image[1], torch.full_like(image[1], 0.7))


@pytest.mark.parametrize("name", PARAMS)
def test_gradient_reaches_parameter(name):
    param = make(name)
    (stored,) = list(param.parameters())
    param().sum().backward()
    grad = stored.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    # and both canvases get one
    assert (grad[0].abs().sum() > 0) and (grad[1].abs().sum() > 0)


@pytest.mark.parametrize("name", PARAMS)
def test_resize_keeps_content_and_parameter(name):
    param = make(name)
    before = list(param.parameters())
    small = param().detach().clone()
    param.resize_(MAX)
    large = param().detach().clone()
    assert large.shape == (G, 3, MAX, MAX) and param.size == MAX
    back = F.interpolate(large, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    # resampling twice loses the finest detail (white-noise pixels most): compare by
    # correlation per canvas, which is ~0 between unrelated canvases
    for i in range(G):
        assert correlation(back[i], small[i]) > 0.8
    assert abs(correlation(back[0], small[1])) < 0.3
    param.reset_([4, 5], S)
    after = list(param.parameters())
    assert len(before) == len(after) == 1 and after[0] is before[0]


@pytest.mark.parametrize("name", PARAMS)
def test_identity_update(name):
    param = make(name)
    before = param().detach().clone()
    param.update_(lambda x: x)
    after = param().detach().clone()
    if name == "maco":
        # phase-only projection: the first/Nyquist columns of the half-spectrum are symmetrised
        assert correlation(before, after) > 0.9
    else:
        torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", EXACT)
def test_blur_update_is_exact(name):
    param = make(name)
    before = list(param.parameters())
    old = param().detach().clone()
    param.update_(blur)
    expected = blur(old.clone())
    assert not torch.allclose(expected, old, atol=1e-4)  # the blur really changes something
    torch.testing.assert_close(param().detach(), expected, atol=1e-4, rtol=0)
    assert next(iter(param.parameters())) is before[0]


def test_blur_update_on_grown_canvas():
    # after a resize, update_ must still write the whole new region (and nothing stale remains)
    param = make("fourier")
    param.resize_(MAX)
    old = param().detach().clone()
    param.update_(blur)
    torch.testing.assert_close(param().detach(), blur(old.clone()), atol=1e-4, rtol=0)


def test_color_inverse_roundtrip():
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(decorrelated_to_rgb(rgb_to_decorrelated(x)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_decorrelated(decorrelated_to_rgb(x)), x, atol=1e-5, rtol=0)
    assert not torch.allclose(decorrelated_to_rgb(x), x, atol=1e-2)  # it is not the identity
    y = torch.rand(2, 3, 4, 4) * 0.98 + 0.01
    torch.testing.assert_close(squash(unsquash(y)), y, atol=1e-6, rtol=0)
    assert torch.isfinite(unsquash(torch.tensor([0.0, 1.0]))).all()


def radial_power(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power of ``image`` ``[..., S, S]`` below and above a quarter of the Nyquist rate."""
    power = torch.fft.rfft2(image - image.mean(dim=(-2, -1), keepdim=True)).abs().square()
    f = radial_frequency(image.shape[-1])
    low, high = (f > 0) & (f < 0.125), f > 0.25
    return power[..., low].mean(), power[..., high].mean()


def test_fourier_puts_energy_in_low_frequencies():
    param = make("fourier", decorrelate=False)
    pre = unsquash(param().detach())
    low, high = radial_power(pre)
    white = torch.randn(G, 3, S, S, generator=torch.Generator().manual_seed(0))
    white_low, white_high = radial_power(white)
    assert low / high > 10 * (white_low / white_high)
    # and decay_power=0 is white noise: the scaling is what does it
    flat_low, flat_high = radial_power(unsquash(make("fourier", decorrelate=False, decay_power=0.0)().detach()))
    assert flat_low / flat_high < 2


def test_fourier_contrast_independent_of_size():
    small = unsquash(make("fourier", size=16)().detach()).std()
    large = unsquash(make("fourier", size=MAX)().detach()).std()
    assert 0.5 < (large / small).item() < 2


def test_maco_magnitude_fixed_under_phase_changes():
    param = make("maco")
    magnitude = param.magnitude(S)
    inner = slice(1, S // 2)  # columns irfft2 does not symmetrise
    for seeds in ([0, 1], [7, 8]):
        param.reset_(seeds, S)
        spectrum = torch.fft.rfft2(param.raw().detach())
        torch.testing.assert_close(spectrum.abs()[..., inner], magnitude.expand_as(spectrum)[..., inner], rtol=1e-3, atol=1e-3)
    # after standardisation and sigmoid: still proportional to the fixed magnitude
    rendered = torch.fft.rfft2(unsquash(param().detach())).abs()[..., inner]
    ratio = rendered / magnitude[..., inner]
    assert (ratio.std(dim=(1, 2, 3)) / ratio.mean(dim=(1, 2, 3)) < 1e-2).all()
    # and the rendered image itself has visible contrast
    image = param()
    assert 0.1 < image.std().item() < 0.4


def test_maco_digits_magnitude():
    param = MacoImage(magnitude="digits")
    param.allocate(G, MAX)
    param.reset_([0, 1], S)
    magnitude = param.magnitude(S)
    assert magnitude.shape == (3, S, S // 2 + 1)
    assert magnitude[:, 0, 0].min() > magnitude[:, S // 2, S // 4].max()  # DC dominates
    image = param()
    assert image.shape == (G, 3, S, S) and torch.isfinite(image).all()


def test_maco_magnitude_of_any_image_source():
    from lightning_featvis.data_statistics import sample_images

    magnitude = load_magnitude("photos:val", 64)
    expected = torch.fft.rfft2(sample_images("photos:val", 64)).abs().mean(dim=0)
    torch.testing.assert_close(magnitude, expected)
    # colour photos: the channels' spectra differ (the digits' three are one)
    assert not torch.allclose(magnitude[0], magnitude[2])
    digits = load_magnitude("digits", 32)
    torch.testing.assert_close(digits[0], digits[2])
    with pytest.raises(FeatvisError, match="neither a file saved with torch.save nor an image source"):
        load_magnitude("no/such/folder", 32)


def test_maco_magnitude_from_file(tmp_path):
    saved = torch.rand(3, 16, 9) + 0.1
    path = tmp_path / "magnitude.pt"
    torch.save(saved, path)
    param = MacoImage(magnitude=str(path))
    param.allocate(G, MAX)
    param.reset_([0, 1], 16)
    torch.testing.assert_close(param.magnitude(16), saved)
    assert param.magnitude(S).shape == (3, S, S // 2 + 1)
    param.resize_(S)
    assert param().shape == (G, 3, S, S)


def test_maco_phase_initialisation_range():
    param = make("maco")
    region = param.phase[:, :, :S, : S // 2 + 1]
    assert region.min() >= -math.pi and region.max() < math.pi
    assert region.std() > 1.5  # uniform on [-pi, pi) has std ~1.81


def test_grayscale_keeps_raw_values():
    # no clamp in forward: out-of-range pixels must still get a gradient (the objective
    # clamps only the saved output)
    param = GrayscaleImage(mean=1.5, std=0.01)
    param.allocate(G, MAX)
    param.reset_([0, 1], S)
    image = param()
    assert image.min() > 1.4
    image.sum().backward()
    grad = param.canvas.grad
    # three channels share one pixel
    torch.testing.assert_close(grad[:, :, :S, :S], torch.full_like(grad[:, :, :S, :S], 3.0), atol=1e-6, rtol=0)
    # outside the active region: no gradient
    assert grad[:, :, S:, :].abs().max() <= 1e-6 * grad[:, :, :S, :S].abs().max()


def test_maco_default_magnitude_is_one_over_f():
    param = make("maco")
    expected = 1.0 / radial_frequency(S).clamp(min=1.0 / S)
    torch.testing.assert_close(param.magnitude(S), expected.expand(3, -1, -1))
    low, high = radial_power(unsquash(param().detach()))
    white_low, white_high = radial_power(torch.randn(G, 3, S, S, generator=torch.Generator().manual_seed(0)))
    assert low / high > 10 * (white_low / white_high)


@pytest.mark.parametrize("name", [*PARAMS, "pixel"])
def test_a_saved_state_loads_into_a_module_that_never_ran_setup(name):
    """What ddp_spawn's parent process and a resumed run do: the storage adopts the saved shape."""
    cls = PixelImage if name == "pixel" else PARAMS[name]
    source = cls()
    source.allocate(G, MAX)
    source.reset_([0, 1], S)
    fresh = cls()
    fresh.load_state_dict(source.state_dict())
    assert fresh.size == MAX  # the saved storage is whole: its active size is unknown, the maximum
    (saved,), (loaded,) = source.parameters(), fresh.parameters()
    torch.testing.assert_close(loaded, saved)


@pytest.mark.parametrize("cls", [PixelImage, GrayscaleImage, DecorrelatedImage])
def test_a_downsampled_canvas_is_its_stored_grid_upsampled_bilinearly(cls):
    param = cls(downsample=4)
    param.allocate(G, MAX)
    param.reset_([0, 1], S)
    stored = param.region()
    assert stored.shape[-2:] == (S // 4, S // 4) and param.size == S
    image = param()
    assert image.shape == (G, 3, S, S)
    # the digits' own recipe: 8x8 upsampled bilinearly (align_corners=False) to 32x32
    up = F.interpolate(stored.detach(), size=(S, S), mode="bilinear", align_corners=False)
    if cls is DecorrelatedImage:
        up = squash(decorrelated_to_rgb(up))
    torch.testing.assert_close(image.detach(), up.expand(-1, 3, -1, -1))
    image.sum().backward()
    assert param.canvas.grad is not None and param.canvas.grad[:, :, : S // 4, : S // 4].abs().sum() > 0


@pytest.mark.parametrize("cls", [PixelImage, GrayscaleImage])
def test_a_downsampled_canvas_keeps_edits_that_change_nothing_and_takes_uniform_ones(cls):
    param = cls(downsample=4)
    param.allocate(G, MAX)
    param.reset_([0, 1], S)
    before = param().detach().clone()
    stored = param.region().detach().clone()
    param.update_(lambda x: x)
    torch.testing.assert_close(param.region(), stored)
    param.update_(lambda x: x.add_(0.25))  # in place, as the blur callback may edit
    torch.testing.assert_close(param(), before + 0.25)


def test_a_downsampled_canvas_grows_and_refuses_sides_it_cannot_store():
    param = GrayscaleImage(downsample=4)
    param.allocate(G, MAX)
    param.reset_([0, 1], S)
    param.resize_(MAX)
    assert param.size == MAX and param.region().shape[-1] == MAX // 4 and param().shape[-1] == MAX
    with pytest.raises(FeatvisError, match="not a multiple of downsample=4"):
        param.reset_([0, 1], 30)
    with pytest.raises(FeatvisError, match="downsample must be"):
        GrayscaleImage(downsample=0)


def test_embedding_sequences_are_seeded_sized_and_trainable():
    from lightning_featvis.params import EmbeddingSequence

    param = EmbeddingSequence(std=0.5)
    param.width = 8
    param.allocate(3, 6)
    param.reset_([1, None, 2], 5)
    e = param()
    assert e.shape == (3, 5, 8)
    assert e[1].abs().max() < 1e-12 < e[0].abs().max()  # a padding slot
    torch.testing.assert_close(e[0], torch.randn((5, 8), generator=torch.Generator().manual_seed(1)) * 0.5)
    assert abs(float(e[0].std()) - 0.5) < 0.2
    e.square().sum().backward()
    grad = param.embeddings.grad
    assert grad[:, :5].abs().max() > 0 and grad[:, 5:].abs().max() <= 1e-6 * grad[:, :5].abs().max()
    param.update_(lambda x: x * 0)
    assert param().abs().max() < 1e-12
    with pytest.raises(FeatvisError, match="one sequence length"):
        param.resize_(6)
    with pytest.raises(FeatvisError, match="std must be >= 0"):
        EmbeddingSequence(std=-1)
