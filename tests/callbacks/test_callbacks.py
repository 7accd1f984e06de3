"""Blur and jitter do exactly what they promise."""

import math

import lightning as L
import torch
import torch.nn.functional as F
from conftest import render
from torchvision.transforms.v2.functional import gaussian_blur

from lightning_featvis import GaussianBlur, NeuronObjective, Octave, PositionalJitter
from lightning_featvis.schedule import linear


def reference_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """3x3 Gaussian from its formula, w(x) ~ exp(-x^2 / (2 sigma^2)), reflect-padded."""
    w = torch.tensor([math.exp(-(x**2) / (2 * sigma**2)) for x in (-1, 0, 1)])
    w = w / w.sum()
    kernel = torch.outer(w, w).expand(image.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="reflect"), kernel, groups=image.shape[1])


def test_blur_matches_the_gaussian_formula():
    image = torch.rand(2, 3, 12, 12)
    for sigma in (0.4, 1.0, 2.4):
        torch.testing.assert_close(GaussianBlur().blur(image, sigma), reference_blur(image, sigma), atol=1e-6, rtol=0)


def test_sigma_follows_its_schedule_per_octave():
    blur = GaussianBlur(sigma=[[2.4, 0.8], [1.5, 0.4]])
    octaves = [Octave(steps=5), Octave(steps=3, size=24)]
    assert [round(blur.sigma_at(octaves, s), 6) for s in range(8)] == [2.4, 2.0, 1.6, 1.2, 0.8, 1.5, 0.95, 0.4]


class Snapshots(L.Callback):
    """Records the canvases before each optimizer step and after each whole step."""

    def __init__(self):
        self.before, self.after, self.offsets = [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before.append(pl_module.param().detach().clone())
        self.offsets.append(pl_module.param.view_offsets())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append(pl_module.param().detach().clone())


def test_blur_applies_the_scheduled_sigma_after_each_step(tiny, tmp_path):
    snaps = Snapshots()
    blur = GaussianBlur(sigma=[[2.0, 1.0]])
    # a loss of 0 (scale 0): the optimizer step leaves the canvas as it is, only the blur acts
    objective = NeuronObjective(tiny, layer="encoder.layers.encoder_layer_0", scale=0.0, octaves=[Octave(steps=3)])
    # blur before the snapshot callback: 'after' is the blurred canvas
    render(objective, ["neuron=1"], tmp_path, callbacks=[blur, snaps])
    for step in range(3):
        expected = gaussian_blur(snaps.before[step], [3, 3], [linear(2.0, 1.0, step, 3)] * 2)
        torch.testing.assert_close(snaps.after[step], expected)


def test_jitter_changes_only_the_chosen_window(tiny, tmp_path):
    snaps = Snapshots()
    objective = NeuronObjective(tiny, layer="encoder.layers.encoder_layer_1", octaves=[Octave(steps=6, size=28, lr=(1.0, 1.0))])
    render(objective, ["neuron=0-1"], tmp_path, callbacks=[PositionalJitter(), GaussianBlur(sigma=[[1.0, 1.0]]), snaps])
    windows = set()
    for before, after, offsets in zip(snaps.before, snaps.after, snaps.offsets):
        for i, (y, x) in enumerate(offsets):
            changed = ((after[i] - before[i]).abs() > 1e-6).any(dim=0)
            inside = torch.zeros_like(changed)
            inside[y : y + 16, x : x + 16] = True
            assert changed.any() and not (changed & ~inside).any()
            windows.add((y, x))
    assert len(windows) > 3  # the window really moves
    assert all(0 <= y <= 12 and 0 <= x <= 12 for y, x in windows)


def test_jitter_positions_depend_on_seed_target_and_step_only(tiny, tmp_path):
    runs = []
    for group_size in (1, 2):
        snaps = Snapshots()
        objective = NeuronObjective(tiny, layer="encoder.layers.encoder_layer_1", octaves=[Octave(steps=3, size=24)])
        render(objective, ["neuron=0-1"], tmp_path, group_size=group_size, callbacks=[PositionalJitter(), snaps])
        runs.append(snaps.offsets)
    # group size 1 sees neuron0's 3 steps then neuron1's; group size 2 sees both at once
    per_target_1 = [o[0] for o in runs[0][:3]] + [o[0] for o in runs[0][3:]]
    per_target_2 = [o[0] for o in runs[1]] + [o[1] for o in runs[1]]
    assert per_target_1 == per_target_2


def test_jitter_positions_come_from_the_run_seed_target_and_step(tiny, tmp_path):
    """The documented rule, value for value: the view of target t at step s sits where
    ``torch.rand(2)`` of a generator seeded by ``derive_seed(run seed, "jitter", t, s)`` puts it."""
    from lightning_featvis.seeding import derive_seed

    class Used(L.Callback):
        """The step and the view offsets each training step used."""

        def __init__(self):
            self.steps, self.offsets = [], []

        def on_before_backward(self, trainer, pl_module, loss):
            self.offsets.append(pl_module.param.view_offsets())

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.steps.append(batch["step"])

    used = Used()
    objective = NeuronObjective(tiny, layer="encoder.layers.encoder_layer_1", octaves=[Octave(steps=4, size=24)])
    collected = render(objective, ["neuron=0-1"], tmp_path, group_size=2, seed=7, callbacks=[PositionalJitter(), used])
    keys = [t.key for t in collected.results[0].targets]
    assert used.steps == [0, 1, 2, 3] and len(used.offsets) == 4
    seen = set()
    for step, offsets in zip(used.steps, used.offsets):
        for key, offset in zip(keys, offsets):
            generator = torch.Generator().manual_seed(derive_seed(7, "jitter", key, step))
            (expected,) = objective.param.view_offsets(torch.rand(2, generator=generator)[None])
            assert offset == expected, (key, step)
            seen.add(offset)
    assert len(seen) > 2 and all(0 <= y <= 8 and 0 <= x <= 8 for y, x in seen)  # 24 px canvas, 16 px view
