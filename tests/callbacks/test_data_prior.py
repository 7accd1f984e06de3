"""GaussianPrior: a Gaussian of real images (any image source) as a penalty callback."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch.distributions import MultivariateNormal

from lightning_featvis import FeatvisError, GaussianPrior
from lightning_featvis.digits_data import digits_split
from lightning_featvis.errors import WriteError
from lightning_featvis.params.fourier import radial_frequency
from lightning_featvis.photos_data import photo_split


@pytest.fixture(scope="module")
def digits_prior() -> GaussianPrior:
    return GaussianPrior(weight=1.0).fit_source("digits:train", 32)


def test_digit_mean_costs_nothing_and_noise_costs_much(digits_prior):
    # the data mean, rendered as a [1, 3, 32, 32] view, is the Gaussian's mode
    assert not digits_prior.in_colour  # the digits are grey
    mean_view = digits_prior.fitted["pixel_mean"].float().reshape(1, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)
    mean_view = mean_view.expand(1, 3, 32, 32)
    assert digits_prior.penalty(mean_view, mean_view, 0).item() == pytest.approx(0.0, abs=1e-4)
    # real (held-out) digits cost about 1 per dimension; uniform noise many times that
    real = digits_split().val_images[:50]
    real_cost = digits_prior.penalty(real, real, 0)
    noise = torch.rand(50, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noise_cost = digits_prior.penalty(noise, noise, 0)
    assert 0.1 < real_cost.mean().item() < 2.0
    assert noise_cost.min().item() > 5 * real_cost.mean().item()


def test_penalty_is_weighted_mahalanobis_against_a_hand_fitted_gaussian():
    gen = torch.Generator().manual_seed(1)
    # a tiny 2x2 prior from 30 random images: the penalty must be the formula with the shrunk
    # sample covariance, i.e. -2/D times the Gaussian log-density above its mode
    images = torch.rand(30, 3, 4, 4, generator=gen, dtype=torch.float64)
    prior = GaussianPrior(weight=0.7, resolution=2, shrinkage=0.25, colour=False).fit(images)
    cells = images.mean(dim=1).reshape(30, 2, 2, 2, 2).mean(dim=(2, 4)).reshape(30, 4)  # area mean
    mu = cells.mean(dim=0)
    centred = cells - mu
    cov = centred.T @ centred / 29
    shrunk = 0.75 * cov + 0.25 * cov.diagonal().mean() * torch.eye(4, dtype=torch.float64)
    gaussian = MultivariateNormal(mu, covariance_matrix=shrunk)

    views = torch.rand(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    x = views.mean(dim=1).reshape(5, 2, 2, 2, 2).mean(dim=(2, 4)).reshape(5, 4)
    expected_by_density = 0.7 * -2 * (gaussian.log_prob(x) - gaussian.log_prob(mu)) / 4
    expected_by_formula = 0.7 * torch.stack([(v - mu) @ torch.linalg.solve(shrunk, v - mu) for v in x]) / 4
    got = prior.penalty(views, views, 0)
    assert got.dtype == torch.float64 and got.shape == (5,)
    torch.testing.assert_close(got, expected_by_formula)
    torch.testing.assert_close(got, expected_by_density)


def test_statistics_follow_device_and_dtype_and_gradient_reaches_the_view(digits_prior):
    view = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    cost = digits_prior.penalty(view, view, 0)
    assert cost.dtype == torch.float32 and cost.shape == (3,)
    cost.sum().backward()
    assert view.grad is not None and view.grad.abs().sum().item() > 0
    # each image's gradient is its own: the cost of image 0 does not depend on image 1
    view.grad = None
    digits_prior.penalty(view, view, 0)[0].backward()
    own = view.grad[0].abs().max().item()
    assert own > 0 and view.grad[1:].abs().max().item() <= 1e-6 * own
    # descending the gradient moves the image towards the digits
    with torch.no_grad():
        before = digits_prior.penalty(view, view, 0)
        view.grad = None
    digits_prior.penalty(view, view, 0).sum().backward()
    with torch.no_grad():
        after = digits_prior.penalty(view - 0.01 * view.grad, view, 0)
    assert (after < before).all()


def test_weight_scales_and_zero_weight_is_free(digits_prior):
    view = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    prior3 = GaussianPrior(weight=3.0)
    prior3.fitted = digits_prior.fitted
    torch.testing.assert_close(prior3.penalty(view, view, 0), 3 * digits_prior.penalty(view, view, 0))
    prior0 = GaussianPrior(weight=0.0)
    prior0.fitted = digits_prior.fitted
    assert prior0.penalty(view, view, 0).abs().max().item() < 1e-12


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": -0.1}, "weight"),
        ({"weight": math.nan}, "weight"),
        ({"weight": 1.0, "resolution": 0}, "resolution"),
        ({"weight": 1.0, "resolution": 2.5}, "resolution"),
        ({"weight": 1.0, "shrinkage": 0.0}, "shrinkage"),
        ({"weight": 1.0, "shrinkage": 1.5}, "shrinkage"),
        ({"weight": 1.0, "bands": -1}, "bands"),
        ({"weight": 1.0, "bands": 9}, "bands"),
        ({"weight": 1.0, "max_images": 1}, "max_images"),
    ],
)
def test_bad_arguments_raise_featvis_error(kwargs, message):
    with pytest.raises(FeatvisError, match=message):
        GaussianPrior(**kwargs)


def test_bad_inputs_raise_featvis_error():
    prior = GaussianPrior(weight=1.0, resolution=2)
    with pytest.raises(FeatvisError, match="at least 2 images"):
        prior.fit(torch.rand(1, 3, 4, 4))
    with pytest.raises(FeatvisError, match=r"\[N, C, H, W\]"):
        prior.fit(torch.rand(5, 4, 4))
    with pytest.raises(FeatvisError, match="finer than the images"):
        GaussianPrior(weight=1.0, resolution=8, colour=False).fit(torch.rand(5, 3, 4, 4))


@pytest.fixture(scope="module")
def photos_prior() -> GaussianPrior:
    return GaussianPrior(weight=1.0, resolution=8, bands=3).fit_source("photos:train", 64)


def test_colour_is_read_from_the_data(digits_prior, photos_prior):
    assert photos_prior.in_colour and not digits_prior.in_colour
    assert photos_prior.fitted["pixel_mean"].shape == (3 * 8 * 8,)
    assert photos_prior.fitted["band_mean"].shape == (3 * 3,)
    # told to, a prior of colour data models grey
    grey = GaussianPrior(resolution=4, colour=False).fit_source("photos:train", 64)
    assert not grey.in_colour and grey.fitted["pixel_mean"].shape == (16,)


def test_photo_prior_prefers_held_out_photos_to_blobs_and_noise(photos_prior):
    real = photo_split().val_images  # never fitted to
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(20, 3, 64, 64, generator=gen)
    # a smooth blob of the data's mean colour: plausible coarse pixels, no texture at all
    mean = photos_prior.fitted["pixel_mean"].float().reshape(1, 3, 8, 8)
    blob = F.interpolate(mean, size=64, mode="bilinear", align_corners=False)
    real_cost = photos_prior.distance(real)
    assert 0.2 < real_cost.median().item() < 5
    assert photos_prior.distance(noise).min().item() > 5 * real_cost.median().item()
    # the pixel part alone finds the blob perfect; the frequency bands see that it has no detail
    bandless = GaussianPrior(weight=1.0, resolution=8).fit_source("photos:train", 64)
    assert bandless.distance(blob).item() < 0.1 * real_cost.median().item()
    assert photos_prior.distance(blob).item() > 5 * real_cost.median().item()


def test_band_energies_are_log_power_per_octave():
    prior = GaussianPrior(resolution=1, bands=2, colour=False)
    # a cosine of 1/4 cycle per pixel along x: octaves are open below, so 1/4 lies in the
    # second octave (1/8, 1/4], not in the finest (1/4, 1/2]
    x = torch.arange(16, dtype=torch.float64)
    wave = (0.5 + 0.25 * torch.cos(2 * torch.pi * x / 4)).expand(16, 16)
    energies = prior.band_energies(wave.expand(1, 3, 16, 16), colour=False)
    assert energies.shape == (1, 2)
    assert energies[0, 0].item() < -15  # log(1e-8): nothing in (1/4, 1/2]
    assert energies[0, 1].item() > energies[0, 0].item() + 10  # all the power in (1/8, 1/4]
    # the energy is the mean power of the octave's bins (orthonormal FFT): the cosine's
    # 16 * 16 * 0.25^2 / 2 = 8 of variance splits between +1/4 and -1/4; the half-spectrum
    # keeps one of the two: 4 in one of the band's bins
    bins = ((radial_frequency(16) > 1 / 8) & (radial_frequency(16) <= 1 / 4)).sum().item()
    assert energies[0, 1].item() == pytest.approx(math.log(4 / bins), rel=1e-6)


class _Network:
    """Stands in for an objective's adapter: what GaussianPrior.setup reads."""

    name, image_size = "stand-in", 32

    def __init__(self, training_data):
        self.training_data = training_data


