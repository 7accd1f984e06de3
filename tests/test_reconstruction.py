"""Reconstruction matches a photo's layer output; deep dream starts from the photo."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.image import peak_signal_noise_ratio

from conftest import Collector, FirstActivation, render
from lightning_featvis import FeatvisError, NeuronObjective, Octave, PhotoImage, ReconstructionObjective
from lightning_featvis.images import load_photo
from lightning_featvis.models import DigitsViT
from lightning_featvis.training.digits_data import digits_split

BLOCK0 = "encoder.layers.encoder_layer_0"


@pytest.fixture
def digit_png(tmp_path):
    """A held-out digit (32x32 RGB) as a PNG file."""
    image = digits_split().val_images[3]
    path = tmp_path / "digit.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


class InitialCanvas(Collector):
    def on_before_backward(self, trainer, pl_module, loss):
        if trainer.global_step == 0:
            self.initial = pl_module.param().detach().clone()


def test_reconstruction_from_an_early_layer_beats_the_noise_by_far(digit_png, tmp_path):
    seen = InitialCanvas()
    objective = ReconstructionObjective(
        DigitsViT(), target_image=str(digit_png), octaves=[Octave(steps=300)],
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )
    render(objective, [f"{BLOCK0}:all"], tmp_path, callbacks=[seen])
    target = load_photo(str(digit_png), 32)
    start = peak_signal_noise_ratio(seen.initial.clamp(0, 1), target, data_range=1.0)
    final = peak_signal_noise_ratio(seen.results[0].images, target, data_range=1.0)
    assert final > start + 10, (float(start), float(final))


def test_the_patch_subset_loss_ignores_the_other_tokens(digit_png, tmp_path):
    objective = ReconstructionObjective(DigitsViT(), target_image=str(digit_png), distance="cos", octaves=[Octave(steps=1)])
    render(objective, [f"{BLOCK0}:patch=[0-26] cls=1"], tmp_path)  # builds the network and the reference
    (target,) = [t for t in objective.trainer.datamodule.targets]
    acts = objective.activations(torch.rand(1, 3, 32, 32, requires_grad=True), [BLOCK0])
    acts[BLOCK0].retain_grad()
    objective.loss(objective.select(acts, target), target).sum().backward()
    grad = acts[BLOCK0].grad[0].abs().sum(dim=1)  # per token
    assert (grad[:28] > 0).all() and (grad[28:] == 0).all()


def test_layernorms_can_be_removed(digit_png, tmp_path):
    objective = ReconstructionObjective(DigitsViT(), target_image=str(digit_png), remove_layernorm=True, octaves=[Octave(steps=2)])
    render(objective, [f"{BLOCK0}:all"], tmp_path)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in objective.net.modules())


def test_dream_starts_from_the_photo_and_raises_the_unit(digit_png, tmp_path):
    first, seen = FirstActivation(), InitialCanvas()
    objective = NeuronObjective(DigitsViT(), param=PhotoImage(str(digit_png)), reduction="mean",
                                octaves=[Octave(steps=10, lr=(1.0, 1.0)), Octave(steps=10, size=48, lr=(1.0, 1.0))])
    render(objective, [f"{BLOCK0}:neuron=5"], tmp_path, callbacks=[first, seen])
    torch.testing.assert_close(seen.initial, load_photo(str(digit_png), 32))
    (result,) = seen.results
    assert result.images.shape == (1, 3, 48, 48)
    assert result.activations[0] > first.value + 0.5


def test_missing_or_unreadable_images_are_named(tmp_path):
    with pytest.raises(FeatvisError, match="image file not found"):
        load_photo(str(tmp_path / "nope.png"))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(FeatvisError, match="cannot read image"):
        load_photo(str(tmp_path / "bad.png"))
    assert load_photo(None, 64).shape == (1, 3, 64, 64)  # scikit-learn's bundled photo
