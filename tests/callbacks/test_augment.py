"""Augmentation ensembles and the total-variation and pixel-norm penalties."""

import pytest
import torch
from conftest import Collector, render

from lightning_featvis import (
    AugmentationEnsemble,
    FeatvisError,
    NeuronObjective,
    Octave,
    PixelNorm,
    TotalVariation,
)
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

BLOCK1 = "encoder.layers.encoder_layer_1"


def objective_with(callbacks, tmp_path, targets):
    """A DigitsViT objective after a 1-step render (network built, targets set), ready for
    direct calls, with ``callbacks`` on its Trainer."""
    objective = NeuronObjective(DigitsViT(), reduction="mean", octaves=[Octave(steps=1)])
    render(objective, targets, tmp_path, callbacks=callbacks)
    objective.targets = tuple(parse_targets(targets))
    return objective


def test_an_ensemble_gradient_is_the_mean_of_its_copies_gradients(tmp_path):
    ensemble = AugmentationEnsemble(copies=4, jitter=0.2, scale=(0.8, 1.2), rotate=20, color=0.2)
    targets = [f"{BLOCK1}:neuron=3", "heads.head:class=7"]
    objective = objective_with([ensemble], tmp_path, targets)
    view = torch.rand(2, 3, 32, 32, requires_grad=True)
    losses, _ = objective.target_losses(objective.augment(view, step=5))
    (together,) = torch.autograd.grad(losses.sum(), view)

    params = torch.cat([ensemble.sample(t, 5) for t in objective.targets])  # [2 * 4, 10]
    separate = torch.zeros_like(view)
    for j in range(4):
        copy_j = ensemble.apply(view, params[[j, 4 + j]])  # copy j of each target, one pass
        losses_j, _ = objective.target_losses(copy_j)
        separate += torch.autograd.grad(losses_j.sum(), view)[0] / 4
    torch.testing.assert_close(together, separate, rtol=1e-4, atol=1e-7)


def test_copies_differ_are_seeded_per_target_and_step_and_identity_when_off(tmp_path):
    (a, b) = parse_targets([f"{BLOCK1}:neuron=3", f"{BLOCK1}:neuron=4"])
    ensemble = AugmentationEnsemble(copies=3)
    torch.testing.assert_close(ensemble.sample(a, 1), ensemble.sample(a, 1))
    # other steps and other targets draw other parameters, not copies up to rounding
    assert (ensemble.sample(a, 1) - ensemble.sample(a, 2)).abs().max() > 1e-3
    assert (ensemble.sample(a, 1) - ensemble.sample(b, 1)).abs().max() > 1e-3
    view = torch.rand(2, 3, 32, 32)
    copies = ensemble.augment(view, [a, b], 1)
    assert copies.shape == (6, 3, 32, 32) and not torch.allclose(copies[0], copies[1])
    off = AugmentationEnsemble(copies=2, jitter=0, scale=None, rotate=0, color=0)
    torch.testing.assert_close(off.augment(view, [a, b], 1), view.repeat_interleave(2, 0), atol=1e-5, rtol=0)
    grey_view = view[:, :1].expand(-1, 3, -1, -1)
    grey = AugmentationEnsemble(copies=2, grey_shift=True).augment(grey_view, [a, b], 1)
    torch.testing.assert_close(grey[:, 0], grey[:, 2])
    # grey_shift: null decides by the views: grey views stay grey, colour views shift per channel
    auto = AugmentationEnsemble(copies=2, grey_shift=None)
    torch.testing.assert_close(auto.augment(grey_view, [a, b], 1), grey)
    coloured = auto.augment(view, [a, b], 1)
    torch.testing.assert_close(coloured, AugmentationEnsemble(copies=2, grey_shift=False).augment(view, [a, b], 1))
    assert not torch.allclose(AugmentationEnsemble(copies=2).augment(grey_view, [a, b], 1)[:, 0],
                              AugmentationEnsemble(copies=2).augment(grey_view, [a, b], 1)[:, 2])


