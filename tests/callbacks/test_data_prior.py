"""GaussianPrior: a Gaussian of the training digits as a penalty callback."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from lightning_featvis import FeatvisError, GaussianPrior
from lightning_featvis.digits_data import digits_split


@pytest.fixture(scope="module")
def digits_prior() -> GaussianPrior:
    return GaussianPrior(weight=1.0).fit_training_digits()


def test_digit_mean_costs_nothing_and_noise_costs_much(digits_prior):
    # the data mean, rendered as a [1, 3, 32, 32] view, is the Gaussian's mode
    mean_view = digits_prior.mean.float().reshape(1, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)
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
    prior = GaussianPrior(weight=0.7, resolution=2, shrinkage=0.25).fit(images)
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
    prior3.mean, prior3.precision = digits_prior.mean, digits_prior.precision
    torch.testing.assert_close(prior3.penalty(view, view, 0), 3 * digits_prior.penalty(view, view, 0))
    prior0 = GaussianPrior(weight=0.0)
    prior0.mean, prior0.precision = digits_prior.mean, digits_prior.precision
    assert prior0.penalty(view, view, 0).abs().max().item() < 1e-12


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": -0.1}, "weight"),
        ({"weight": math.nan}, "weight"),
        ({"weight": 1.0, "resolution": 0}, "resolution"),
        ({"weight": 1.0, "resolution": 33}, "resolution"),
        ({"weight": 1.0, "resolution": 2.5}, "resolution"),
        ({"weight": 1.0, "shrinkage": 0.0}, "shrinkage"),
        ({"weight": 1.0, "shrinkage": 1.5}, "shrinkage"),
        ({"weight": 1.0, "val_fraction": 1.0}, "val_fraction"),
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