def test_setup_fits_to_the_networks_training_data_and_the_run_keeps_it(tmp_path, monkeypatch):
    from lightning_featvis.callbacks import data_prior

    trainer = L.Trainer(logger=TensorBoardLogger(str(tmp_path)), accelerator="cpu")
    objective = SimpleNamespace(network=_Network("digits:train"))
    monkeypatch.setattr(data_prior, "_FITTED", {})
    prior = GaussianPrior(weight=1.0)
    prior.setup(trainer, objective, "fit")
    cache = Path(trainer.log_dir) / data_prior.CACHE_FILE
    assert not cache.exists()  # kept only once training starts: a run refused in setup leaves nothing
    prior.on_train_start(trainer, objective)
    assert cache.is_file()
    reference = GaussianPrior(weight=1.0).fit(digits_split().train_images)
    torch.testing.assert_close(prior.fitted["pixel_precision"], reference.fitted["pixel_precision"])

    # a resumed run reads the kept prior instead of reading the data again
    monkeypatch.setattr(data_prior, "_FITTED", {})
    monkeypatch.setattr(data_prior, "sample_images", lambda *a: pytest.fail("the kept prior was not used"))
    again = GaussianPrior(weight=1.0)
    again.setup(trainer, objective, "fit")
    torch.testing.assert_close(again.fitted["pixel_mean"], prior.fitted["pixel_mean"])
    # other settings are another prior: the kept one is not used
    with pytest.raises(pytest.fail.Exception, match="not used"):
        GaussianPrior(weight=1.0, resolution=4).setup(trainer, objective, "fit")

    # a damaged kept prior is fitted again and written over, not an error
    monkeypatch.undo()
    cache.write_bytes(b"half a file")
    damaged = GaussianPrior(weight=1.0)
    damaged.setup(trainer, objective, "fit")
    damaged.on_train_start(trainer, objective)
    torch.testing.assert_close(damaged.fitted["pixel_mean"], prior.fitted["pixel_mean"])
    assert torch.load(cache, weights_only=True)["fingerprint"] == damaged.fingerprint("digits:train", 32)


