"""Dataset examples: each target's activation on real images, read as a render reads it, its
per-patch map, and the top-k over a dataset (on the digits ViT: class logits' top examples are
of their class)."""

from __future__ import annotations

import torch

from lightning_featvis import NeuronObjective
from lightning_featvis.digits_data import digits_split
from lightning_featvis.microscope.reader import UnitReader, find_examples
from lightning_featvis.probe import Probe
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

L3 = "encoder.layers.encoder_layer_3"


def batches(images: torch.Tensor, size: int = 64):
    for start in range(0, len(images), size):
        yield images[start:start + size], torch.arange(start, min(start + size, len(images)))


def test_each_class_logits_top_examples_are_of_its_class():
    split = digits_split()
    reader = UnitReader(NeuronObjective(DigitsViT()), parse_targets(["heads.head:class=0-9"]))
    extremes = find_examples(reader, batches(split.val_images), k=9)
    labels = split.val_labels[extremes.top_indices]  # [10, 9]
    precision = (labels == torch.arange(10)[:, None]).float().mean()
    assert float(precision) >= 0.9, labels
    assert extremes.seen == len(split.val_images)


def test_values_are_the_units_mean_and_a_sums_weighted_sum_and_maps_are_per_patch():
    images = digits_split().val_images[:8]
    targets = parse_targets([f"{L3}:neuron=5", f"{L3}:patch=12", f"0.5 * {L3}:neuron=5 - {L3}:neuron=2",
                             "heads.head:class=3"])
    reader = UnitReader(NeuronObjective(DigitsViT()), targets)
    adapter = DigitsViT()
    with torch.no_grad():
        acts = Probe(adapter.build().eval(), [L3, "heads.head"])(adapter.normalize(images))
    block = acts[L3][:, 1:]  # [B, 64, 64]: patches, class token left out
    values = reader.values(images)
    torch.testing.assert_close(values[:, 0], block[..., 5].mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values[:, 1], block[:, 12].mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values[:, 2], 0.5 * block[..., 5].mean(1) - block[..., 2].mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values[:, 3], acts["heads.head"][:, 3], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reader.heatmap(images, targets[0]), block[..., 5], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reader.heatmap(images, targets[1]), block.mean(-1), rtol=1e-4, atol=1e-5)
    assert reader.heatmap(images, targets[3]) is None


def test_the_top_examples_are_those_of_a_pass_that_keeps_every_activation():
    images = digits_split().val_images[:50]
    reader = UnitReader(NeuronObjective(DigitsViT()), parse_targets([f"{L3}:neuron=0-3"]))
    extremes = find_examples(reader, batches(images, 7), k=5)
    every = reader.values(images)  # [50, 4]
    torch.testing.assert_close(extremes.top_values, every.T.topk(5, dim=1).values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extremes.bottom_values, every.T.topk(5, dim=1, largest=False).values, rtol=1e-5, atol=1e-6)
