"""Probe: capture by dotted name, tuple outputs, early exit with the full forward's gradient."""

import pytest
import torch
from torch import nn

from lightning_featvis import FeatvisError
from lightning_featvis.probe import Probe, find_layer


def test_early_exit_gives_the_full_forward_gradient(tiny):
    net = tiny.build().eval().requires_grad_(False)
    layer = "encoder.layers.encoder_layer_0.mlp"
    x = torch.rand(2, 3, 16, 16)
    grads = []
    for stop in (True, False):
        xi = x.clone().requires_grad_(True)
        acts = Probe(net, [layer], stop=stop)(xi)[layer]
        (200 - acts[:, 1:, 3]).abs().sum().backward()
        grads.append(xi.grad)
    scale = grads[1].abs().max().item()
    assert scale > 0
    # the same gradient up to float rounding (a cut graph would give zeros or another gradient)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6 * scale)


def test_layers_past_the_target_do_not_run(tiny):
    net = tiny.build().eval()
    calls = []
    net.encoder.layers.encoder_layer_1.register_forward_hook(lambda *a: calls.append("block1"))
    net.heads.register_forward_hook(lambda *a: calls.append("heads"))
    acts = Probe(net, ["encoder.layers.encoder_layer_0"])(torch.rand(1, 3, 16, 16))
    assert calls == [] and acts["encoder.layers.encoder_layer_0"].shape == (1, 17, 16)
    Probe(net, ["encoder.layers.encoder_layer_0"], stop=False)(torch.rand(1, 3, 16, 16))
    assert calls == ["block1", "heads"]


def test_several_layers_and_the_output(tiny):
    net = tiny.build().eval()
    acts = Probe(net, ["conv_proj", "heads.head", ""])(torch.rand(2, 3, 16, 16))
    assert acts["conv_proj"].shape == (2, 16, 4, 4)
    torch.testing.assert_close(acts["heads.head"], acts[""])


def test_tuple_outputs_yield_their_first_tensor():
    class Block(nn.Module):
        def forward(self, x):
            return (x * 2, "cache")

    net = nn.Sequential(Block(), nn.Identity())
    out = Probe(net, ["0"])(torch.ones(1, 3))
    torch.testing.assert_close(out["0"], torch.full((1, 3), 2.0))


def test_unknown_layer_suggests_close_names(tiny):
    with pytest.raises(FeatvisError, match="encoder_layer_1.*featvis layers"):
        find_layer(tiny.build(), "encoder.layers.encoder_layer1")
