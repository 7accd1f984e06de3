"""Judges: digits classifiers trained independently of the visualised DigitsViT, which score the
class images it produces (transfer accuracy)."""

from __future__ import annotations

import torch

from lightning_featvis.layer_table import describe_layers
from lightning_featvis.models.adapter import Layout
from lightning_featvis.probe import Probe
from lightning_featvis.units import Unit, as_tokens, check_unit, select
from lightning_featvis.zoo.digits import DigitsCNN, DigitsViT
from lightning_featvis.zoo.digits.models import (
    DIGITS_VIT_CHECKPOINT,
    DIGITS_VIT_SEED1_CHECKPOINT,
)

#: each shipped weights file stays small enough to embed in the package
MAX_CHECKPOINT_BYTES = int(1.5 * 1024 * 1024)


def test_seed1_vit_is_a_different_model_of_the_same_architecture():
    seed0 = DigitsViT().build().state_dict()
    seed1 = DigitsViT(checkpoint=str(DIGITS_VIT_SEED1_CHECKPOINT)).build().state_dict()
    assert seed0.keys() == seed1.keys()
    for key in ("conv_proj.weight", "encoder.layers.encoder_layer_0.self_attention.in_proj_weight", "heads.head.weight"):
        assert seed0[key].shape == seed1[key].shape
        assert not torch.allclose(seed0[key], seed1[key]), key
    assert DIGITS_VIT_SEED1_CHECKPOINT != DIGITS_VIT_CHECKPOINT


def test_digits_cnn_adapter_spec():
    adapter = DigitsCNN(pretrained=False)
    assert adapter.name == "digits_cnn"
    assert adapter.image_size == 32
    assert adapter.logits_layer == "head"
    assert adapter.mean == DigitsViT().mean and adapter.std == DigitsViT().std
    net = adapter.build()
    assert sum(p.numel() for p in net.parameters()) < 150_000
    image = torch.full((1, 3, 32, 32), 0.5)
    assert torch.allclose(adapter.normalize(image), torch.zeros_like(image))


def test_digits_cnn_layouts_match_every_listed_layer():
    adapter = DigitsCNN(pretrained=False)
    infos = describe_layers(adapter)
    names = [info.name for info in infos]
    assert {"features.0", "features.11", "pool", "head", "(output)"} <= set(names)
    for info in infos:
        rank = len(info.shape)
        if info.name in ("head", "(output)"):
            assert info.layout == "logits" and info.shape == (1, 10), info
        else:
            assert info.layout == "map" and rank == 4, info

    # every layer's output is selectable through its layout: one neuron in one patch, or a class
    net = adapter.build().eval()
    layers = [name for name in names if name != "(output)"]
    with torch.no_grad():
        outputs = Probe(net, layers, stop=False)(torch.rand(2, 3, 32, 32))
    for layer in layers:
        layout = adapter.layout(layer)
        acts = outputs[layer]
        if layout.kind == "logits":
            unit = Unit(neurons=(3,), is_class=True)
            check_unit(unit, layout, tuple(as_tokens(acts, layout).shape), layer)
            assert torch.equal(select(acts, layout, unit), acts[:, 3:4])
        else:
            assert layout == Layout("map")
            unit = Unit(neurons=(1,), patches=(0,))
            check_unit(unit, layout, tuple(as_tokens(acts, layout).shape), layer)
            assert torch.equal(select(acts, layout, unit), acts[:, 1, 0, 0].unsqueeze(1))


def test_digits_cnn_without_pretrained_weights_is_random():
    untrained = DigitsCNN(pretrained=False)
    assert untrained.checkpoint is None
    random = untrained.build().state_dict()
    shipped = DigitsCNN().build().state_dict()
    assert random.keys() == shipped.keys()
    assert not torch.allclose(random["features.0.weight"], shipped["features.0.weight"])
    assert not torch.allclose(random["head.weight"], shipped["head.weight"])
    # BatchNorm starts at its identity statistics before training
    assert torch.equal(random["features.1.running_mean"], torch.zeros(32))