def test_a_shift_moves_the_image_by_that_fraction():
    ensemble = AugmentationEnsemble(copies=1, color=0)
    image = torch.zeros(1, 1, 32, 32)
    image[..., 10, 12] = 1.0
    # shift x by 4 px = 0.125 of the side: affine_grid units span 2 per side, and the grid maps
    # output to input positions, so the content moves the other way
    params = torch.tensor([[0.0, 2 * 4 / 32, 1.0, 0.0, 0, 0, 0, 0, 0, 0]])
    moved = ensemble.apply(image, params)
    assert moved[0, 0].flatten().argmax().item() == 10 * 32 + 8


def test_total_variation_matches_its_formula_and_smooths(tmp_path):
    view = torch.rand(2, 3, 8, 8)
    expected = (view[..., 1:, :] - view[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (
        view[..., :, 1:] - view[..., :, :-1]
    ).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(TotalVariation(0.5).penalty(view, view, 0), 0.5 * expected)
    with pytest.raises(FeatvisError, match="weight"):
        TotalVariation(-1)
    rough = {}
    for weight in (0.0, 20.0):
        seen = render(NeuronObjective(DigitsViT(), reduction="mean", octaves=[Octave(steps=40, lr=(1.0, 1.0))]),
                      [f"{BLOCK1}:neuron=3"], tmp_path / str(weight), callbacks=[TotalVariation(weight)])
        rough[weight] = float(TotalVariation.total_variation(seen.results[0].images))
    assert rough[20.0] < 0.7 * rough[0.0], rough


def test_an_ensemble_render_raises_the_unit(tmp_path):
    from conftest import FirstActivation

    first = FirstActivation()
    seen = render(NeuronObjective(DigitsViT(), reduction="mean", octaves=[Octave(steps=30, lr=(1.0, 1.0))]),
                  [f"{BLOCK1}:neuron=3"], tmp_path, callbacks=[AugmentationEnsemble(copies=4), first])
    assert isinstance(seen, Collector) and seen.results[0].activations[0] > first.value + 0.2


def test_sampled_parameters_span_their_ranges():
    (a,) = parse_targets([f"{BLOCK1}:neuron=3"])
    params = AugmentationEnsemble(copies=256, jitter=0.1, scale=(0.8, 1.25), rotate=10, color=0.2).sample(a, 0)
    shift, zoom, angle, colour = params[:, :2], params[:, 2], params[:, 3], params[:, 4:]
    assert 0.15 < shift.abs().max() <= 0.2  # 0.1 of the side = 0.2 affine_grid units
    assert 0.8 <= zoom.min() < 0.85 and 1.2 < zoom.max() <= 1.25
    assert 0.15 < angle.abs().max() <= torch.pi / 18
    assert 0.15 < colour.abs().max() <= 0.2


def test_pixel_norm_matches_its_formula_and_darkens_the_background(tmp_path):
    view = torch.rand(2, 3, 8, 8)
    expected = (view - 0.25).abs().pow(1.5).mean(dim=(1, 2, 3))
    torch.testing.assert_close(PixelNorm(0.5, p=1.5, target=0.25).penalty(view, view, 0), 0.5 * expected)
    with pytest.raises(FeatvisError, match="weight"):
        PixelNorm(-1)
    with pytest.raises(FeatvisError, match="p must be"):
        PixelNorm(p=0.5)
    brightness = {}
    for weight in (0.0, 50.0):
        seen = render(NeuronObjective(DigitsViT(), reduction="mean", octaves=[Octave(steps=40, lr=(1.0, 1.0))]),
                      [f"{BLOCK1}:neuron=3"], tmp_path / str(weight), callbacks=[PixelNorm(weight)])
        brightness[weight] = float(seen.results[0].images.mean())
    assert brightness[50.0] < 0.5 * brightness[0.0], brightness
