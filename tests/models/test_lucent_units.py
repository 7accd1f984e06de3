"""A CNN's units mean what Lucent's do, so one model can be run by featvis and by Lucent side by
side: featvis's ``layer2:neuron=3`` is Lucent's ``channel("layer2", 3)`` and ``neuron=3 patch=p``
its ``neuron("layer2", 3, x, y)`` at ``p = y * W + x``, on the same torchvision ResNet."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import load_benchmark

from lightning_featvis import NeuronObjective
from lightning_featvis.models import AnyModule
from lightning_featvis.targets import parse_targets


def lucent():
    """Lucent from the benchmark's own folder (FEATVIS_LUCENT_SITE), as benchmarks/vs_lucent.py loads it."""
    module = load_benchmark("vs_lucent")
    found = module.import_lucent(module.DEFAULT_LUCENT_SITE)
    if found is None:  # CI installs it, and counts a skip as a failure (FEATVIS_FORBID_SKIPS)
        pytest.skip("Lucent not installed (see benchmarks/vs_lucent.py)")
    return found


def test_cnn_units_are_lucents_channel_and_neuron():
    lu = lucent()
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    image = torch.rand(1, 3, 64, 64)
    adapter = AnyModule(net, image_size=64)
    objective = NeuronObjective(adapter, loss_form="mean")
    objective.build_network()

    hook = lu.render.hook_model(net, lambda: image)
    with torch.no_grad():
        net(adapter.normalize(image))  # Lucent's hooks see the network's (normalised) input
        width = hook("layer2").shape[-1]
        x, y = 2, 5
        lucent_values = [float(lu.objectives.channel("layer2", 3)(hook)),
                         float(lu.objectives.neuron("layer2", 3, x, y)(hook))]
        objective.targets = tuple(parse_targets(["layer2:neuron=3", f"layer2:neuron=3 patch={y * width + x}"]))
        featvis_losses, _ = objective.target_losses(image.expand(2, -1, -1, -1))  # one view per target
    assert abs(lucent_values[0]) > 1e-3
    torch.testing.assert_close(featvis_losses, torch.tensor(lucent_values), rtol=1e-5, atol=1e-6)