def test_setup_without_training_data_asks_for_a_source():
    trainer = L.Trainer(logger=False, accelerator="cpu")
    with pytest.raises(FeatvisError, match="declares no training data.*data:"):
        GaussianPrior().setup(trainer, SimpleNamespace(network=_Network(None)), "fit")
    prior = GaussianPrior(data="photos:val", resolution=4)
    prior.setup(trainer, SimpleNamespace(network=_Network(None)), "fit")
    assert prior.in_colour


def test_a_prior_that_cannot_be_kept_is_a_warning_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    """The fitted prior is in memory: a full disk costs the cache (a refit on resume), not the run."""
    import errno

    from lightning_featvis.callbacks import data_prior

    def full(path, data):
        raise WriteError(path, os.strerror(errno.ENOSPC))

    trainer = L.Trainer(logger=TensorBoardLogger(str(tmp_path)), accelerator="cpu")
    objective = SimpleNamespace(network=_Network("digits:train"))
    monkeypatch.setattr(data_prior, "atomic_write", full)
    prior = GaussianPrior(weight=1.0)
    prior.setup(trainer, objective, "fit")
    prior.on_train_start(trainer, objective)
    assert "featvis: warning: could not keep the data prior" in capsys.readouterr().err
    assert prior.fitted is not None and not (Path(trainer.log_dir) / data_prior.CACHE_FILE).exists()


def test_a_folder_or_a_saved_hugging_face_dataset_is_a_prior_of_its_own(tmp_path):
    """Any image source fits the prior: a folder of images, a Hugging Face dataset on disk.
    Reddish pictures make a colour prior whose mean is their colour; grey ones a grey prior."""
    import datasets
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(0)
    red = [np.clip(gen.normal((200, 40, 30), 20, (16, 16, 3)), 0, 255).astype(np.uint8) for _ in range(6)]
    (tmp_path / "red").mkdir()
    for i, pixels in enumerate(red):
        Image.fromarray(pixels).save(tmp_path / "red" / f"{i}.png")
    grey = [Image.fromarray(np.full((16, 16, 3), v, dtype=np.uint8)) for v in (20, 90, 160, 230)]
    datasets.Dataset.from_dict({"img": grey}, features=datasets.Features({"img": datasets.Image()})).save_to_disk(
        str(tmp_path / "grey"))
    trainer = L.Trainer(logger=False, accelerator="cpu")
    anywhere = SimpleNamespace(network=_Network(None))

    from_folder = GaussianPrior(data=str(tmp_path / "red"), resolution=2)
    from_folder.setup(trainer, anywhere, "fit")
    assert from_folder.in_colour
    seen = torch.tensor(np.stack(red), dtype=torch.float64).permute(0, 3, 1, 2).mean(dim=(0, 2, 3)) / 255
    mean = from_folder.fitted["pixel_mean"].reshape(3, 2, 2).mean(dim=(1, 2))  # pixels in the model's RGB
    torch.testing.assert_close(mean, seen.to(mean.dtype), atol=0.02, rtol=0)

    from_dataset = GaussianPrior(data=str(tmp_path / "grey"), resolution=2)
    from_dataset.setup(trainer, anywhere, "fit")
    assert not from_dataset.in_colour and from_dataset.fitted["pixel_mean"].shape == (4,)
    torch.testing.assert_close(from_dataset.fitted["pixel_mean"].mean().item(), (20 + 90 + 160 + 230) / 4 / 255,
                               atol=0.01, rtol=0)
